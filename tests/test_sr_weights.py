"""SR weights in the original code's key layout: importing the originals' files gives their
outputs, and what ``img2img export --format sr-weights`` writes loads in the real spandrel
package (the loader behind chaiNNer and ComfyUI) and gives img2img's output there."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

import img2img
from img2img.cli import main
from img2img.config import load_config
from img2img.convert import export_reference_model, import_reference_weights
from img2img.errors import UserError
from img2img.model_io import save_model
from img2img.nets import UNetDiscriminatorSN
from img2img.sr_weights import from_original, to_original, write_sr_weights
from img2img.tasks import build_generators
from tests.reference_sr import (
    RefRRDBNet,
    RefSRVGGNetCompact,
    RefUNetDiscriminatorSN,
    UnitRange,
    randomise,
)

spandrel = pytest.importorskip("spandrel")


def esrgan_config(generator: str, scale: int, *extra: str):
    return load_config(None, ["task=esrgan", f"model.generator.name={generator}", f"data.scale={scale}",
                              "model.generator.ngf=8", "model.discriminator.name=none", *extra])


def same(a: torch.nn.Module, b: torch.nn.Module, shape, atol=1e-5) -> None:
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        got, expected = a.eval()(x.clone()), b.eval()(x.clone())
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < atol, (got - expected).abs().max()


# --------------------------------------------------------------------------- import


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_original_rrdbnet_file_imports_with_its_outputs(scale, tmp_path):
    ref = randomise(RefRRDBNet(nf=8, nb=1, scale=scale), seed=scale, scale=0.1)
    raw = randomise(RefRRDBNet(nf=8, nb=1, scale=scale), seed=10 + scale, scale=0.1)
    pth = tmp_path / "RealESRGAN_tiny.pth"
    torch.save({"params_ema": ref.state_dict(), "params": raw.state_dict()}, pth)
    config = esrgan_config("rrdbnet", max(scale, 2), "model.generator.n_blocks=1")
    if scale == 1:  # data.scale takes 2-4; x1 is a network option, built directly
        from img2img.nets import RRDBNet

        ours = RRDBNet(3, 3, 8, 1, scale=1)
        ours.load_state_dict(from_original(ours, ref.state_dict()))
    else:
        ours = import_reference_weights(pth, config)
    same(ours, UnitRange(ref), (2, 3, 8, 12))


def test_original_compact_file_imports_and_exports(tmp_path):
    ref = randomise(RefSRVGGNetCompact(nf=8, num_conv=3, upscale=4), seed=1)
    pth = tmp_path / "realesr-tiny.pth"
    torch.save({"params": ref.state_dict()}, pth)
    config = esrgan_config("srvgg_compact", 4, "model.generator.n_blocks=3")
    same(import_reference_weights(pth, config), UnitRange(ref), (1, 3, 9, 7))
    model = export_reference_model(pth, config, tmp_path / "model")
    image = torch.randint(0, 256, (9, 7, 3), generator=torch.Generator().manual_seed(0)).numpy().astype("uint8")
    with torch.no_grad():
        expected = ref(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)[0]
    expected = (expected.permute(1, 2, 0).clamp(0, 1) * 255).round().numpy()
    got = img2img.load(model)(image)
    assert got.shape == (36, 28, 3) and abs(got.astype(float) - expected).max() <= 1


def test_original_unet_discriminator_weights_load_both_ways():
    """Real-ESRGAN's discriminator files hold spectral norm's older hook keys
    (weight_orig, weight_u, weight_v); ours are torch's parametrization keys."""
    ref = randomise(RefUNetDiscriminatorSN(3, 8), seed=2)
    ref_state = ref.state_dict()
    assert "conv1.weight_orig" in ref_state and "conv1.weight_u" in ref_state
    ours = UNetDiscriminatorSN(3, 8)
    ours.load_state_dict(from_original(ours, ref_state))
    same(ours, ref, (2, 3, 16, 24))
    back = RefUNetDiscriminatorSN(3, 8)
    back.load_state_dict(to_original(ours))
    same(back, ref, (1, 3, 16, 16))
    with pytest.raises(Exception, match="multiples of 8"):
        ours(torch.zeros(1, 3, 12, 16))


# --------------------------------------------------------------------------- spandrel


def trained_like(config) -> torch.nn.Module:
    """The config's generator with every weight moved off its init (as after training)."""
    net = build_generators(config)["G"]
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return net.eval()


