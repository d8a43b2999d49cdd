"""``img2img export``: the self-contained ONNX model (against predict at odd sizes, float32
and float16), the bare network (onnx-raw, against PyTorch at two sizes), TorchScript,
safetensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from img2img import model_io
from img2img.cli import main
from img2img.config import load_config
from img2img.export import TOLERANCE, export_onnx
from img2img.inference import load
from img2img.tasks import build_generators

TINY = {
    "unet": ["task=pix2pix", "model.generator.name=unet", "model.generator.num_downs=3",
             "model.generator.ngf=8"],
    "resnet": ["task=cyclegan", "model.generator.name=resnet", "model.generator.n_blocks=1",
               "model.generator.ngf=8"],
    "resnet_instance": ["task=cyclegan", "model.generator.name=resnet", "model.generator.n_blocks=2",
                        "model.generator.ngf=8", "model.generator.norm=instance"],
    "srresnet": ["task=srgan", "model.generator.name=srresnet", "model.generator.n_blocks=1",
                 "model.generator.ngf=8", "data.scale=3"],
    "colorization": ["task=colorization", "model.generator.name=unet",
                     "model.generator.num_downs=3", "model.generator.ngf=8"],
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export_models")
    paths = {}
    for kind, overrides in TINY.items():
        torch.manual_seed(1)
        config = load_config(None, overrides)
        generators = build_generators(config)
        with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
            for module in (m for g in generators.values() for m in g.modules()):
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.5, 0.5)
                    module.running_var.uniform_(0.5, 2.0)
        paths[kind] = model_io.save_model(root / kind, config, generators)
    return paths


def _torch_out(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return net(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("kind", ["unet", "resnet", "srresnet"])
def test_onnx_raw_matches_pytorch_at_two_sizes(models, kind, tmp_path, capsys):
    out = tmp_path / f"{kind}.onnx"
    assert main(["export", str(models[kind]), "--format", "onnx-raw", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ONNX Runtime check: max |onnx - torch| =" in printed
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    net = load(models[kind], device="cpu").net
    m = int(meta["size_multiple"])
    assert m == net.size_multiple and int(meta["scale"]) == net.scale
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for n, h, w in [(1, 2 * m * 4, 3 * m * 4), (3, 5 * m * 2, 2 * m * 4)]:
        x = rng.uniform(-1, 1, (n, 3, h, w)).astype(np.float32)
        got = session.run(None, {"input": x})[0]
        expected = _torch_out(net, x)
        assert got.shape == (n, 3, h * net.scale, w * net.scale)
        assert np.abs(got - expected).max() < TOLERANCE


def test_onnx_raw_cyclegan_direction_and_colorization(models, tmp_path, capsys):
    out = tmp_path / "b2a.onnx"
    assert main(["export", str(models["resnet"]), "--format", "onnx-raw", "--direction", "BtoA",
                 "--out", str(out), "--opset", "18"]) == 0
    g_b = load(models["resnet"], direction="BtoA").net
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 24, 32)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert np.abs(got[0] - _torch_out(g_b, x)).max() < TOLERANCE
    assert onnx.load(str(out)).opset_import[0].version == 18

    col = tmp_path / "exports"
    col.mkdir()
    assert main(["export", str(models["colorization"]), "--format", "onnx-raw", "--out", str(col)]) == 0
    (path,) = col.glob("*.onnx")  # a folder gets <task>_<generator>.onnx
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert "L/50-1" in meta["colorization"] and "L/50 - 1, one channel" in meta["input_range"]
    assert "input NCHW in [-1, 1]: Lab lightness as L/50 - 1" in capsys.readouterr().out
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    lum = np.random.default_rng(2).uniform(-1, 1, (2, 1, 16, 24)).astype(np.float32)
    ab = session.run(None, {"input": lum})[0]
    assert ab.shape == (2, 2, 16, 24)
    assert np.abs(ab - _torch_out(load(models["colorization"]).net, lum)).max() < TOLERANCE
    capsys.readouterr()


ODD_SIZES = [(1, 1), (7, 13), (67, 45), (301, 197)]


@pytest.mark.parametrize("kind", ["unet", "resnet", "resnet_instance", "srresnet", "colorization"])
def test_onnx_is_the_whole_model_at_any_size(models, kind, tmp_path, capsys):
    """RGB (or grey) in [0, 1] of any size in, what predict gives (before 8-bit
    quantisation) out: padding, colour conversion and crop are inside the graph."""
    out = tmp_path / f"{kind}.onnx"
    assert main(["export", str(models[kind]), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ONNX Runtime check against img2img predict: max |onnx - predict| =" in printed
    assert "at 1x3x301x197" in printed and "at 1x1x23x17" in printed
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    translator = load(models[kind], device="cpu")
    rng = np.random.default_rng(5)
    for n, c, (h, w) in [(1, 3, s) for s in ODD_SIZES] + [(3, 3, (9, 70)), (2, 1, (30, 5))]:
        x = rng.random((n, c, h, w), dtype=np.float32)
        got = session.run(None, {"input": x})[0]
        expected = translator(torch.from_numpy(x)).numpy()  # predict before quantisation
        assert got.shape == (n, 3, h * translator.scale, w * translator.scale)
        assert np.abs(got - expected).max() < TOLERANCE, (kind, x.shape)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["padding"] == "inside the graph" and "[0, 1]" in meta["input"]


def test_onnx_half_is_float16_and_within_1e_2(models, tmp_path, capsys):
    full, half = tmp_path / "full.onnx", tmp_path / "half.onnx"
    assert main(["export", str(models["resnet"]), "--format", "onnx", "--out", str(full)]) == 0
    assert main(["export", str(models["resnet"]), "--format", "onnx", "--half", "--out", str(half)]) == 0
    assert "float16 network, float32 in and out" in capsys.readouterr().out
    kinds = {onnx.TensorProto.DataType.Name(t.data_type) for t in onnx.load(str(half)).graph.initializer
             if len(t.dims) == 4}  # the convolution weights
    assert kinds == {"FLOAT16"} and half.stat().st_size < 0.7 * full.stat().st_size
    x = np.random.default_rng(6).random((1, 3, 45, 67), dtype=np.float32)
    got = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert got.dtype == np.float32
    assert np.abs(got - load(models["resnet"])(torch.from_numpy(x)).numpy()).max() < 1e-2
    raw = tmp_path / "raw16.onnx"
    assert main(["export", str(models["srresnet"]), "--format", "onnx-raw", "--half", "--out", str(raw)]) == 0
    assert main(["export", str(models["srresnet"]), "--format", "torchscript", "--half", "--out",
                 str(tmp_path / "x.pt")]) == 2
    assert "--half applies to --format onnx and onnx-raw" in capsys.readouterr().err


def test_onnx_export_refuses_a_wrong_result(models, tmp_path):
    """The check compares against the network itself: a network whose traced graph is not
    what it computes (here: a Python-side branch on the input size) fails and writes nothing."""

    class SizeDependent(torch.nn.Module):
        size_multiple, scale, in_channels, out_channels = 1, 1, 3, 3

        def forward(self, x):
            return x * 2 if x.shape[-1] % 2 else x  # frozen at trace time

    from img2img.errors import UserError

    out = tmp_path / "bad.onnx"
    with pytest.raises(UserError, match="check failed"):
        export_onnx(SizeDependent(), out)
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_matches(models, tmp_path, capsys):
    out = tmp_path / "sr.pt"
    assert main(["export", str(models["srresnet"]), "--format", "torchscript", "--out",
                 str(out)]) == 0
    assert "TorchScript check" in capsys.readouterr().out
    traced = torch.jit.load(str(out))
    net = load(models["srresnet"]).net
    x = torch.rand(2, 3, 19, 23) * 2 - 1
    with torch.inference_mode():
        assert (traced(x) - net(x)).abs().max() < TOLERANCE


def test_safetensors_export_is_a_loadable_model_dir(models, tmp_path, capsys):
    out = tmp_path / "copy"
    assert main(["export", str(models["resnet"]), "--format", "safetensors", "--out",
                 str(out)]) == 0
    capsys.readouterr()
    original, again = load(models["resnet"]), load(out)
    for name in ("G_A", "G_B"):
        a, b = original.generators[name].state_dict(), again.generators[name].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_safetensors_export_never_replaces_other_folders(models, tmp_path, capsys):
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "thesis.txt").write_text("keep me")
    assert main(["export", str(models["unet"]), "--format", "safetensors", "--out",
                 str(precious)]) == 2
    assert "not an img2img model directory" in capsys.readouterr().err
    assert (precious / "thesis.txt").read_text() == "keep me"
    from img2img.errors import UserError

    with pytest.raises(UserError, match="not an img2img model directory"):
        load(models["unet"]).save_pretrained(precious)
    assert (precious / "thesis.txt").read_text() == "keep me"


def test_export_errors(models, tmp_path, capsys):
    assert main(["export", str(models["unet"]), "--format", "onnx", "--direction", "BtoA",
                 "--out", str(tmp_path / "x.onnx")]) == 2
    assert "direction BtoA does not apply to this pix2pix model: it has one generator" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--format", "onnx", "--out", str(tmp_path / "y")]) == 2
    assert "is not a model" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    cases = {
        ("onnx", str(tmp_path / "o.onnx"), "--opset", "99"): "ONNX export at opset 99 failed: Unsupported",
        ("onnx", str(tmp_path / "file" / "o.onnx")): "is a file, not a folder",
        ("torchscript", str(tmp_path / "file" / "o.pt")): "is a file, not a folder",
        ("safetensors", str(tmp_path / "m.safetensors")): "writes a model folder",
        ("safetensors", str(tmp_path / "file" / "m")): "is a file, not a folder",
        ("onnx", " "): "--out is empty",
    }
    for (fmt, out, *extra), message in cases.items():
        assert main(["export", str(models["unet"]), "--format", fmt, "--out", out, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (fmt, out, err)
    assert not (tmp_path / "o.onnx").exists() and not (tmp_path / "m.safetensors").exists()
