"""Data loading throughput: samples per second of one DataLoader worker, per dataset kind.

    python tools/bench.py data [--quick] [--sizes 256] [--steps N]

For each kind (paired aligned, unpaired, SR x4 with on-the-fly LR, colorization) the
dataset is built from JPEGs made here in a temporary folder (photos from scikit-image,
about 512x512, or 1024x512 for aligned A|B), then ``dataset[(i, seed)]`` is timed in a
single process with torch limited to one thread, as in a DataLoader worker. ``--sizes``
sets the crop (pix2pix-style kinds load at crop * 286/256, then crop; SR uses it as
gt_size). A row for plain JPEG decoding gives the floor that decoding alone sets.

Wall-clock and CPU-time rates are both reported: on a shared machine the CPU time of this
process (``samples_per_cpu_s``) is the better estimate of what one worker does on a core
of its own.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def _photos(count: int, size: int = 512) -> list[np.ndarray]:
    import skimage.data

    from img2img.data.matlab_imresize import imresize

    sources = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"):
        image = getattr(skimage.data, name)()[..., :3].astype(np.float64) / 255.0
        short = min(image.shape[:2])
        if short < size:
            image = imresize(image, size / short)
        sources.append(image)
    rng = np.random.default_rng(0)
    photos = []
    for i in range(count):
        image = sources[i % len(sources)]
        top = int(rng.integers(0, image.shape[0] - size + 1))
        left = int(rng.integers(0, image.shape[1] - size + 1))
        crop = image[top : top + size, left : left + size]
        if i // len(sources) % 2:
            crop = crop[:, ::-1]
        photos.append(np.rint(crop * 255).astype(np.uint8))
    return photos


def _make_data(root: Path, count: int) -> None:
    from PIL import Image

    photos = _photos(count)
    for i, photo in enumerate(photos):
        paired = np.concatenate([255 - photo, photo], axis=1)  # 1024x512 A|B
        for folder, image in (("paired/train", paired), ("photos/train", photo),
                              ("unpaired/trainA", photo), ("unpaired/trainB", photo[::-1])):
            path = root / folder / f"{i:03d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, quality=90)


def _time(fn, samples: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for ``samples`` calls of fn(i)."""
    for i in range(min(3, samples)):  # warm-up: caches, lazy imports
        fn(10_000 + i)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(samples):
        fn(i)
    return time.perf_counter() - wall, time.process_time() - cpu


def _row(kind: str, crop, samples: int, wall: float, cpu: float) -> dict:
    return {
        "kind": kind,
        "crop": crop,
        "samples": samples,
        "ms_per_sample": 1000 * wall / samples,
        "samples_per_s": samples / wall,
        "cpu_ms_per_sample": 1000 * cpu / samples,
        "samples_per_cpu_s": samples / cpu if cpu > 0 else None,
    }


def run(opts) -> list[dict]:
    import torch

    from img2img.config import load_config
    from img2img.data import load_image
    from img2img.tasks import build_task

    quick = getattr(opts, "quick", False)
    images = 8 if quick else 20
    samples = getattr(opts, "steps", None) or (40 if quick else 200)
    sizes = getattr(opts, "sizes", None) or [256]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="img2img-bench-data-") as tmp:
            root = Path(tmp)
            _make_data(root, images)
            files = sorted((root / "photos" / "train").glob("*.jpg"))
            wall, cpu = _time(lambda i: load_image(files[i % len(files)]), samples)
            rows.append(_row("decode only (512x512 JPEG)", None, samples, wall, cpu))
            for crop in sizes:
                load = int(round(crop * 286 / 256))
                common = [f"data.load_size={load}", f"data.crop_size={crop}"]
                kinds = [
                    ("paired aligned (1024x512 JPEG)", ["task=pix2pix", f"data.root={root / 'paired'}"]),
                    ("unpaired (2 x 512 JPEG)", ["task=cyclegan", f"data.root={root / 'unpaired'}"]),
                    ("SR x4, LR on the fly", ["task=srgan", "model.generator.name=srresnet",
                                              f"data.root={root / 'photos'}", "data.scale=4",
                                              f"data.gt_size={crop}", "data.rot90=true"]),
                    ("colorization", ["task=colorization", f"data.root={root / 'photos'}"]),
                ]
                for label, overrides in kinds:
                    cfg = load_config(None, overrides + common)
                    dataset = build_task(cfg).build_dataset("train")
                    n = len(dataset)
                    wall, cpu = _time(lambda i, d=dataset, n=n: d[(i % n, i)], samples)
                    rows.append(_row(label, crop, samples, wall, cpu))
    finally:
        torch.set_num_threads(threads)
    return rows