CASES = {
    "rrdbnet_x4": ("rrdbnet", 4, ["model.generator.n_blocks=1"], "ESRGAN"),
    "rrdbnet_x2": ("rrdbnet", 2, ["model.generator.n_blocks=1"], "ESRGAN"),
    "compact_x3": ("srvgg_compact", 3, ["model.generator.n_blocks=2"], "Compact"),
    "span_x4": ("span", 4, [], "SPAN"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_sr_weights_load_in_spandrel_with_the_same_output(case, suffix, tmp_path):
    generator, scale, extra, arch = CASES[case]
    net = trained_like(esrgan_config(generator, scale, *extra))
    path = write_sr_weights(net, tmp_path / f"model{suffix}")
    loaded = spandrel.ModelLoader().load_from_file(str(path)).eval()
    assert loaded.architecture.id == arch and loaded.scale == scale
    assert loaded.input_channels == 3 and loaded.output_channels == 3
    x = torch.rand(2, 3, 12, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = loaded.model(x)
        ours = (net(x * 2 - 1) + 1) / 2
    assert theirs.shape == ours.shape == (2, 3, 12 * scale, 16 * scale)
    # 1e-5 of the output's scale (a random SPAN's outputs reach ~10: it scales its input
    # by 255, and merging its branches into one conv rounds differently from spandrel's)
    assert (theirs - ours).abs().max() < 1e-5 * max(1.0, float(theirs.abs().max()))
    if suffix == ".safetensors":
        with safe_open(str(path), "pt") as f:
            assert f.metadata()["scale"] == str(scale)


def test_span_original_file_with_merged_convs_imports(tmp_path):
    config = esrgan_config("span", 2)
    net = trained_like(config)
    pth = tmp_path / "span_x2.pth"
    torch.save({"params_ema": to_original(net)}, pth)  # as the reference saves: with eval_conv
    assert any(".eval_conv." in k for k in to_original(net))
    same(import_reference_weights(pth, config), net, (1, 3, 10, 8))
    with pytest.raises(UserError, match="'no_norm' entry"):
        from_original(net, {**to_original(net), "no_norm": torch.zeros(1)})


def test_export_cli_writes_sr_weights_and_refuses_what_has_no_layout(tmp_path, capsys):
    config = esrgan_config("rrdbnet", 4, "model.generator.n_blocks=1")
    model = save_model(tmp_path / "model", config, {"G": trained_like(config)})
    out = tmp_path / "exports" / "esrgan_x4.safetensors"
    assert main(["export", str(model), "--format", "sr-weights", "--out", str(out)]) == 0
    assert "ESRGAN RRDBNet" in capsys.readouterr().out
    loaded = spandrel.ModelLoader().load_from_file(str(out))
    assert loaded.architecture.id == "ESRGAN" and loaded.scale == 4

    assert main(["export", str(model), "--format", "sr-weights", "--out", str(tmp_path / "x.onnx")]) == 2
    assert ".safetensors" in capsys.readouterr().err
    pix = load_config(None, ["task=pix2pix", "model.generator.name=unet", "model.generator.num_downs=3",
                             "model.generator.ngf=4"])
    pix_model = save_model(tmp_path / "pix", pix, build_generators(pix))
    assert main(["export", str(pix_model), "--format", "sr-weights", "--out", str(tmp_path / "p.pth")]) == 2
    err = capsys.readouterr().err
    assert "UNetGenerator has no original weights layout" in err and "Traceback" not in err
    assert not (tmp_path / "p.pth").exists()


def test_srresnet_exports_basicsr_layout_only_on_unit_range():
    from tests.test_convert import RefMSRResNet

    unit = load_config(None, ["task=srgan", "model.generator.name=srresnet", "model.generator.ngf=8",
                              "model.generator.n_blocks=2", "data.scale=4", "model.generator.value_range=unit"])
    net = trained_like(unit)
    ref = RefMSRResNet(8, 2).eval()
    ref.load_state_dict(to_original(net))  # upconv1/upconv2: BasicSR's names
    same(net, UnitRange(ref), (1, 3, 8, 8))
    signed = load_config(None, ["task=srgan", "model.generator.name=srresnet", "model.generator.ngf=8",
                                "model.generator.n_blocks=2", "data.scale=4"])
    with pytest.raises(UserError, match="value_range: unit"):
        to_original(build_generators(signed)["G"])
