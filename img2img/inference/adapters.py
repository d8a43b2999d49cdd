"""Inputs and outputs of the Translator: what the caller gives becomes :class:`Source` s,
what it gets back is written into preallocated :class:`Sink` s of the same kind.

- PIL images -> 8-bit RGB PIL images (PIL has no 16-bit RGB mode); the EXIF orientation is
  applied, as ``img2img predict`` does with files; 16-bit greyscale modes are read as
  16-bit; alpha is composited on white.
- numpy HxW or HxWxC (C = 1, 3, 4) uint8, uint16 or float in [0, 1] -> HxWx3 of the same
  dtype; an NxHxWxC array gives one.
- tensors 3xHxW or Nx3xHxW, float in [0, 1] or uint8 -> the same dtype on the same device.
- a list or tuple of these -> a list.

A source keeps the image as given (no full-size float copy) and hands out float32 crops
in [0, 1] on the compute device; grey images are repeated to three channels there. Float
images outside [0, 1] (a 0-255 or [-1, 1] image) are refused with the range found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from img2img.data.modes import PIL_DEEP_INT_MODES

#: Float inputs may stray this far outside [0, 1] (resampling overshoot, rounding) before
#: they are taken for another convention.
RANGE_SLACK = 0.01

_PEAKS = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_TORCH_PEAKS = {torch.uint8: 255.0}

#: Sources for the inputs, sinks for the outputs, and ``pack()`` for the result.
Prepared = tuple[list["Source"], list["Sink"], Callable[[], Any]]


class Source:
    """One input image kept as given (no full-size float copy); crops come out as float32
    3xhxw tensors in [0, 1] on the compute device."""

    def __init__(self, data: np.ndarray | torch.Tensor, peak: float) -> None:
        self.data = data
        self.peak = peak
        if isinstance(data, np.ndarray):  # H x W x C
            self.height, self.width = data.shape[:2]
        else:  # C x H x W
            self.height, self.width = data.shape[-2:]
        if self.height == 0 or self.width == 0:
            raise ValueError(f"an empty image ({self.height}x{self.width} pixels): nothing to translate")
        if peak == 1:
            _check_unit_range(data)

    def crop(self, y0: int, y1: int, x0: int, x1: int, device: torch.device) -> torch.Tensor:
        if isinstance(self.data, np.ndarray):
            part = np.ascontiguousarray(self.data[y0:y1, x0:x1], dtype=np.float32)
            t = torch.from_numpy(part).to(device).permute(2, 0, 1)
        else:
            t = self.data[:, y0:y1, x0:x1].to(device=device, dtype=torch.float32)
        if self.peak != 1:
            t = t / self.peak
        t = t.clamp(0, 1)
        return t.expand(3, -1, -1) if t.shape[0] == 1 else t

    def crop_indexed(self, rows: torch.Tensor, cols: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The pixels at ``rows`` x ``cols`` (1-D index tensors, e.g. a reflection pad's:
        see :func:`img2img.nets.contract.pad_index`), as :meth:`crop` gives them."""
        r0, c0 = int(rows.min()), int(cols.min())
        block = self.crop(r0, int(rows.max()) + 1, c0, int(cols.max()) + 1, device)
        return block.index_select(1, (rows - r0).to(device)).index_select(2, (cols - c0).to(device))


class Sink:
    """Preallocated output that receives finished rows (3 x rows x W, [0, 1] floats)."""

    def __init__(self, data: np.ndarray | torch.Tensor, peak: float) -> None:
        self.data = data
        self.peak = peak

    def write(self, y0: int, y1: int, rgb01: torch.Tensor) -> None:
        if isinstance(self.data, np.ndarray):
            x = rgb01.permute(1, 2, 0).float().cpu().numpy()
            if self.peak != 1:
                x = np.rint(x * self.peak)
            self.data[y0:y1] = x
        else:
            x = rgb01.to(self.data.device)
            if self.peak != 1:
                x = (x * self.peak).round_()
            self.data[:, y0:y1] = x


def _check_unit_range(data: np.ndarray | torch.Tensor) -> None:
    """Float images are [0, 1]; a 0-255 or [-1, 1] image would be silently clamped into
    garbage, so it is refused with the range found."""
    if isinstance(data, np.ndarray):
        low, high = float(np.min(data)), float(np.max(data))
    else:
        low, high = float(data.min()), float(data.max())
    if not (low >= -RANGE_SLACK and high <= 1 + RANGE_SLACK):  # also catches NaN
        hint = " (0-255 values: divide by 255)" if high > 2 else " ([-1, 1] values: use (x + 1) / 2)" if low < 0 else ""
        raise ValueError(f"float images must be in [0, 1]; this one holds values from {low:g} to {high:g}{hint}")


def _numpy_peak(dtype: np.dtype) -> float:
    if dtype in _PEAKS:
        return _PEAKS[dtype]
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise TypeError(
        f"numpy images must be uint8, uint16 or float in [0, 1], got dtype {dtype}"
    )


