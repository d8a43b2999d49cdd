"""Translator: any size, tiles, batches, input kinds, save/load, ``img2img predict``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import img2img
from img2img import model_io
from img2img.cli import main
from img2img.config import load_config
from img2img.errors import UserError
from img2img.inference import (
    Translator,
    blend_weights,
    load,
    plan_tiles,
    tile_starts,
)
from img2img.nets.contract import pad_to_multiple
from img2img.tasks import build_generators

TINY = {
    "unet": ["task=pix2pix", "model.generator.name=unet", "model.generator.num_downs=3",
             "model.generator.ngf=8"],
    "resnet": ["task=cyclegan", "model.generator.name=resnet", "model.generator.n_blocks=1",
               "model.generator.ngf=8"],
    "srresnet": ["task=srgan", "model.generator.name=srresnet", "model.generator.n_blocks=2",
                 "model.generator.ngf=8", "data.scale=4"],
}
# the tiniest x4 SRResNet, for the large sizes
TINIEST_SR = ["model.generator.ngf=4", "model.generator.n_blocks=1"]


def make_model(directory: Path, kind: str, extra: list[str] = (), seed: int = 0) -> Path:
    """An exported model directory with a tiny generator of ``kind``. SRResNet convs get
    10x BasicSR's init so the network does more than bilinear upsampling."""
    torch.manual_seed(seed)
    config = load_config(None, [*TINY[kind], *extra])
    generators = build_generators(config)
    if kind == "srresnet":
        with torch.no_grad():
            for module in generators["G"].modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.weight.mul_(10)
                    module.bias.uniform_(-0.1, 0.1)
    return model_io.save_model(directory, config, generators)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    paths = {kind: make_model(root / kind, kind) for kind in TINY}
    paths["srresnet_tiniest"] = make_model(root / "sr_tiniest", "srresnet", TINIEST_SR)
    return paths


