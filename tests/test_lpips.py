"""LPIPS v0.1 from local files: the number is the formula's (checked with NumPy on features
from torchvision's own AlexNet/VGG16), the files are checked, and evaluation reports it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from img2img.cli import main
from img2img.errors import UserError
from img2img.metrics.lpips import CHANNELS, SCALE, SHIFT, TAPS, load_lpips


def torchvision_features(net: str) -> torch.nn.Sequential:
    if net == "alex":
        return torchvision.models.alexnet(weights=None).features
    from torchvision.models import vgg

    return vgg.make_layers(vgg.cfgs["D"])


def make_files(tmp_path, net: str, seed: int = 0):
    """A torchvision-layout backbone (.safetensors, with a classifier entry the metric must
    ignore) and a v0.1-layout linear-layer file (.pth) of random positive weights."""
    torch.manual_seed(seed)
    features = torchvision_features(net).eval()
    backbone = {f"features.{k}": v.clone() for k, v in features.state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(2, 2)
    save_file(backbone, str(tmp_path / f"{net}_backbone.safetensors"))
    lins = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS[net])}
    torch.save(lins, tmp_path / f"{net}.pth")
    return features, lins, tmp_path / f"{net}.pth", tmp_path / f"{net}_backbone.safetensors"


def numpy_lpips(features, lins, net, x, y) -> np.ndarray:
    """The LPIPS formula on features torchvision's network computes, in NumPy float64."""
    shift, scale = torch.tensor(SHIFT).view(1, 3, 1, 1), torch.tensor(SCALE).view(1, 3, 1, 1)
    taps = []
    for img in (x, y):
        h, out = ((img * 2 - 1) - shift) / scale, []
        with torch.no_grad():
            for i, layer in enumerate(features):
                h = layer(h)
                if i in TAPS[net]:
                    out.append(h.clone().double().numpy())
                if i == TAPS[net][-1]:
                    break
        taps.append(out)
    total = np.zeros(x.shape[0])
    for k, (a, b) in enumerate(zip(*taps)):
        a = a / (np.sqrt((a**2).sum(axis=1, keepdims=True)) + 1e-10)
        b = b / (np.sqrt((b**2).sum(axis=1, keepdims=True)) + 1e-10)
        w = lins[f"lin{k}.model.1.weight"].double().numpy().reshape(1, -1, 1, 1)
        total += ((a - b) ** 2 * w).sum(axis=1).mean(axis=(1, 2))
    return total


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_is_the_formula_on_torchvision_features(net, tmp_path):
    features, lins, lin_file, backbone = make_files(tmp_path, net)
    metric = load_lpips(net, str(lin_file), str(backbone))
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 48, generator=gen)
    y = (x + 0.2 * torch.rand(2, 3, 32, 48, generator=gen)).clamp(0, 1)
    with torch.no_grad():
        got = metric(x, y).double().numpy()
        same = metric(x, x)
    expected = numpy_lpips(features, lins, net, x, y)
    assert got.shape == (2,) and (expected > 0).all()
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert torch.equal(same, torch.zeros(2))
    small = {"alex": 30, "vgg": 15}[net]
    with pytest.raises(UserError, match=f"LPIPS \\({net}\\) needs images of at least {small + 1} pixels"):
        metric(x[..., :small], x[..., :small])


def test_lpips_files_missing_or_wrong_are_one_message(tmp_path, monkeypatch):
    _, _, lin_file, backbone = make_files(tmp_path, "alex")
    with pytest.raises(UserError, match=r"eval.lpips: alex needs the LPIPS v0.1 linear-layer file.*"
                       r"lpips/weights/v0.1/alex.pth.*--lpips-weights"):
        load_lpips("alex", None, str(backbone))
    with pytest.raises(UserError, match="eval.lpips_weights: file not found"):
        load_lpips("alex", str(tmp_path / "nope.pth"), str(backbone))
    with pytest.raises(UserError, match="eval.lpips_backbone: file not found.*alexnet-owt-7be5be79.pth"):
        load_lpips("alex", str(lin_file), str(tmp_path / "nope.pth"))
    with pytest.raises(UserError, match="eval.lpips_weights: .*lacks 'lin0.model.1.weight'"):
        load_lpips("alex", str(backbone), str(backbone))  # the backbone given as linear layers
    named = tmp_path / "alexnet-owt-7be5be79.pth"  # torchvision's name, other content
    named.write_bytes(lin_file.read_bytes())
    with pytest.raises(UserError, match="its SHA-256 begins .* expected 7be5be79"):
        load_lpips("alex", str(lin_file), str(named))
    # imagenet: torchvision's file from torch.hub's cache; offline, one message saying what to do
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def refuse(url, dst, hash_prefix=None, progress=True):
        raise ConnectionError("no network in this test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    with pytest.raises(UserError, match="cannot get torchvision's ImageNet AlexNet weights.*"
                       "eval.lpips_backbone=/path/to/alexnet-owt-7be5be79.pth"):
        load_lpips("alex", str(lin_file), "imagenet")


def test_img2img_eval_reports_lpips(tmp_path, capsys):
    from img2img.config import load_config
    from img2img.model_io import save_model
    from img2img.tasks import build_generators
    from tests.tiny import make_task_data

    _, _, lin_file, backbone = make_files(tmp_path, "alex")
    data = make_task_data(tmp_path / "data", "srgan", n_train=0, n_val=2, size=48)
    config = load_config(None, ["task=esrgan", "model.generator.name=srvgg_compact", "model.generator.ngf=8",
                                "model.generator.n_blocks=1", "data.scale=2", "model.discriminator.name=none"])
    model = save_model(tmp_path / "model", config, build_generators(config))
    args = ["eval", str(model), "--data", str(data / "val"), "--json", "--lpips", "alex",
            "--lpips-weights", str(lin_file), "--lpips-backbone", str(backbone)]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"]["lpips"] > 0 and result["baseline"]["lpips"] > 0
    rows = result["per_image"]
    assert len(rows) == 2 and all("lpips" in r and "lpips" in r["baseline"] for r in rows)
    assert result["model"]["lpips"] == pytest.approx(sum(r["lpips"] for r in rows) / 2)
    assert main(["eval", str(model), "--data", str(data / "val"), "--lpips", "vgg"]) == 2
    assert "eval.lpips: vgg needs the LPIPS v0.1 linear-layer file" in capsys.readouterr().err
