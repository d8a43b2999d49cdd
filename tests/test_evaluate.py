"""`img2img eval`: model and baseline numbers, per-image rows, JSON, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from img2img.config import load_config
from img2img.data import imresize, read_image
from img2img.metrics import psnr, ssim
from img2img.model_io import save_model
from img2img.tasks import build_generators
from tests.tiny import make_task_data, save_png, smooth_image


def run_eval(*args):
    return subprocess.run(
        [sys.executable, "-m", "img2img", "eval", *map(str, args)],
        capture_output=True, text=True, timeout=300,
    )


def make_model(tmp_path, *overrides):
    config = load_config(None, list(overrides))
    torch.manual_seed(0)
    generators = build_generators(config)
    return save_model(tmp_path / "model", config, generators), config, generators


def to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def test_sr_eval_reports_model_and_bicubic_baseline(tmp_path):
    model_dir, config, generators = make_model(
        tmp_path, "task=srgan", "model.generator.name=srresnet", "model.generator.ngf=8",
        "model.generator.n_blocks=1", "data.scale=2",
    )
    hr_dir = tmp_path / "hr"
    rng = np.random.default_rng(1)
    save_png(hr_dir / "a.png", smooth_image(rng, 33, 41))  # odd sizes: mod-cropped to 32x40
    save_png(hr_dir / "b.png", smooth_image(rng, 24, 24))
    out = run_eval(model_dir, "--data", hr_dir, "--json", "--out", tmp_path / "r.json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert json.loads((tmp_path / "r.json").read_text()) == result
    assert result["crop_border"] == 2 and result["images"] == 2
    assert {"psnr", "ssim", "psnr_y", "ssim_y"} <= set(result["model"]) <= set(result["baseline"]) | {"images"}

    # The baseline, computed independently: MATLAB bicubic down then up, crop 2, Y channel.
    psnr_y, ssim_rgb = [], []
    for name in ("a.png", "b.png"):
        hr = read_image(hr_dir / name)
        hr = hr[: hr.shape[0] // 2 * 2, : hr.shape[1] // 2 * 2]
        lr = to_uint8(imresize(hr, scale=0.5)) / 255.0  # LR is quantised like a saved file
        up = imresize(lr, scale=2)
        psnr_y.append(psnr(to_uint8(up), to_uint8(hr), crop_border=2, y_channel=True))
        ssim_rgb.append(ssim(to_uint8(up), to_uint8(hr), crop_border=2))
    assert result["baseline"]["psnr_y"] == pytest.approx(np.mean(psnr_y), abs=1e-6)
    assert result["baseline"]["ssim"] == pytest.approx(np.mean(ssim_rgb), abs=1e-6)
    rows = {row["name"]: row for row in result["per_image"]}
    assert set(rows) == {"a.png", "b.png"}
    assert rows["a.png"]["baseline"]["psnr_y"] == pytest.approx(psnr_y[0], abs=1e-6)

    # The model's number equals the metric on what `img2img.load` predicts.
    import img2img

    translator = img2img.load(model_dir, device="cpu")
    hr = read_image(hr_dir / "b.png")
    lr = to_uint8(imresize(hr, scale=0.5))
    sr = translator(lr)
    assert rows["b.png"]["psnr_y"] == pytest.approx(psnr(sr, to_uint8(hr), crop_border=2, y_channel=True), abs=1e-6)


def test_sr_eval_with_an_lr_folder_checks_sizes(tmp_path):
    model_dir, *_ = make_model(
        tmp_path, "task=srgan", "model.generator.name=srresnet", "model.generator.ngf=8",
        "model.generator.n_blocks=1", "data.scale=2",
    )
    rng = np.random.default_rng(2)
    save_png(tmp_path / "hr" / "x.png", smooth_image(rng, 32, 32))
    save_png(tmp_path / "lr" / "x.png", smooth_image(rng, 16, 16))
    ok = run_eval(model_dir, "--data", tmp_path / "hr", "--lr-dir", tmp_path / "lr", "--json")
    assert ok.returncode == 0, ok.stderr
    save_png(tmp_path / "lr" / "x.png", smooth_image(rng, 15, 16))
    bad = run_eval(model_dir, "--data", tmp_path / "hr", "--lr-dir", tmp_path / "lr")
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert str(tmp_path / "lr" / "x.png") in bad.stderr and str(tmp_path / "hr" / "x.png") in bad.stderr
    assert f"in {tmp_path / 'hr'} and {tmp_path / 'lr'}" in bad.stderr  # both folders named


def test_colorization_eval_table_and_grey_baseline(tmp_path):
    model_dir, *_ = make_model(
        tmp_path, "task=colorization", "model.generator.name=unet", "model.generator.num_downs=3",
        "model.generator.ngf=4",
    )
    data = make_task_data(tmp_path / "data", "colorization", n_train=1, n_val=3, size=24)
    out = run_eval(model_dir, "--data", data / "val", "--per-image")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("000.png") for line in lines)
    model_row = next(line for line in lines if line.startswith("model "))
    base_row = next(line for line in lines if line.startswith("baseline (grey)"))
    assert len(model_row.split()) == 5 and len(base_row.split()) == 6

    # Grey baseline: L kept, ab = 0; its Y PSNR is high but not infinite (gamut, rounding).
    result = json.loads(run_eval(model_dir, "--data", data / "val", "--json").stdout)
    from img2img.data.color import lab_norm_to_rgb, rgb_to_lab_norm

    values = []
    for i in range(3):
        rgb = torch.from_numpy(read_image(data / "val" / f"{i:03d}.png")).permute(2, 0, 1)[None]
        L, ab = rgb_to_lab_norm(rgb * 2 - 1)
        grey = (lab_norm_to_rgb(L, torch.zeros_like(ab)) + 1) / 2
        values.append(float(psnr(grey.clamp(0, 1), rgb)[0]))
    assert result["baseline"]["psnr"] == pytest.approx(np.mean(values), abs=1e-4)


def test_unpaired_eval_needs_fid_weights(tmp_path):
    model_dir, *_ = make_model(
        tmp_path, "task=cyclegan", "model.generator.name=resnet", "model.generator.n_blocks=1",
        "model.generator.ngf=4", "eval.metric=fid",
    )
    data = make_task_data(tmp_path / "data", "cyclegan", n_train=1, n_val=2, size=16)
    out = run_eval(model_dir, "--data", data)
    assert out.returncode == 2
    assert "FID Inception weights" in out.stderr and "--fid-weights" in out.stderr


def test_unpaired_eval_scores_every_image_of_each_domain_once(tmp_path):
    from img2img.metrics import FIDInceptionV3

    model_dir, *_ = make_model(
        tmp_path, "task=cyclegan", "model.generator.name=resnet", "model.generator.n_blocks=1",
        "model.generator.ngf=4", "eval.metric=fid",
    )
    torch.manual_seed(0)
    torch.save(FIDInceptionV3().state_dict(), tmp_path / "fid.pth")
    rng = np.random.default_rng(3)
    for i in range(3):
        save_png(tmp_path / "data" / "A" / f"{i}.png", smooth_image(rng, 16, 16))
    for i in range(2):
        save_png(tmp_path / "data" / "B" / f"{i}.png", smooth_image(rng, 16, 16)[..., ::-1].copy())
    out = run_eval(model_dir, "--data", tmp_path / "data", "--fid-weights", tmp_path / "fid.pth", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["images"] == {"A": 3, "B": 2}
    for which in ("model", "baseline"):
        assert result[which]["fid"] > 0 and "kid" in result[which]


def test_images_too_small_for_ssim_are_named(tmp_path):
    model_dir, *_ = make_model(
        tmp_path, "task=srgan", "model.generator.name=srresnet", "model.generator.ngf=4",
        "model.generator.n_blocks=1", "data.scale=2",
    )
    rng = np.random.default_rng(4)
    save_png(tmp_path / "hr" / "tiny.png", smooth_image(rng, 12, 12))
    save_png(tmp_path / "hr" / "fine.png", smooth_image(rng, 32, 32))
    out = run_eval(model_dir, "--data", tmp_path / "hr")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "tiny.png (12x12)" in out.stderr and "crop_border=2" in out.stderr
    assert "fine.png" not in out.stderr


def test_eval_errors_are_one_line(tmp_path):
    out = run_eval(tmp_path / "nothing", "--data", tmp_path, "--out", tmp_path / "res" / "r.json",
                   "--report", tmp_path / "rep" / "r.html")
    assert out.returncode == 2 and "model not found" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "res").exists() and not (tmp_path / "rep").exists()  # nothing made for a typo
    model_dir, *_ = make_model(tmp_path, "task=pix2pix", "model.generator.name=unet", "model.generator.num_downs=2", "model.generator.ngf=4")
    out = run_eval(model_dir, "--data", tmp_path / "missing")
    assert out.returncode == 2 and "--data: folder not found" in out.stderr


def test_eval_argument_and_data_errors_name_the_problem(tmp_path, capsys):
    from img2img.cli import main

    model_dir, *_ = make_model(tmp_path, "task=pix2pix", "model.generator.name=unet", "model.generator.num_downs=2",
                               "model.generator.ngf=4")
    data = make_task_data(tmp_path / "data", "pix2pix", n_train=1, n_val=2, size=24) / "val"
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    cases = {
        ("--crop-border", "-1"): "--crop-border must be 0 or more, got -1",
        ("--out", str(tmp_path / "folder")): f"--out {tmp_path / 'folder'} is a folder",
        ("--out", str(tmp_path / "file" / "r.json")): "is a file, not a folder",
    }
    for extra, message in cases.items():
        assert main(["eval", str(model_dir), "--data", str(data), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)
    assert list((tmp_path / "folder").iterdir()) == [] and not list(tmp_path.glob("*.tmp"))

    (data / "zero.png").write_bytes(b"")
    assert main(["eval", str(model_dir), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "zero.png" in err and "evaluate again" in err and "train" not in err.split("zero.png")[1]
    (data / "zero.png").unlink()
    assert main(["eval", str(model_dir), "--data", str(data), "--out", str(tmp_path / "r" / "e.json")]) == 0
    assert json.loads((tmp_path / "r" / "e.json").read_text())["images"] == 2
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["e.json"]


def test_unpaired_eval_folder_and_weights_messages(tmp_path, capsys):
    from img2img.cli import main

    model_dir, *_ = make_model(
        tmp_path, "task=cyclegan", "model.generator.name=resnet", "model.generator.n_blocks=1",
        "model.generator.ngf=4", "eval.metric=fid",
    )
    data = make_task_data(tmp_path / "data", "cyclegan", n_train=1, n_val=2, size=16)
    assert main(["eval", str(model_dir), "--data", str(data / "valA")]) == 2
    assert "holds A/ and B/ (or valA/ and valB/, or testA/ and testB/)" in capsys.readouterr().err
    missing = tmp_path / "nope.pth"
    assert main(["eval", str(model_dir), "--data", str(data), "--fid-weights", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"FID weights file {missing} does not exist" in err and "no weights file was given" not in err
