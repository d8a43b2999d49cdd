"""Super-resolution data: HR images, LR made on the fly (MATLAB-compatible bicubic) or
read from matching files, and the helpers of that path (mod-crop, quantisation like the
source, :func:`make_lr`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from img2img.data.datasets import ImageDataset, child_seeds, same_dtype
from img2img.data.io import to_float01
from img2img.data.matlab_imresize import imresize
from img2img.data.transforms import build_sr_augment, random_crop_box, run_seeded, to_tensor
from img2img.errors import ConfigError, DataError


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    """Cut the bottom/right rows and columns so both sides are multiples of ``scale``."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


def quantize_like(lr: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Clip to [0, 1]; an 8-bit source's LR is rounded to 8 bits, as a saved LR file would
    be. Deeper sources (16-bit, float: the reader gives them as float32) keep a float LR."""
    lr = np.clip(lr, 0.0, 1.0)
    if like.dtype == np.uint8:
        return np.rint(lr * 255.0).astype(np.uint8)
    return lr.astype(np.float32)


def _unit_chw(image: np.ndarray) -> torch.Tensor:
    """HxWxC uint8/float array (any strides) -> CxHxW float32 tensor in [0, 1]."""
    if image.dtype != np.uint8:
        return torch.from_numpy(np.ascontiguousarray(to_float01(image))).permute(2, 0, 1)
    image = np.ascontiguousarray(image)
    if not image.flags.writeable:  # e.g. np.asarray of a PIL image; torch wants writable memory
        image = image.copy()
    chw = torch.from_numpy(image).permute(2, 0, 1)
    return chw.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)


def make_lr(hr: np.ndarray, scale: int, quantize: bool = True) -> np.ndarray:
    """MATLAB-bicubic downscale of a (mod-cropped) HR image, quantised like the source."""
    lr = imresize(_unit_chw(hr), 1.0 / scale).permute(1, 2, 0).numpy()
    return quantize_like(lr, hr) if quantize else np.ascontiguousarray(lr)


def check_gt_size(gt_size: int, scale: int) -> None:
    """A ConfigError unless the HR crop ``data.gt_size`` is a multiple of ``data.scale``."""
    if gt_size % scale:
        raise ConfigError(
            f"data.gt_size: {gt_size} is not a multiple of data.scale ({scale}); use e.g. "
            f"{gt_size - gt_size % scale} or {gt_size - gt_size % scale + scale}"
        )


def load_hr_and_lr(load: Callable[[Path], np.ndarray], hr_path: Path, lr_path: Path | None,
                   scale: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The HR image mod-cropped to a multiple of ``scale`` and its LR file (None without
    one), read with ``load``; a DataError naming the files when the sizes do not match."""
    hr = mod_crop(load(hr_path), scale)
    if hr.shape[0] < scale or hr.shape[1] < scale:
        raise DataError(f"{hr_path}: smaller than the scale x{scale}")
    if lr_path is None:
        return hr, None
    lr = load(lr_path)
    expected = (hr.shape[0] // scale, hr.shape[1] // scale)
    if lr.shape[:2] != expected:
        raise DataError(
            f"LR/HR size mismatch: {lr_path} is {lr.shape[1]}x{lr.shape[0]} but {hr_path} "
            f"(mod-cropped to {hr.shape[1]}x{hr.shape[0]}) needs {expected[1]}x{expected[0]} "
            f"at x{scale}"
        )
    return hr, lr


class SRDataset(ImageDataset):
    """Super-resolution data: HR images; LR made by MATLAB-bicubic downscaling on the fly,
    or read from matching files.

    HR is mod-cropped to a multiple of ``scale``. Train: a random ``gt_size`` HR patch on
    the LR grid and the matching LR patch, then flips/rotations (``flip``, ``rot90``) on
    both. Val: the whole mod-cropped HR and its LR.

    On-the-fly LR of a patch: the HR patch plus a margin of ``2 * scale`` pixels on each
    side (clipped at the image border) is downscaled and the margin cut away, so the LR
    patch equals the same window of the LR of the whole image (the bicubic kernel reaches
    1.5 * scale + 0.5 HR pixels beyond a patch): no border effect. With ``quantize`` (the
    default) LR is rounded to the bit depth of the HR file (1/255 for 8-bit), exactly as
    an LR file saved by MATLAB/BasicSR would hold it.
    """

    def __init__(
        self,
        items: Sequence[tuple[Path, Path | None]],
        *,
        scale: int = 4,
        gt_size: int = 128,
        flip: bool = True,
        rot90: bool = False,
        train: bool = True,
        quantize: bool = True,
        max_pixels: int | None = None,
        alpha: str = "white",
    ) -> None:
        super().__init__(max_pixels=max_pixels, alpha=alpha)
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        if train:
            check_gt_size(gt_size, scale)
        self.items = [(Path(hr), None if lr is None else Path(lr)) for hr, lr in items]
        self.scale = scale
        self.gt_size = gt_size
        self.train = train
        self.quantize = quantize
        self.augment = build_sr_augment(flip, rot90) if train else None

    def __len__(self) -> int:
        return len(self.items)

    def _lr_patch(self, hr: np.ndarray, top: int, left: int, lq: int) -> np.ndarray:
        s = self.scale
        margin = 2  # LR pixels of context on each side
        t0, l0 = max(0, top - margin), max(0, left - margin)
        t1 = min(hr.shape[0] // s, top + lq + margin)
        l1 = min(hr.shape[1] // s, left + lq + margin)
        region = hr[t0 * s : t1 * s, l0 * s : l1 * s]
        # torch, not numpy, does the products: in a DataLoader worker torch is limited to
        # one thread, while numpy's BLAS would start threads of its own on every core.
        lr = imresize(_unit_chw(region), 1.0 / s).permute(1, 2, 0).numpy()
        lr = lr[top - t0 : top - t0 + lq, left - l0 : left - l0 + lq]
        return quantize_like(lr, hr) if self.quantize else np.ascontiguousarray(lr)

    def sample(self, index: int, seed: int) -> dict[str, Any]:
        hr_path, lr_path = self.items[index]
        s = self.scale
        hr, lr_full = load_hr_and_lr(self._load, hr_path, lr_path, s)
        if not self.train:
            lr = lr_full if lr_full is not None else make_lr(hr, s, self.quantize)
            return {"A": to_tensor(lr), "B": to_tensor(hr),
                    "A_path": str(lr_path or hr_path), "B_path": str(hr_path)}
        lq = self.gt_size // s
        h_lr, w_lr = hr.shape[0] // s, hr.shape[1] // s
        if h_lr < lq or w_lr < lq:
            raise DataError(
                f"{hr_path}: {hr.shape[1]}x{hr.shape[0]} is smaller than data.gt_size={self.gt_size}"
            )
        crop_seed, aug_seed = child_seeds(seed, 2)
        top, left = random_crop_box(np.random.default_rng(crop_seed), h_lr, w_lr, lq)
        hr_patch = hr[top * s : (top + lq) * s, left * s : (left + lq) * s]
        if lr_full is not None:
            lr_patch = lr_full[top : top + lq, left : left + lq]
        else:
            lr_patch = self._lr_patch(hr, top, left, lq)
        hr_patch, lr_patch = same_dtype(hr_patch, lr_patch)
        out = run_seeded(self.augment, aug_seed, hr_patch, lr=lr_patch)
        return {"A": to_tensor(out["lr"]), "B": to_tensor(out["image"]),
                "A_path": str(lr_path or hr_path), "B_path": str(hr_path)}
