"""The bundled sample data, built through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from img2img.data import read_image, scan_images
from img2img.data.sample import build_sample_data

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "data"
    result = subprocess.run(
        [sys.executable, "-m", "img2img", "data", "sample", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "sample data written" in result.stdout
    return out


def test_layout_counts_and_sizes(sample_dir):
    manifest = json.loads((sample_dir / "manifest.json").read_text())
    expected_folders = {
        "photos/train", "photos/val", "sr/train", "sr/val", "paired/train",
        "paired/val", "unpaired/trainA", "unpaired/trainB", "unpaired/valA", "unpaired/valB",
        *(f"multidomain/{split}/{d}" for split in ("train", "val") for d in ("photo", "hue", "sepia", "poster")),
    }
    assert set(manifest["folders"]) == expected_folders
    for folder, info in manifest["folders"].items():
        files = scan_images(sample_dir / folder)
        assert len(files) == info["count"] >= 5
        for path in files[:3]:
            image, meta = read_image(path, return_info=True)
            assert meta.size == tuple(info["size_wh"]) and meta.channels == 3
    for path in scan_images(sample_dir / "sr" / "val"):
        width, height = read_image(path, return_info=True)[1].size
        assert width % 4 == 0 and height % 4 == 0
    assert (sample_dir / ".complete").is_file()
    licenses = (sample_dir / "LICENSES.md").read_text()
    for photo in manifest["photos"]:
        assert f"skimage.data.{photo}" in licenses
    assert "Public domain" in licenses and "CC0" in licenses
    assert len(manifest["photos"]) >= 4


def test_paired_is_edges_beside_photo_and_unpaired_b_is_posterised(sample_dir):
    pair = read_image(scan_images(sample_dir / "paired" / "train")[0])
    edges, photo = pair[:, :96], pair[:, 96:]
    assert set(np.unique(edges)) <= {0.0, 1.0} and 0 < (edges == 0).mean() < 0.5
    assert len(np.unique(photo)) > 20
    styled = read_image(scan_images(sample_dir / "unpaired" / "trainB")[0])
    levels = np.rint(styled * 255).astype(int)
    assert set(np.unique(levels)) <= {0, 85, 170, 255}


def test_multidomain_domains_are_renderings_of_their_own_crops(sample_dir):
    manifest = json.loads((sample_dir / "manifest.json").read_text())
    boxes = {}
    for rel, crop in manifest["crops"].items():
        if rel.startswith("multidomain/"):
            _, split, domain, _ = rel.split("/")
            boxes.setdefault((split, domain), set()).add((crop["photo"], tuple(crop["box"])))
    for split in ("train", "val"):  # no crop is shown in two domains: the domains are not paired
        for a in ("photo", "hue", "sepia", "poster"):
            for b in ("photo", "hue", "sepia", "poster"):
                assert a == b or not boxes[split, a] & boxes[split, b], (split, a, b)
    sepia = read_image(scan_images(sample_dir / "multidomain" / "train" / "sepia")[0])
    assert (sepia[..., 0] >= sepia[..., 1] - 1e-6).all() and (sepia[..., 1] >= sepia[..., 2] - 1e-6).all()
    poster = np.rint(read_image(scan_images(sample_dir / "multidomain" / "val" / "poster")[0]) * 255)
    assert set(np.unique(poster)) <= {0, 85, 170, 255}
    assert manifest["format"] == 3 and manifest["folders"]["multidomain/val/hue"]["size_wh"] == [64, 64]


def test_train_and_val_never_share_pixels(sample_dir):
    manifest = json.loads((sample_dir / "manifest.json").read_text())
    strip, gap = manifest["val_strip_columns"], manifest["gap"]
    for rel, crop in manifest["crops"].items():
        _, left, _, w = crop["box"]
        width = manifest["photo_size"][crop["photo"]][1]
        if "/val" in rel:
            assert left >= width - strip
        else:
            assert left + w <= width - strip - gap

    # Independently of the manifest: no textured 6x6 patch of a val image occurs in any
    # training image.
    def patches(path: Path, step: int) -> set[bytes]:
        grey = np.rint(read_image(path).mean(axis=2) * 255).astype(np.uint8)
        windows = sliding_window_view(grey, (6, 6))[::step, ::step].reshape(-1, 36)
        keep = windows.std(axis=1) > 12
        return {w.tobytes() for w in windows[keep]}

    train = set()
    for path in scan_images(sample_dir / "photos" / "train"):
        train |= patches(path, 1)
    for path in scan_images(sample_dir / "photos" / "val"):
        assert not (patches(path, 3) & train), path


def test_rerun_does_nothing_and_says_so(sample_dir):
    before = {p: p.stat().st_mtime_ns for p in sample_dir.rglob("*") if p.is_file()}
    result = subprocess.run(
        [sys.executable, "-m", "img2img", "data", "sample", "--out", str(sample_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and "already complete" in result.stdout
    assert before == {p: p.stat().st_mtime_ns for p in sample_dir.rglob("*") if p.is_file()}


def test_deterministic_and_incomplete_folders_are_rebuilt(sample_dir, tmp_path):
    again = build_sample_data(tmp_path / "again")
    files = sorted(p.relative_to(sample_dir) for p in sample_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (sample_dir / rel).read_bytes() == (again / rel).read_bytes(), rel

    # A half-built folder (no .complete) is rebuilt; other files in it are left alone.
    (again / ".complete").unlink()
    victim = scan_images(again / "sr" / "train")[0]
    victim.unlink()
    (again / "mine.txt").write_text("keep me")
    build_sample_data(again)
    assert victim.is_file() and (again / ".complete").is_file()
    assert (again / "mine.txt").read_text() == "keep me"
