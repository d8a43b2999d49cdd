"""The Inception Score: the formula against hand-computed values, the original code's
conventions (unbiased logits, consecutive splits, population std), streaming order, and
end to end through `img2img eval` with an Inception weights file made here."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from img2img.config import load_config
from img2img.data import read_image
from img2img.metrics import FIDInceptionV3, FidKid
from img2img.metrics.inception_score import InceptionScore, inception_score
from img2img.model_io import save_model
from img2img.tasks import build_generators
from tests.tiny import save_png, smooth_image


def test_two_images_two_classes_by_hand():
    # p(y|x1) = (0.8, 0.2), p(y|x2) = (0.2, 0.8): p(y) = (0.5, 0.5) and both KLs are
    # 0.8 ln(0.8/0.5) + 0.2 ln(0.2/0.5).
    logits = torch.tensor([[math.log(0.8), math.log(0.2)], [math.log(0.2), math.log(0.8)]], dtype=torch.float64)
    mean, std = inception_score(logits, splits=1)
    assert mean == pytest.approx(math.exp(0.8 * math.log(1.6) + 0.2 * math.log(0.4)), rel=1e-12)
    assert mean == pytest.approx(1.2125733, rel=1e-7)
    assert std == 0.0


def test_extremes_one_and_the_number_of_classes():
    same = torch.randn(1, 7).expand(20, 7)  # every image the same prediction: IS 1
    assert inception_score(same, splits=2)[0] == pytest.approx(1.0, abs=1e-12)
    confident = torch.eye(5) * 60.0  # five images, each sure of its own class: IS 5
    assert inception_score(confident, splits=1)[0] == pytest.approx(5.0, rel=1e-9)


def test_too_few_images_for_the_splits_are_warned_about(caplog):
    assert inception_score(torch.randn(7, 5))[0] == pytest.approx(1.0, abs=1e-12)  # 7 splits of one image
    assert "the Inception Score of 7 images in 7 splits: a split of one image says little" in caplog.text
    caplog.clear()
    inception_score(torch.randn(20, 5))
    assert "Inception Score" not in caplog.text


def numpy_reference(logits: np.ndarray, splits: int) -> tuple[float, float]:
    """openai/improved-gan's inception_score: softmax, consecutive parts, np.std."""
    preds = np.exp(logits - logits.max(1, keepdims=True))
    preds /= preds.sum(1, keepdims=True)
    scores = []
    n = preds.shape[0]
    for i in range(splits):
        part = preds[i * n // splits : (i + 1) * n // splits]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores)), float(np.std(scores))


def test_ten_splits_and_population_std_match_the_original_code():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (53, 1008))  # 53 images: uneven parts of 5 and 6
    mean, std = inception_score(torch.from_numpy(logits))
    ref_mean, ref_std = numpy_reference(logits, 10)
    assert mean == pytest.approx(ref_mean, rel=1e-10) and std == pytest.approx(ref_std, rel=1e-9)
    assert std > 0
    # Fewer images than splits: one part per image (each scores exactly 1).
    assert inception_score(torch.from_numpy(logits[:3])) == pytest.approx((1.0, 0.0))


def test_streaming_sorts_by_evaluation_order():
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(0, 2, (30, 12)))
    metric = InceptionScore(splits=10)
    perm = torch.from_numpy(rng.permutation(30))
    for chunk in perm.split(7):
        metric.update(logits[chunk], chunk)
    assert metric.compute() == pytest.approx(inception_score(logits), rel=1e-12)


def test_class_logits_leave_out_the_bias():
    net = FIDInceptionV3()
    torch.manual_seed(0)
    nn.init.normal_(net.fc.weight)
    net.fc.bias.data.fill_(100.0)
    features = torch.randn(3, 2048, dtype=torch.float64)
    expected = features @ net.fc.weight.double().T
    assert torch.allclose(net.class_logits(features), expected)
    assert net.class_logits(features).shape == (3, 1008)


class LinearFeatures(nn.Module):
    """A tiny 'Inception': the mean colour as features, and a fixed 4-class head."""

    num_features = 3

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 4)
        torch.manual_seed(3)
        nn.init.normal_(self.head.weight, 0, 1)

    def forward(self, images):
        return (images.mean(dim=(2, 3)) - 0.5) * 20

    def class_logits(self, features):
        return nn.functional.linear(features, self.head.weight.to(features.dtype))


