"""Third-party SR weights through spandrel: ``img2img.load("model.pth")`` and ``img2img
predict model.pth``, weights only, with img2img's tiling, batching, bit depths and export."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import img2img
from img2img.cli import main
from img2img.errors import UserError

spandrel = pytest.importorskip("spandrel")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def photo(h: int, w: int) -> np.ndarray:
    from skimage import data

    return data.astronaut()[100 : 100 + h, 150 : 150 + w].astype(np.float32) / 255


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """An ESRGAN (RRDB) x2 and a Real-ESRGAN Compact x4, built with spandrel's classes and
    saved as their original code saves them (state dict, original key layout)."""
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN

    root = tmp_path_factory.mktemp("third_party")
    torch.manual_seed(0)
    esrgan = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2).eval()
    compact = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4).eval()
    torch.save(esrgan.state_dict(), root / "esrgan_x2.pth")
    torch.save({"params_ema": compact.state_dict()}, root / "compact_x4.pth")  # BasicSR's wrapping
    save_file({k: v.contiguous() for k, v in esrgan.state_dict().items()}, str(root / "esrgan_x2.safetensors"))
    return {"esrgan": root / "esrgan_x2.pth", "compact": root / "compact_x4.pth",
            "esrgan_st": root / "esrgan_x2.safetensors", "nets": {"esrgan": esrgan, "compact": compact}}


@pytest.mark.parametrize("kind,scale", [("esrgan", 2), ("compact", 4), ("esrgan_st", 2)])
def test_third_party_weights_predict_as_their_network(weights, kind, scale):
    t = img2img.load(weights[kind], device="cpu")
    assert t.scale == scale and t.external is not None
    assert t.external.architecture == ("ESRGAN" if kind.startswith("esrgan") else "RealESRGAN Compact")
    x = photo(37, 45)
    net = weights["nets"][kind.removesuffix("_st")]
    with torch.inference_mode():
        expected = net(torch.from_numpy(x).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    got = t(x)
    assert got.shape == (37 * scale, 45 * scale, 3)
    assert np.abs(got - expected).max() < 1e-5


def test_tiled_batched_and_16_bit_equal_untiled(weights):
    t = img2img.load(weights["esrgan"], device="cpu")
    x = photo(70, 90)
    whole = t(x)
    tiled = t(x, tile=32, batch_size=3)  # the overlap the network needs
    assert psnr(tiled, whole) > 45
    deep = (x * 65535).round().astype(np.uint16)
    out16 = t([deep, deep[:40]], tile=32)
    assert out16[0].dtype == np.uint16 and out16[1].shape == (80, 180, 3)
    assert psnr(out16[0] / 65535.0, whole) > 45


def test_predict_names_the_architecture_and_exports(weights, tmp_path, capsys):
    from img2img.data.io import write_image

    write_image(tmp_path / "in" / "a.png", photo(20, 24))
    assert main(["predict", str(weights["compact"]), str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--tile", "16", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "RealESRGAN Compact x4 (SR, 3 -> 3 channels), loaded through spandrel" in err
    assert (tmp_path / "out" / "a.png").is_file()
    assert main(["export", str(weights["esrgan"]), "--format", "onnx", "--out", str(tmp_path / "e.onnx")]) == 0
    assert "max |onnx - predict|" in capsys.readouterr().out and (tmp_path / "e.onnx").is_file()
    assert main(["export", str(weights["esrgan"]), "--format", "hub", "--out", str(tmp_path / "h")]) == 2
    assert "third-party weights file" in capsys.readouterr().err


class NotAWeight:
    pass


def test_nothing_is_unpickled_and_unknown_weights_are_named(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(1), "payload": NotAWeight()}, evil)
    with pytest.raises(UserError, match="weights_only=True"):
        img2img.load(evil)
    odd = tmp_path / "odd.pth"
    torch.save({"some.layer.weight": torch.zeros(3, 3)}, odd)
    with pytest.raises(UserError, match="spandrel recognises no architecture"):
        img2img.load(odd)
    with pytest.raises(UserError, match="not found"):
        img2img.load(tmp_path / "missing.pth")
