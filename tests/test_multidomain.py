"""`img2img demo multidomain` (StarGAN on the sample data's four domains) and the
evaluation pieces it relies on: per-domain FID/KID in the demo's report and in `img2img
eval`'s table, `data.max_val_images` taking images in turn from each domain, and each real
image through the feature network once (the same numbers as feeding it to each metric)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from img2img.cli import main
from img2img.config import load_config
from img2img.data.domains import round_robin
from img2img.data.sample import DOMAINS, build_sample_data
from img2img.evaluate import evaluate
from img2img.metrics import FidKid
from img2img.tasks import build_task
from img2img.tasks.stargan import domain_maps
from tests.tiny import made_up_fid_weights

QUIET = ["log.wandb=off", "log.progress=false", "device=cpu"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return build_sample_data(tmp_path_factory.mktemp("sample") / "data")


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory) -> Path:
    return made_up_fid_weights(tmp_path_factory.mktemp("fid") / "fid.safetensors")


def test_demo_trains_and_says_where_the_samples_are_and_how_to_predict_a_domain(sample, tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "img2img", "demo", "multidomain", "--steps", "2", "--out", str(tmp_path / "runs"),
         "--data", str(sample), *QUIET],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "multidomain"
    out = proc.stdout
    assert "demo 'multidomain' finished" in out and "(2 steps)" in out
    assert "2 steps of 5 D updates and 1 G update" in proc.stderr  # the paper's n_critic
    assert (run / "samples" / "step-000002.png").is_file()
    assert f"samples       : {run / 'samples'}  (step-NNNNNN.png, columns: input | G(x, c) | G(G(x, c), c_x))" in out
    assert "--out predictions --to poster" in out and "one of photo, hue, sepia, poster" in out
    assert f"{sample / 'multidomain' / 'val'} --out predictions --to all" in out
    assert "eval.fid_weights=PATH" in out  # no FID weights: says where to get them
    config = json.loads((run / "model" / "config.json").read_text())["config"]
    assert config["task_options"]["domains"] == ["photo", "hue", "sepia", "poster"]
    # the printed command works: one subfolder per domain
    code = main(["predict", str(run), str(sample / "multidomain" / "val" / "sepia"), "--out",
                 str(tmp_path / "pred"), "--to", "all", "--device", "cpu"])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "pred").iterdir() if p.is_dir()) == sorted(DOMAINS)
    assert len(list((tmp_path / "pred" / "hue").glob("*.png"))) == len(list((sample / "multidomain" / "val" / "sepia").glob("*.png")))


def test_demo_with_fid_weights_reports_every_target_domain_and_eval_shows_them(sample, fid_weights, tmp_path,
                                                                               capsys):
    # 8 held-out images: in turn from each domain, 2 of each (the first 8 would be 7 photos and 1 hue)
    code = main(["demo", "multidomain", "--steps", "1", "--out", str(tmp_path / "runs"), "--data", str(sample),
                 f"eval.fid_weights={fid_weights}", "data.max_val_images=8", *QUIET])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("    into ")}
    assert sorted(rows) == sorted(DOMAINS), out
    for line in rows.values():
        values = [float(v) for v in line.split() if v.replace(".", "").replace("-", "").isdigit()]
        assert len(values) == 4 and values[0] > 0 and values[1] > 0, line  # fid model, baseline; kid model, baseline
    assert "held-out images: 8 (A), 8 (B)" in out

    # `img2img eval` of the model prints one row per target domain that has real images
    val = tmp_path / "val"
    for domain in ("hue", "sepia"):
        for path in sorted((sample / "multidomain" / "val" / domain).glob("*.png"))[:2]:
            (val / domain).mkdir(parents=True, exist_ok=True)
            (val / domain / path.name).write_bytes(path.read_bytes())
    code = main(["eval", str(tmp_path / "runs" / "multidomain"), "--data", str(val), "--fid-weights",
                 str(fid_weights), "--device", "cpu"])
    table = capsys.readouterr().out
    assert code == 0, table
    lines = table.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("per target domain"))
    assert lines[head].split()[3:] == ["fid", "fid", "(base)", "kid", "kid", "(base)", "is", "is", "(base)",
                                       "kid_std", "kid_std", "(base)", "is_std", "is_std", "(base)"], table
    per_domain = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines[head + 1 : head + 3]}
    assert sorted(per_domain) == ["hue", "sepia"] and all(len(v) == 10 for v in per_domain.values())
    model_fid = next(line for line in lines if line.startswith("model")).split()[1]
    assert float(model_fid) == pytest.approx(sum(v[0] for v in per_domain.values()) / 2, abs=1e-4)
    assert "(base): the baseline (identity) against the same domain's images" in table


def test_max_val_images_takes_images_in_turn_from_each_domain(sample, tmp_path):
    items = [(Path(f"{label}_{k}"), label) for label, n in ((0, 3), (1, 1), (2, 4)) for k in range(n)]
    assert [p.name for p, _ in round_robin(items, 5)] == ["0_0", "0_1", "1_0", "2_0", "2_1"]
    assert round_robin(items, 100) == items and round_robin([], 3) == []
    config = load_config("configs/demo/multidomain.yaml",
                         [f"data.root={sample / 'multidomain'}", f"output_dir={tmp_path}", "data.max_val_images=6"])
    dataset = build_task(config).build_dataset("val")
    assert dataset.labels == [0, 0, 1, 1, 2, 3]
    assert [Path(p).parent.name for p in dataset.paths[:2]] == ["photo", "photo"]


class _CountingFeatures(torch.nn.Module):
    """A small feature network (8 features) that counts the images it sees."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        return torch.tanh(self.conv(x)).mean((2, 3)) * 10


