"""``img2img data check CONFIG``: counts per folder, every bad file with its reason."""

from __future__ import annotations

import numpy as np
from PIL import Image

from img2img.cli import main


def _data(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        (tmp_path / "d" / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)).save(
                tmp_path / "d" / split / f"{i}.jpg")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"task: pix2pix\ndata:\n  root: {tmp_path / 'd'}\n")
    return cfg


def test_clean_data_exit_0(tmp_path, capsys):
    cfg = _data(tmp_path)
    assert main(["data", "check", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert f"3 images in {tmp_path / 'd' / 'train'}" in out
    assert f"2 images in {tmp_path / 'd' / 'val'}" in out
    assert "all files are readable" in out


def test_bad_files_listed_exit_2(tmp_path, capsys):
    cfg = _data(tmp_path)
    (tmp_path / "d" / "train" / "empty.png").write_bytes(b"")
    good = (tmp_path / "d" / "val" / "0.jpg").read_bytes()
    # cut inside the entropy-coded data: only a full decode notices
    (tmp_path / "d" / "val" / "cut.jpg").write_bytes(good[: len(good) - 200])
    assert main(["data", "check", str(cfg), "data.on_error=skip"]) == 2
    captured = capsys.readouterr()
    assert f"BAD {tmp_path / 'd' / 'train' / 'empty.png'}: empty file" in captured.out
    assert f"BAD {tmp_path / 'd' / 'val' / 'cut.jpg'}: truncated" in captured.out
    assert "2 problem(s)" in captured.err


def test_missing_root_exit_2(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"task: colorization\ndata:\n  root: {tmp_path / 'nope'}\n")
    assert main(["data", "check", str(cfg)]) == 2
    assert "folder not found" in capsys.readouterr().err


def test_settings_training_would_refuse_are_reported(tmp_path, capsys):
    cfg = _data(tmp_path)
    assert main(["data", "check", str(cfg), "task=srgan", "model.generator.name=srresnet", "data.scale=4",
                 "data.gt_size=130"]) == 2
    assert "data.gt_size: 130 is not a multiple of data.scale (4)" in capsys.readouterr().err


def test_corrupt_png_found_by_the_check(tmp_path, capsys):
    cfg = _data(tmp_path)
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 32, 3), dtype=np.uint8)).save(
        tmp_path / "d" / "train" / "x.png")
    data = bytearray((tmp_path / "d" / "train" / "x.png").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "d" / "train" / "x.png").write_bytes(bytes(data))
    assert main(["data", "check", str(cfg)]) == 2
    assert f"BAD {tmp_path / 'd' / 'train' / 'x.png'}: corrupt PNG" in capsys.readouterr().out