def _composite_white(rgb: np.ndarray | torch.Tensor, alpha, peak: float):
    return rgb * (alpha / peak) + peak * (1 - alpha / peak)


def _numpy_image(arr: np.ndarray) -> np.ndarray:
    """An HxW or HxWxC (C = 1, 3, 4) array as HxWx1 or HxWx3 (alpha over white)."""
    if arr.ndim == 2:
        return arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise TypeError(
            f"numpy images must be HxW or HxWxC with C = 1, 3 or 4, got shape {arr.shape}"
        )
    if arr.shape[2] == 4:
        peak = _numpy_peak(arr.dtype)
        mixed = _composite_white(arr[..., :3].astype(np.float32), arr[..., 3:4], peak)
        return np.rint(mixed).astype(arr.dtype) if peak != 1 else mixed.astype(arr.dtype)
    return arr


def _tensor_image(t: torch.Tensor) -> torch.Tensor:
    """A HxW or CxHxW tensor (C = 1, 3, 4) as 1xHxW or 3xHxW (alpha over white)."""
    if t.ndim == 2:
        return t[None]
    if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
        raise TypeError(f"tensor images must be 3xHxW (or Nx3xHxW), got shape {tuple(t.shape)}")
    if t.shape[0] == 4:
        peak = _TORCH_PEAKS.get(t.dtype, 1.0)
        mixed = _composite_white(t[:3].float(), t[3:4].float(), peak)
        return mixed.round().to(t.dtype) if peak != 1 else mixed.to(t.dtype)
    return t


def _pil_array(img: Any) -> np.ndarray:
    from PIL import Image

    if img.mode in PIL_DEEP_INT_MODES:
        return np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    return np.asarray(img)


def _is_pil(obj: Any) -> bool:
    module = type(obj).__module__
    if not module.startswith("PIL."):
        return False
    from PIL import Image

    return isinstance(obj, Image.Image)


def _to_pil(arr: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(arr)


def _prepare_pil(img: Any, scale: int) -> Prepared:
    # PIL in -> 8-bit RGB PIL out (PIL has no 16-bit RGB mode). The EXIF orientation is
    # applied, as img2img predict does with files.
    from PIL import ImageOps

    if img.getexif().get(0x0112, 1) not in (1, None):
        img = ImageOps.exif_transpose(img)
    arr = _numpy_image(_pil_array(img))
    out = np.empty((arr.shape[0] * scale, arr.shape[1] * scale, 3), np.uint8)
    source = Source(arr, _numpy_peak(arr.dtype))
    return [source], [Sink(out, 255.0)], lambda: _to_pil(out)


def _prepare_numpy(images: np.ndarray, scale: int) -> Prepared:
    if images.ndim == 4:
        peak = _numpy_peak(images.dtype)
        n, h, w = images.shape[:3]
        out = np.empty((n, h * scale, w * scale, 3), images.dtype)
        sources = [Source(_numpy_image(a), peak) for a in images]
        return sources, [Sink(o, peak) for o in out], lambda: out
    arr = _numpy_image(images)
    peak = _numpy_peak(arr.dtype)
    out = np.empty((arr.shape[0] * scale, arr.shape[1] * scale, 3), arr.dtype)
    return [Source(arr, peak)], [Sink(out, peak)], lambda: out


def _prepare_tensor(images: torch.Tensor, scale: int) -> Prepared:
    if not (images.is_floating_point() or images.dtype == torch.uint8):
        raise TypeError(f"tensor images must be float in [0, 1] or uint8, got {images.dtype}")
    peak = _TORCH_PEAKS.get(images.dtype, 1.0)
    if images.ndim == 4:
        n, _, h, w = images.shape
        out = torch.empty(n, 3, h * scale, w * scale, dtype=images.dtype, device=images.device)
        sources = [Source(_tensor_image(t), peak) for t in images]
        return sources, [Sink(o, peak) for o in out], lambda: out
    t = _tensor_image(images)
    h, w = t.shape[-2:]
    out = torch.empty(3, h * scale, w * scale, dtype=images.dtype, device=images.device)
    return [Source(t, peak)], [Sink(out, peak)], lambda: out


def prepare_io(images: Any, scale: int) -> Prepared:
    """Sources for the inputs, preallocated sinks for the outputs (``scale`` times their
    size), and ``pack()`` that returns the outputs in the kind of the input."""
    if isinstance(images, (list, tuple)):
        if not images:
            return [], [], list
        parts = [prepare_io(item, scale) for item in images]
        return (
            [s for p in parts for s in p[0]],
            [s for p in parts for s in p[1]],
            lambda: [p[2]() for p in parts],
        )
    if _is_pil(images):
        return _prepare_pil(images, scale)
    if isinstance(images, np.ndarray):
        return _prepare_numpy(images, scale)
    if isinstance(images, torch.Tensor):
        return _prepare_tensor(images, scale)
    raise TypeError(
        "images must be PIL images, numpy arrays (HxWx3 uint8/uint16/float), tensors "
        f"(3xHxW or Nx3xHxW in [0, 1]) or a list of them, got {type(images).__name__}"
    )