def test_each_image_passes_the_feature_network_once_with_unchanged_numbers(sample, tmp_path):
    config = load_config("configs/demo/multidomain.yaml",
                         [f"data.root={sample / 'multidomain'}", f"output_dir={tmp_path}", "data.max_val_images=8",
                          "data.preprocess=none"])
    task = build_task(config)
    dataset = task.build_dataset("val")
    torch.manual_seed(0)
    G = task.build_generators()
    net = _CountingFeatures()
    result = evaluate(task, G, dataset, torch.device("cpu"), feature_net=net)
    # 8 inputs, each into 3 targets; each input once as the baseline of its 3 targets; the
    # 8 references once each (not once per metric)
    assert net.seen == 8 * 3 + 8 + 8

    # The same numbers from two metrics per domain, each fed every image itself
    domains = list(DOMAINS)
    expected = {d: (FidKid(net, inception_score=False), FidKid(net, inception_score=False)) for d in domains}
    with torch.no_grad():
        for i in range(len(dataset)):
            x, source = dataset[i]["A"][None], dataset.labels[i]
            targets = [t for t in range(len(domains)) if t != source]
            fakes = G["G"].eval()(domain_maps(x.expand(3, -1, -1, -1), torch.tensor(targets), len(domains)))
            for fake, target in zip(fakes, targets):
                model, baseline = expected[domains[target]]
                model.update(fake=((fake[None] + 1) / 2).clamp(0, 1))
                baseline.update(fake=((x + 1) / 2).clamp(0, 1))
        for i in range(len(dataset)):
            for metric in expected[domains[dataset.labels[i]]]:
                metric.update(real=((dataset[i]["A"][None] + 1) / 2).clamp(0, 1))
    for domain, (model, baseline) in expected.items():
        for which, metric in (("model", model), ("baseline", baseline)):
            want = metric.compute()
            got = result["groups"][domain][which]
            assert math.isfinite(want["fid"]) and got["fid"] == want["fid"] and got["kid"] == want["kid"], domain


class _LogitFeatures(_CountingFeatures):
    """:class:`_CountingFeatures` with a 5-class head (as the Inception's class logits)."""

    def class_logits(self, features: torch.Tensor) -> torch.Tensor:
        head = torch.randn(8, 5, generator=torch.Generator().manual_seed(2), dtype=features.dtype)
        return features @ head * 5


def test_inception_score_per_target_domain_and_its_mean(sample, tmp_path):
    from img2img.metrics.inception_score import inception_score

    config = load_config("configs/demo/multidomain.yaml",
                         [f"data.root={sample / 'multidomain'}", f"output_dir={tmp_path}", "data.preprocess=none"])
    task = build_task(config)
    dataset = task.build_dataset("val")
    torch.manual_seed(0)
    G = task.build_generators()
    net = _LogitFeatures()
    result = evaluate(task, G, dataset, torch.device("cpu"), feature_net=net)
    assert len(dataset) == 28  # 7 per domain: 21 outputs into each, in 10 splits
    domains = list(DOMAINS)
    fakes: dict[str, list] = {d: [] for d in domains}
    inputs: dict[str, list] = {d: [] for d in domains}
    with torch.no_grad():  # each domain's outputs and untranslated inputs, in val order
        for i in range(len(dataset)):
            x, source = dataset[i]["A"][None], dataset.labels[i]
            for target in (t for t in range(len(domains)) if t != source):
                fake = G["G"].eval()(domain_maps(x, torch.tensor([target]), len(domains)))
                fakes[domains[target]].append(((fake + 1) / 2).clamp(0, 1))
                inputs[domains[target]].append(((x + 1) / 2).clamp(0, 1))
    probe = FidKid(net)
    for which, images in (("model", fakes), ("baseline", inputs)):
        for domain in domains:
            logits = net.class_logits(probe.features(torch.cat(images[domain])))
            got = result["groups"][domain][which]
            mean, std = inception_score(logits)  # features batched differently: float32 rounding
            assert got["is"] == pytest.approx(mean, rel=1e-6) and got["is_std"] == pytest.approx(std, abs=1e-8)
        mean = sum(result["groups"][d][which]["is"] for d in domains) / len(domains)
        assert result[which]["is"] == pytest.approx(mean, rel=1e-12) and result[which]["is"] > 1.0


def test_a_target_domain_without_real_images_is_named_in_a_warning(sample, tmp_path, caplog):
    import logging
    import shutil

    root = tmp_path / "data"
    shutil.copytree(sample / "multidomain" / "val", root / "val")
    shutil.rmtree(root / "val" / "poster")  # no real poster images to meet the outputs into poster
    config = load_config("configs/demo/multidomain.yaml",
                         [f"data.root={root}", f"output_dir={tmp_path / 'run'}", "data.max_val_images=6",
                          "data.preprocess=none"])
    task = build_task(config)
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING, logger="img2img"):
        result = evaluate(task, task.build_generators(), task.build_dataset("val"), torch.device("cpu"),
                          feature_net=_CountingFeatures())
    assert set(result["groups"]) == {"photo", "hue", "sepia"}
    warned = [r.getMessage() for r in caplog.records if "left out of FID/KID" in r.getMessage()]
    assert len(warned) == 1 and "poster" in warned[0] and "no real images" in warned[0]
