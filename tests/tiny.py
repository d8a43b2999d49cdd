"""Tiny data sets and configs for engine tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth colour image (uint8 HxWx3): a few random gradients and blobs."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        a, b, phase = rng.uniform(-0.2, 0.2, 3)
        img[..., c] = 0.5 + 0.3 * np.sin(a * yy + b * xx + phase * 10)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        img[..., c] += 0.2 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.1 * h * w))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def save_undecodable_jpeg(path: Path, seed: int = 0, size: int = 40) -> Path:
    """A JPEG whose compressed data is wrecked but which still ends with its end marker:
    it passes the fast pre-training check and fails only when decoded."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    for i in range(300, len(data) - 10, 40):
        data[i] = 0xFF if data[i] != 0xFF else 0
    path.write_bytes(bytes(data))
    return path


def make_task_data(root: Path, task: str, n_train: int = 6, n_val: int = 2, size: int = 40) -> Path:
    """A tiny data set in the layout the task reads."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            img = smooth_image(rng, size, size)
            if task == "pix2pix":
                a = 255 - img  # B is a fixed function of A
                save_png(root / split / f"{i:03d}.png", np.concatenate([a, img], axis=1))
            elif task == "cyclegan":
                save_png(root / f"{split}A" / f"{i:03d}.png", img)
                save_png(root / f"{split}B" / f"{i:03d}.png", img[..., ::-1].copy())
            else:
                save_png(root / split / f"{i:03d}.png", img)
    return root


TINY = {
    "common": [
        "train.batch_size=2", "train.max_steps=3", "train.save_every=100", "data.num_workers=0",
        "log.every=1", "log.images_every=0", "log.progress=false", "device=cpu", "seed=1",
        "model.generator.ngf=8", "model.discriminator.ndf=8", "model.discriminator.n_layers=2",
    ],
    "pix2pix": ["task=pix2pix", "model.generator.name=unet", "model.generator.num_downs=3",
                "data.preprocess=resize_and_crop", "data.load_size=36", "data.crop_size=32"],
    "colorization": ["task=colorization", "model.generator.name=unet", "model.generator.num_downs=3",
                     "data.preprocess=resize_and_crop", "data.load_size=36", "data.crop_size=32"],
    "cyclegan": ["task=cyclegan", "model.generator.name=resnet", "model.generator.n_blocks=1",
                 "model.generator.norm=instance", "model.discriminator.norm=instance",
                 "loss.gan_mode=lsgan", "loss.pool_size=3", "eval.metric=fid",
                 "data.preprocess=resize_and_crop", "data.load_size=36", "data.crop_size=32"],
    "srgan": ["task=srgan", "model.generator.name=srresnet", "model.generator.n_blocks=1",
              "data.scale=2", "data.gt_size=32", "loss.pixel_weight=1", "loss.gan_weight=0.01",
              "eval.metric=psnr_y"],
}


def tiny_overrides(task: str, data_root: Path, output_dir: Path, *extra: str) -> list[str]:
    return [*TINY["common"], *TINY[task], f"data.root={data_root}", f"output_dir={output_dir}", *extra]




def build_dataset(config, split: str):
    """The dataset a config's task builds for ``split`` (what training uses)."""
    from img2img.tasks import build_task

    return build_task(config).build_dataset(split)


def train_command(config_path: Path, *extra: str) -> list[str]:
    """``img2img train CONFIG ...`` in a fresh interpreter."""
    import sys

    return [sys.executable, "-m", "img2img", "train", str(config_path), *extra]


def kill_resume_and_compare(tmp_path: Path, make_config, kill_at: int, files: list[str]) -> Path:
    """SIGKILL a run once its checkpoint ``kill_at`` exists, resume it (``--resume auto``),
    train the same config uninterrupted, and assert that ``files`` (paths inside the run)
    are bit-identical. ``make_config(output_dir)`` gives the Config of either run. Returns
    the killed-and-resumed run's folder."""
    import signal
    import subprocess
    import time

    import torch
    from safetensors.torch import load_file

    from img2img.config import save_config

    runs = {name: tmp_path / name for name in ("ref", "killed")}
    for name, run in runs.items():
        save_config(make_config(run), tmp_path / f"{name}.yaml")
    killed = runs["killed"]
    proc = subprocess.Popen(train_command(tmp_path / "killed.yaml"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (killed / "checkpoints" / f"step-{kill_at:06d}").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "model").exists(), "the run finished before it was killed"
    for cmd in (train_command(tmp_path / "killed.yaml", "--resume", "auto"), train_command(tmp_path / "ref.yaml")):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    for name in files:
        a, b = load_file(str(runs["ref"] / name)), load_file(str(killed / name))
        assert a.keys() == b.keys(), name
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs after resume"
    return killed


def made_up_fid_weights(path: Path) -> Path:
    """A made-up FID weights file at ``path``: the FID Inception-v3 with He-initialised
    convolutions (random, but its features keep images apart; see test_fid.py)."""
    import math

    import torch
    from safetensors.torch import save_file

    from img2img.metrics.fid import FIDInceptionV3

    torch.manual_seed(0)
    inception = FIDInceptionV3()
    for module in inception.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, 0, math.sqrt(2 / module.weight[0].numel()))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(inception.state_dict(), str(path))
    return path