def float_psnr(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A float32 HxWx3 image in [0, 1] with structure at several scales."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, h // 16), max(2, w // 16), generator=gen)
    img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")
    img = img + 0.1 * torch.rand(1, 3, h, w, generator=gen)
    return img.clamp(0, 1)[0].permute(1, 2, 0).numpy().copy()


# --------------------------------------------------------------------------- sizes, padding


@pytest.mark.parametrize("kind", ["unet", "resnet", "srresnet_tiniest"])
def test_every_size_comes_back_exact(models, kind):
    t = load(models[kind], device="cpu")
    assert t.size_multiple == {"unet": 8, "resnet": 4, "srresnet_tiniest": 1}[kind]
    for h, w in [(1, 1), (7, 13), (301, 197), (1023, 769)]:
        x = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
        # the large case runs tiled for the x4 model (bounded memory), whole for the others
        tile = 256 if (h > 1000 and t.scale > 1) else 0
        y = t(x, tile=tile, tile_overlap=16, batch_size=2)
        assert y.dtype == np.uint8
        assert y.shape == (h * t.scale, w * t.scale, 3), (kind, h, w)


def test_output_is_the_network_output_at_valid_sizes(models):
    t = load(models["unet"], device="cpu")
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        expected = ((t.net(x * 2 - 1) + 1) / 2).clamp(0, 1)
    assert torch.allclose(t(x), expected, atol=1e-6)


def test_pad_to_multiple_reflects_and_replicates():
    x = torch.arange(7 * 13, dtype=torch.float32).reshape(1, 1, 7, 13)
    y, (top, left) = pad_to_multiple(x, 8)
    assert y.shape[-2:] == (8, 16) and (top, left) == (0, 1)
    assert torch.equal(y[..., top : top + 7, left : left + 13], x)
    assert torch.equal(y[..., 0, 0], x[..., 0, 1])  # reflection: column 1 mirrored to -1
    one = torch.full((1, 3, 1, 1), 0.25)
    big, (top, left) = pad_to_multiple(one, 256)
    assert big.shape[-2:] == (256, 256) and torch.all(big == 0.25)  # replicated
    tall = torch.rand(1, 1, 3, 40)  # pad of 5 on height 3: replicate; width 40: reflect
    z, (top, left) = pad_to_multiple(tall, 8)
    assert z.shape[-2:] == (8, 40) and torch.equal(z[..., top : top + 3, :], tall)


def test_resnet_runs_below_its_bottleneck_size(models):
    t = load(models["resnet"], device="cpu")
    assert t.min_size == 8  # 1/4 of the input must survive the blocks' reflection padding
    assert t(torch.rand(3, 2, 3)).shape == (3, 2, 3)


# --------------------------------------------------------------------------- tiles


@pytest.mark.parametrize(
    "length,tile,overlap", [(301, 64, 16), (100, 64, 48), (1000, 128, 0), (64, 64, 8), (65, 64, 8)]
)
def test_tile_weights_sum_to_one(length, tile, overlap):
    starts, size = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + size == length
    for a, b in zip(starts, starts[1:]):
        assert a + size - b >= overlap  # at least the asked overlap
    for scale in (1, 3):
        total = np.zeros(length * scale)
        for start, w in zip(starts, blend_weights(starts, size, scale)):
            assert torch.all(w > 0)
            total[start * scale : (start + size) * scale] += w.numpy()
        np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_tile_plan_feathers_interior_edges_only():
    plan = plan_tiles(200, 100, 64, 16, 1)
    first, last = plan.wy[0], plan.wy[-1]
    assert first[0] == 1 and first[-1] < 0.1  # image edge kept, interior edge ramps down
    assert last[0] < 0.1 and last[-1] == 1


def test_tiled_sr_matches_untiled(models):
    t = load(models["srresnet"], device="cpu")
    x = smooth_image(110, 90)
    whole = t(x)
    tiled = t(x, tile=48, tile_overlap=16, batch_size=3)
    hard = t(x, tile=48, tile_overlap=0)
    assert tiled.shape == whole.shape == (440, 360, 3)
    good, seams = float_psnr(tiled, whole), float_psnr(hard, whole)
    assert good > 45, good
    assert seams < good - 10, (seams, good)  # the overlap and blending are what make it match


@pytest.mark.parametrize("kind", ["unet", "resnet"])
def test_tiled_unet_resnet_close_to_untiled(models, kind):
    t = load(models[kind], device="cpu")
    x = smooth_image(130, 150, seed=1)
    whole = t(x)
    tiled = t(x, tile=64, tile_overlap=24, batch_size=4)
    assert tiled.shape == whole.shape
    assert float_psnr(tiled, whole) > 30


def test_tiled_colour_output_stays_integer_and_bounded(models):
    t = load(models["srresnet"], device="cpu")
    x = (smooth_image(90, 70) * 65535).round().astype(np.uint16)
    out = t(x, tile=32, tile_overlap=8)
    assert out.dtype == np.uint16 and out.shape == (360, 280, 3)
    ref = t(x.astype(np.float32) / 65535)
    assert np.abs(out / 65535.0 - t(x.astype(np.float32) / 65535, tile=32, tile_overlap=8)).max() \
        <= 0.5 / 65535 + 1e-6
    assert float_psnr(out / 65535.0, ref) > 45


# --------------------------------------------------------------------------- kinds, batches


def test_input_kinds_round_trip(models):
    t = load(models["srresnet"], device="cpu")
    u8 = (smooth_image(11, 9) * 255).round().astype(np.uint8)
    ref = t(u8.astype(np.float32) / 255)  # float32 numpy -> float32 numpy
    assert ref.dtype == np.float32 and ref.shape == (44, 36, 3)

    out = t(u8)
    assert out.dtype == np.uint8
    assert np.abs(out / 255.0 - ref).max() <= 0.5 / 255 + 1e-6

    out16 = t(u8.astype(np.uint16) * 257)
    assert out16.dtype == np.uint16
    assert np.abs(out16 / 65535.0 - ref).max() <= 0.5 / 65535 + 1e-6

    pil = t(Image.fromarray(u8))
    assert isinstance(pil, Image.Image) and pil.mode == "RGB" and pil.size == (36, 44)
    assert np.array_equal(np.asarray(pil), out)

    grey = t(Image.fromarray(u8[..., 0]))  # L mode -> RGB out
    assert grey.mode == "RGB" and grey.size == (36, 44)

    tensor = torch.from_numpy(u8).permute(2, 0, 1).float() / 255
    tout = t(tensor)
    assert isinstance(tout, torch.Tensor) and tout.shape == (3, 44, 36)
    assert tout.dtype == torch.float32 and 0 <= tout.min() and tout.max() <= 1
    np.testing.assert_allclose(tout.permute(1, 2, 0).numpy(), ref, atol=1e-6)

    batch = t(torch.stack([tensor, tensor.flip(-1)]))
    assert batch.shape == (2, 3, 44, 36)
    np.testing.assert_allclose(batch[0].numpy(), tout.numpy(), atol=1e-5)

    listed = t([u8, Image.fromarray(u8), tensor])
    assert isinstance(listed, list) and len(listed) == 3
    assert listed[0].dtype == np.uint8 and isinstance(listed[1], Image.Image)
    assert isinstance(listed[2], torch.Tensor)

    rgba = np.concatenate([u8, np.zeros_like(u8[..., :1])], axis=2)  # fully transparent
    white = t(np.full_like(u8, 255))
    assert np.array_equal(t(rgba), white)  # alpha composited on white


def test_inputs_a_user_gets_wrong_are_refused_clearly(models, tmp_path):
    t = load(models["srresnet"], device="cpu")
    u8 = (smooth_image(11, 9) * 255).round().astype(np.uint8)
    with pytest.raises(ValueError, match=r"in \[0, 1\]; this one holds values from \d+ to 2\d\d \(0-255 values: divide by 255\)"):
        t(u8.astype(np.float32))
    with pytest.raises(ValueError, match=r"from -0.8\d+ to .* use \(x \+ 1\) / 2"):
        t(torch.from_numpy(u8).permute(2, 0, 1).float() / 127.5 - 1)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        t(np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="an empty image \\(0x5 pixels\\)"):
        t(np.zeros((0, 5, 3), np.uint8))
    # a hair outside [0, 1] (resampling overshoot) is fine
    assert t(np.clip(u8 / 255.0 * 1.005, 0, 1.005).astype(np.float32)).shape == (44, 36, 3)


def test_pil_input_follows_its_exif_orientation(models, tmp_path):
    """As img2img predict does with files: a photo's EXIF orientation is applied."""
    t = load(models["srresnet"], device="cpu")
    u8 = (smooth_image(10, 20) * 255).round().astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise: shown 10 wide, 20 tall
    Image.fromarray(u8).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(tmp_path / "r.jpg") as photo:
        out = t(photo)
    assert out.size == (40, 80)
    from img2img.cli import main

    assert main(["predict", str(models["srresnet"]), str(tmp_path / "r.jpg"), "--out", str(tmp_path / "o.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), np.asarray(out))


def test_batches_and_mixed_sizes_equal_one_by_one(models):
    t = load(models["unet"], device="cpu")
    images = [smooth_image(20, 30, seed=i) for i in range(3)] + [smooth_image(17, 9, seed=9)]
    singles = [t(x) for x in images]
    together = t(images, batch_size=3)
    for a, b in zip(together, singles):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_cyclegan_direction_picks_the_generator(models):
    x = torch.rand(1, 3, 16, 16)
    a, b = load(models["resnet"], direction="AtoB"), load(models["resnet"], direction="BtoA")
    assert a.net is a.generators["G_A"] and b.net is b.generators["G_B"]
    with torch.no_grad():
        expected = ((b.generators["G_B"](x * 2 - 1) + 1) / 2).clamp(0, 1)
    assert torch.allclose(b(x), expected, atol=1e-6)
    assert not torch.allclose(a(x), b(x))
    with pytest.raises(UserError, match="direction BtoA does not apply to this pix2pix model"):
        load(models["unet"], direction="BtoA")


def test_train_mode_norm_uses_batch_statistics_and_keeps_weights(tmp_path):
    path = make_model(tmp_path / "m", "unet", ["model.generator.num_downs=6",
                                              "model.generator.dropout=true"])
    before = {k: v.clone() for k, v in load(path).net.state_dict().items()}
    x = torch.rand(2, 3, 64, 64)
    eval_t = load(path)
    assert torch.equal(eval_t(x), eval_t(x))  # eval mode: deterministic
    paper = load(path, train_mode_norm=True)
    torch.manual_seed(0)
    first = paper(x, batch_size=2)
    torch.manual_seed(1)
    second = paper(x, batch_size=2)
    assert not torch.allclose(first, second)  # dropout is on
    assert not torch.allclose(first, eval_t(x))  # batch statistics, not running ones
    for key, value in paper.net.state_dict().items():
        assert torch.equal(value, before[key]), key


# --------------------------------------------------------------------------- save, load


def test_save_pretrained_round_trip_is_bit_exact(models, tmp_path):
    t = load(models["resnet"])
    out = t.save_pretrained(tmp_path / "copy")
    again = Translator.from_pretrained(out, direction="BtoA")
    for name, net in t.generators.items():
        for (k1, v1), (k2, v2) in zip(net.state_dict().items(),
                                      again.generators[name].state_dict().items()):
            assert k1 == k2 and torch.equal(v1, v2)
    x = torch.rand(3, 20, 20)
    assert torch.equal(load(models["resnet"], direction="BtoA")(x), again(x))


def test_load_finds_run_checkpoint_and_model_dirs(models, tmp_path):
    config, generators = model_io.load_model(models["unet"])
    run = tmp_path / "run"
    model_io.save_model(run / "model", config, generators)
    ckpt = tmp_path / "run2" / "checkpoints" / "step-000020"
    model_io.save_model(ckpt / "model", config, generators)
    x = torch.rand(3, 16, 16)
    expected = load(models["unet"])(x)
    for path in (run, run / "model", run / "model" / "config.json", ckpt, ckpt.parent.parent):
        assert torch.equal(load(path)(x), expected), path
    assert torch.equal(img2img.load(run)(x), expected)
    assert img2img.Translator is Translator


def test_load_errors_are_clear(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="is not a model"):
        load(tmp_path / "empty")
    with pytest.raises(UserError, match="does not exist"):
        load(tmp_path / "missing")
    # Hub loading is explicit: an owner/name-looking path that does not exist is not found.
    with pytest.raises(UserError, match="model not found: no-such-owner/no-such-model-xyz does not exist.*hf://"):
        load("no-such-owner/no-such-model-xyz")
    with pytest.raises(UserError, match="Hugging Face Hub.*HF_HUB_OFFLINE"):
        load("hf://no-such-owner/no-such-model-xyz")
    pth = tmp_path / "latest_net_G.pth"  # weights files go to spandrel (weights only)
    torch.save({"w": torch.zeros(1)}, pth)
    with pytest.raises(UserError, match="latest_net_G.pth: spandrel recognises no architecture"):
        load(pth)
    with pytest.raises(UserError, match="smaller than the tile"):
        Translator(*model_io.load_model(make_model(tmp_path / "m", "unet")), tile=32,
                   tile_overlap=32)
    # a hand-edited config.json with the right format but wrong types: one line, no traceback
    model = make_model(tmp_path / "edited", "unet")
    meta = json.loads((model / "config.json").read_text())
    for key, value in (("generators", "G"), ("config", []), ("version", "1"), ("generators", [])):
        (model / "config.json").write_text(json.dumps({**meta, key: value}))
        with pytest.raises(UserError, match=r"config.json is damaged: it needs an integer \"version\""):
            load(model)


# --------------------------------------------------------------------------- img2img predict


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_predict_folder_keeps_layout_and_skips_bad_files(models, tmp_path, capsys):
    src = tmp_path / "in"
    rng = np.random.default_rng(0)
    _write_png(src / "a.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    _write_png(src / "sub" / "deeper" / "b.png", rng.integers(0, 256, (9, 7, 3), dtype=np.uint8))
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(src / "sub" / "c.jpg")
    (src / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "out"
    code = main(["predict", str(models["srresnet"]), str(src), "--out", str(out),
                 "--batch-size", "2", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.png" in err and "1 of 4 inputs failed" in err
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a.png", "sub/c.png", "sub/deeper/b.png"]
    assert Image.open(out / "a.png").size == (120, 80)
    assert Image.open(out / "sub" / "deeper" / "b.png").size == (28, 36)


def test_predict_matches_the_python_api(models, tmp_path, capsys):
    x = (smooth_image(33, 21) * 255).round().astype(np.uint8)
    _write_png(tmp_path / "in" / "x.png", x)
    code = main(["predict", str(models["unet"]), str(tmp_path / "in" / "x.png"),
                 "--out", str(tmp_path / "o"), "--tile", "16", "--tile-overlap", "4"])
    assert code == 0, capsys.readouterr().err
    got = np.asarray(Image.open(tmp_path / "o" / "x.png"))
    assert np.array_equal(got, load(models["unet"])(x, tile=16, tile_overlap=4))


def test_predict_glob_and_same_stem(models, tmp_path, capsys):
    src = tmp_path / "in"
    rng = np.random.default_rng(1)
    _write_png(src / "p.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(src / "p.jpg")
    _write_png(src / "q.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    code = main(["predict", str(models["unet"]), str(src / "p.*"), "--out", str(tmp_path / "o")])
    assert code == 0, capsys.readouterr().err
    # (.img2img.json lists what predict wrote, so a re-run may replace it)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [".img2img.json", "p.jpg.png", "p.png.png"]


def test_predict_leaves_out_earlier_prediction_folders_inside_its_input(models, tmp_path, capsys, caplog):
    src = tmp_path / "in"
    rng = np.random.default_rng(3)
    for rel in ("a.png", "sub/b.png"):
        _write_png(src / rel, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    assert main(["predict", str(models["unet"]), str(src), "--out", str(src / "out")]) == 0
    (src / "mine").mkdir()
    _write_png(src / "mine" / "c.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))  # the user's: kept
    assert main(["predict", str(models["unet"]), str(src), "--out", str(tmp_path / "elsewhere")]) == 0
    written = sorted(p.relative_to(tmp_path / "elsewhere").as_posix() for p in (tmp_path / "elsewhere").rglob("*.png"))
    assert written == ["a.png", "mine/c.png", "sub/b.png"]
    assert "skipped 2 image(s) in earlier prediction folders" in caplog.text and ": out" in caplog.text


def test_predict_glob_under_the_home_folder_keeps_its_layout(models, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    rng = np.random.default_rng(2)
    for rel in ("album/a/x.png", "album/b/y.png"):
        _write_png(tmp_path / rel, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    code = main(["predict", str(models["unet"]), "~/album/**/*.png", "--out", str(tmp_path / "o")])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "o" / "a" / "x.png").is_file() and (tmp_path / "o" / "b" / "y.png").is_file()


def test_predict_never_writes_over_its_inputs(models, tmp_path, capsys):
    src = tmp_path / "in"
    _write_png(src / "a.png", np.zeros((8, 8, 3), np.uint8))
    before = (src / "a.png").read_bytes()
    assert main(["predict", str(models["unet"]), str(src), "--out", str(src)]) == 2
    assert "input folder" in capsys.readouterr().err
    assert main(["predict", str(models["unet"]), str(src / "a.png"), "--out", str(src)]) == 2
    assert "input folder" in capsys.readouterr().err
    _write_png(src / "b.jpg", np.zeros((8, 8, 3), np.uint8))  # b.jpg -> b.png: a new file
    assert main(["predict", str(models["unet"]), str(src / "b.jpg"), "--out", str(src)]) == 2
    assert not (src / "b.png").exists()
    capsys.readouterr()
    assert main(["predict", str(models["unet"]), str(src / "*.png"), "--out", str(src)]) == 2
    assert (src / "a.png").read_bytes() == before
    assert main(["predict", str(models["unet"]), str(src), "--out", str(tmp_path / "o"),
                 "--tile", "32", "--tile-overlap", "32"]) == 2
    assert "smaller than the tile" in capsys.readouterr().err
    # an output folder inside the input folder is fine, and is never read as input
    assert main(["predict", str(models["unet"]), str(src), "--out", str(src / "out")]) == 0
    assert main(["predict", str(models["unet"]), str(src), "--out", str(src / "out")]) == 0
    assert sorted(p.name for p in (src / "out").iterdir()) == [".img2img.json", "a.png", "b.png"]


def test_predict_output_paths_users_give(models, tmp_path, capsys):
    from img2img.data.io import read_image

    src = tmp_path / "in"
    _write_png(src / "a.png", (smooth_image(12, 16) * 255).astype(np.uint8))
    _write_png(src / "sub" / "b.png", (smooth_image(12, 16) * 255).astype(np.uint8))
    model = str(models["srresnet"])
    # one input file to a named output file, even beside the input
    assert main(["predict", model, str(src / "a.png"), "--out", str(src / "a_x2.png")]) == 0
    assert f"wrote {src / 'a_x2.png'}" in capsys.readouterr().err
    assert read_image(src / "a_x2.png").shape == (48, 64, 3)  # x4 of 12x16
    assert main(["predict", model, str(src / "a.png"), "--out", str(tmp_path / "new" / "r.jpg")]) == 0
    assert (tmp_path / "new" / "r.jpg").is_file()
    capsys.readouterr()
    refusals = {
        (str(src / "a.png"), str(src / "a.png")): "would overwrite the input",
        (str(src / "sub"), str(src)): f"contains the input folder {src / 'sub'}",
        (str(src / "a.png"), " "): "--out is empty",
        (str(src), str(src / "a.png" / "deeper")): "cannot create the folder",
    }
    (tmp_path / "plain").write_text("x")
    refusals[(str(src), str(tmp_path / "plain"))] = "is a file, not a folder"
    for (given, out), message in refusals.items():
        assert main(["predict", model, given, "--out", out]) == 2, (given, out)
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (given, out, err)
    assert read_image(src / "a.png").shape == (12, 16, 3)  # untouched


def test_predict_16_bit_in_16_bit_out(models, tmp_path, capsys):
    from img2img.data.io import read_image, write_image

    x = smooth_image(24, 16)
    write_image(tmp_path / "in" / "deep.png", x, bit_depth=16)
    code = main(["predict", str(models["srresnet"]), str(tmp_path / "in"), "--out",
                 str(tmp_path / "o")])
    assert code == 0, capsys.readouterr().err
    out, info = read_image(tmp_path / "o" / "deep.png", return_info=True)
    assert info.bit_depth == 16 and out.shape == (96, 64, 3)
    levels = np.rint(out * 65535).astype(np.int64)
    assert np.any(levels % 257 != 0)  # not 8-bit values stretched to 16
    x16 = read_image(tmp_path / "in" / "deep.png")
    expected = load(models["srresnet"])(x16)
    assert np.abs(out - expected).max() <= 1.0 / 65535


def test_predict_checks_the_model_first_and_leaves_no_empty_folder(models, tmp_path, capsys, monkeypatch):
    import img2img.data.io

    src = tmp_path / "in"
    _write_png(src / "a.png", np.zeros((8, 8, 3), np.uint8))
    _write_png(src / "b.png", np.zeros((8, 8, 3), np.uint8))
    model = str(models["unet"])
    out = tmp_path / "new" / "out"
    # a mistyped or damaged model: nothing is created
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in ("config.json", "model.safetensors"):
        (damaged / name).write_bytes((models["unet"] / name).read_bytes()[:100])
    for bad in (str(tmp_path / "no_such_model"), str(damaged)):
        for given, target in ((src, out), (src / "a.png", out), (src / "a.png", out / "r.png")):
            assert main(["predict", bad, str(given), "--out", str(target)]) == 2
            err = capsys.readouterr().err
            assert "img2img: error:" in err and "Traceback" not in err
            assert not (tmp_path / "new").exists(), (bad, given, target)
    # every input fails: the folders made for the outputs go again
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    assert main(["predict", model, str(broken), "--out", str(out)]) == 1
    assert "1 of 1 inputs failed" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    # a write that fails: the same, also for one output file in a new folder
    real_write = img2img.data.io.write_image
    calls = []

    def no_space(path, *args, **kwargs):
        raise OSError(28, "No space left on device")

    def fail_second(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            no_space(path)
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(img2img.data.io, "write_image", no_space)
    assert main(["predict", model, str(src / "a.png"), "--out", str(out / "sub" / "r.png")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert main(["predict", model, str(src), "--out", str(out)]) == 2
    assert "0 of 2 images were written before it" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    # once something is written, the folder and its manifest stay
    monkeypatch.setattr(img2img.data.io, "write_image", fail_second)
    assert main(["predict", model, str(src), "--out", str(out)]) == 2
    assert "1 of 2 images were written before it" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [".img2img.json", "a.png"]
    # a folder that was there before is never removed, even when nothing is written
    (tmp_path / "mine").mkdir()
    assert main(["predict", str(tmp_path / "no_such_model"), str(src), "--out", str(tmp_path / "mine")]) == 2
    assert main(["predict", model, str(broken), "--out", str(tmp_path / "mine")]) == 1
    capsys.readouterr()
    assert (tmp_path / "mine").is_dir()


# --------------------------------------------------------------------------- colorization


def test_colorization_keeps_the_input_lightness(tmp_path):
    from img2img.data.color import rgb_to_lab_norm

    path = make_model(tmp_path / "col", "unet", ["task=colorization"])
    t = load(path)
    with torch.no_grad():  # stronger colours than a fresh init gives (|ab| up to ~0.2)
        t.net.decoder[0][1].weight.mul_(30)
    assert t.in_channels == 1 and t.out_channels == 2
    x = torch.from_numpy(smooth_image(37, 53)).permute(2, 0, 1) * 0.8 + 0.1
    out = t(x)
    assert out.shape == (3, 37, 53)
    lum_in = (rgb_to_lab_norm(x[None] * 2 - 1)[0] + 1) * 50
    lum_out = (rgb_to_lab_norm(out[None] * 2 - 1)[0] + 1) * 50
    assert (lum_in - lum_out).abs().max() < 0.5  # L in [0, 100]; Lab round trip and gamut
    _, ab = rgb_to_lab_norm(out[None] * 2 - 1)
    assert ab.abs().max() > 0.05  # it did colour something
    with torch.no_grad():  # the ab it recombined is the network's prediction from L
        lum, _ = rgb_to_lab_norm(x[None] * 2 - 1)
        padded, (top, left) = pad_to_multiple(lum, 8)
        expected_ab = t.net(padded)[..., top : top + 37, left : left + 53]
    assert (ab - expected_ab).abs().max() < 0.02
    grey = Image.fromarray((smooth_image(16, 24)[..., 0] * 255).astype(np.uint8))
    colour = t(grey)
    assert colour.mode == "RGB" and colour.size == (24, 16)
    tiled = t(x, tile=16, tile_overlap=8)
    assert float_psnr(tiled.numpy(), out.numpy()) > 25  # a U-Net sees each tile alone
    lum_tiled = (rgb_to_lab_norm(tiled[None] * 2 - 1)[0] + 1) * 50
    assert (lum_in - lum_tiled).abs().max() < 0.5  # tiles blend ab; L is still the input's


def test_a_task_that_reads_its_input_back_refuses_an_upscaling_network():
    """Colorization keeps the input's L at the output: a x2 network cannot serve it."""

    class Up(torch.nn.Module):
        in_channels, out_channels, scale = 1, 2, 2

        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=2).repeat(1, 2, 1, 1)

    with pytest.raises(UserError, match="colorization task reads its input back at the output's size, which a x2"):
        Translator(load_config(None, ["task=colorization"]), {"G": Up()})