def test_fidkid_reports_the_score_of_the_generated_images_only():
    net = LinearFeatures()
    torch.manual_seed(4)
    real, fake = torch.rand(12, 3, 8, 8), torch.rand(12, 3, 8, 8)
    metric = FidKid(net, kid_subsets=2, is_splits=3)
    metric.update(real=real, fake=fake)
    result = metric.compute()
    quantized = (fake * 255).round() / 255
    expected = inception_score(net.class_logits(net(quantized).double()), splits=3)
    assert (result["is"], result["is_std"]) == pytest.approx(expected, rel=1e-9)
    # A network without class logits (or inception_score=False) gives no score.
    off = FidKid(net, kid_subsets=2, inception_score=False)
    off.update(real=real, fake=fake)
    assert "is" not in off.compute()


def test_evaluation_scores_outputs_and_baseline_in_image_order(tmp_path):
    from img2img.evaluate import evaluate
    from img2img.tasks import build_task

    rng = np.random.default_rng(3)
    for i in range(12):  # 10 splits of 1 or 2 images
        save_png(tmp_path / "valA" / f"{i:02d}.png", smooth_image(rng, 16, 16))
    for i in range(2):
        save_png(tmp_path / "valB" / f"{i}.png", smooth_image(rng, 16, 16))
    config = load_config(None, [
        "task=cyclegan", "model.generator.name=resnet", "model.generator.n_blocks=1",
        "model.generator.ngf=4", f"data.root={tmp_path}", "data.preprocess=none", "data.num_workers=0",
    ])
    task = build_task(config)
    torch.manual_seed(0)
    G = build_generators(config)
    net = LinearFeatures()
    result = evaluate(task, G, task.build_dataset("val"), torch.device("cpu"), feature_net=net)
    # The baseline (the untranslated A images, in file order) scored here by hand.
    images = torch.stack([torch.from_numpy(read_image(tmp_path / "valA" / f"{i:02d}.png")).permute(2, 0, 1)
                          for i in range(12)])
    logits = net.class_logits(net((images * 255).round() / 255).double())
    expected = inception_score(logits)
    assert expected[0] > 1.05 and expected[1] > 0
    assert (result["baseline"]["is"], result["baseline"]["is_std"]) == pytest.approx(expected, rel=1e-9)
    assert result["model"]["is"] >= 1.0 and result["model"]["is"] != pytest.approx(expected[0])


def test_img2img_eval_shows_the_inception_score_beside_fid(tmp_path):
    config = load_config(None, [
        "task=cyclegan", "model.generator.name=resnet", "model.generator.n_blocks=1",
        "model.generator.ngf=4", "eval.metric=is",
    ])
    torch.manual_seed(0)
    model_dir = save_model(tmp_path / "model", config, build_generators(config))
    torch.save(FIDInceptionV3().state_dict(), tmp_path / "fid.pth")
    rng = np.random.default_rng(3)
    for i in range(2):
        save_png(tmp_path / "data" / "A" / f"{i}.png", smooth_image(rng, 16, 16))
        save_png(tmp_path / "data" / "B" / f"{i}.png", smooth_image(rng, 16, 16))
    out = subprocess.run(
        [sys.executable, "-m", "img2img", "eval", str(model_dir), "--data", str(tmp_path / "data"),
         "--fid-weights", str(tmp_path / "fid.pth"), "--out", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if line.startswith("mean over"))
    assert {"fid", "kid", "is", "is_std"} <= set(header.split())
    result = json.loads((tmp_path / "r.json").read_text())
    for which in ("model", "baseline"):
        assert {"fid", "kid", "is", "is_std"} <= set(result[which])
        assert result[which]["is"] == pytest.approx(1.0)  # two splits of one image each


def test_evaluation_rows_of_one_sample_all_count_in_the_score():
    # A task may give several output rows per sample (its ``fake``); each row is scored,
    # placed at its sample's index (one place for the sample scored one row in two).
    from img2img.evaluate import _DistributionScores

    net = LinearFeatures()
    torch.manual_seed(5)
    fakes = [torch.rand(2, 3, 8, 8) for _ in range(12)]
    scores = _DistributionScores(net)
    for i, fake in enumerate(fakes):
        scores.update({"fake": fake, "baseline": fake}, i)
    scores.model.update(real=torch.rand(4, 3, 8, 8))
    got = scores.model.compute()
    quantized = (torch.cat(fakes) * 255).round() / 255
    expected = inception_score(net.class_logits(net(quantized).double()))
    assert got["fake"] == 24 and (got["is"], got["is_std"]) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="one place per image: 1 places for 2 logits"):
        InceptionScore().update(torch.zeros(2, 4), torch.tensor([0]))
