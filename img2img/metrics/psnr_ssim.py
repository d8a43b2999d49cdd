"""PSNR and SSIM as papers report them, and their Y-channel variants (PSNR-Y, SSIM-Y).

The convention (the super-resolution literature's, as in BasicSR's ``calculate_psnr`` and
``calculate_ssim`` and the MATLAB code before it):

1. ``crop_border`` pixels are cut from each edge first.
2. Images are compared at uint8 levels. A float image ``x`` in [0, 1] becomes
   ``(x * 255).round().clamp(0, 255)`` (in ``x``'s dtype; float16/bfloat16 are first
   widened to float32), so a float prediction and its saved uint8 PNG score the same.
3. With ``y_channel=True`` the levels become ITU-R BT.601 studio-range luma,
   ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G, B in [0, 1], i.e. Y in
   [16, 235] on the 0..255 scale (the weights are the project's one copy,
   :data:`img2img.data.color.Y_STUDIO`). Y is not rounded. A one-channel image is its own Y.
4. PSNR: ``10 log10(255^2 / MSE)``, the squared errors summed in float64. Identical images
   give ``inf`` (and a mean over images that include one is ``inf``, as in BasicSR).
5. SSIM: 11x11 Gaussian window with sigma 1.5, valid region only (no padding, so the SSIM
   map is ``(H - 10) x (W - 10)``), ``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2``,
   population (not sample) statistics. The map is averaged per channel, then the channel
   means are averaged: that is the image's SSIM.

Inputs:

- numpy ``uint8`` arrays ``HxWx3`` (RGB), ``HxWx1`` or ``HxW``: one image, a Python float.
  They are computed by the torch float64 path below (same code, CPU).
- torch tensors ``NxCxHxW`` (C = 3, or 1 for grayscale), float in [0, 1] or ``uint8``
  levels, on any device: a float64 tensor of N values on that device. float64 inputs are
  computed in float64; every other dtype is computed in float32 (PSNR's squared errors are
  still summed in float64, so RGB PSNR is exact; SSIM agrees with float64 to about 1e-6).

SSIM's Gaussian filter is separable, and each 1-D pass runs as a matrix product with a
banded (Toeplitz) matrix of the 11 Gaussian taps over blocks of rows or columns. It gives
the same numbers as two 1-D convolutions (to rounding), and on the CPU it is several times
faster than ``conv2d(groups=channels)``, whose depthwise kernels are slow there, and above
all in float64. On the CPU images are scored one at a time, so the four filtered maps
stay in cache.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from img2img.data.color import Y_STUDIO

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2
PEAK = 255.0
Y_OFFSET = 16.0  # BT.601 studio range: Y = 16 + Y_STUDIO . (R, G, B), R, G, B in [0, 1]

_PAD = SSIM_WINDOW // 2
_ROW_BLOCK = 8  # output rows per block in the vertical pass
_COL_BLOCK = 24  # output columns per block in the horizontal pass
_GPU_CHUNK_ELEMENTS = 1 << 26  # elements of the maps to filter per chunk on a GPU


# --------------------------------------------------------------------------- colour


def rgb_to_y(img):
    """BT.601 studio-range luma on the 0..255 scale (16 for black, 235 for white), not rounded.

    - numpy ``HxWx3`` RGB: ``uint8`` (0..255) or float in [0, 1] -> float64 ``HxW``.
    - torch ``Nx3xHxW``: float in [0, 1] (not rounded first) or ``uint8`` -> ``Nx1xHxW``
      in the input's float dtype (float32 for ``uint8``).
    """
    if isinstance(img, np.ndarray):
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"rgb_to_y expects an HxWx3 RGB array, got shape {img.shape}")
        unit = _numpy_to_unit(img)
        tensor = torch.from_numpy(unit).permute(2, 0, 1).unsqueeze(0)
        return _y_from_unit(tensor)[0, 0].numpy()
    if isinstance(img, Tensor):
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"rgb_to_y expects an Nx3xHxW tensor, got shape {tuple(img.shape)}")
        if img.dtype == torch.uint8:
            return _y_from_unit(img.float() / PEAK)
        if not img.is_floating_point():
            raise TypeError(f"rgb_to_y expects a float or uint8 tensor, got {img.dtype}")
        return _y_from_unit(img)
    raise TypeError(f"rgb_to_y expects a numpy array or a torch tensor, got {type(img).__name__}")


def _numpy_to_unit(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float64) / PEAK
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float64, copy=False)
    raise TypeError(f"expected a uint8 or float array, got dtype {img.dtype}")


def _y_from_unit(rgb: Tensor) -> Tensor:
    """``Nx3xHxW`` in [0, 1] -> ``Nx1xHxW`` Y on the 0..255 scale."""
    r, g, b = rgb.unbind(1)
    y = r * Y_STUDIO[0] + g * Y_STUDIO[1] + b * Y_STUDIO[2] + Y_OFFSET
    return y.unsqueeze(1)


def _y_from_levels(levels: Tensor) -> Tensor:
    """Levels 0..255 ``NxCxHxW`` -> Y; a one-channel image is returned as it is."""
    if levels.shape[1] == 1:
        return levels
    return _y_from_unit(levels / PEAK)


# --------------------------------------------------------------------------- inputs


def _numpy_image_to_nchw(img: np.ndarray, name: str) -> Tensor:
    if img.dtype != np.uint8:
        raise TypeError(
            f"{name}: numpy images must be uint8 (0..255), got dtype {img.dtype}; for float "
            "images in [0, 1] pass a torch tensor (NxCxHxW)"
        )
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(f"{name}: expected an HxW, HxWx1 or HxWx3 array, got shape {img.shape}")
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0)


def _check_pair(pred, target, crop_border: int, min_size: int):
    """Validate a pair and crop it. Returns (pred, target, compute dtype, is_numpy)."""
    if isinstance(pred, np.ndarray) and isinstance(target, np.ndarray):
        if pred.shape != target.shape:
            raise ValueError(
                f"pred and target shapes differ: pred {pred.shape}, target {target.shape}"
            )
        shape = pred.shape
        p = _numpy_image_to_nchw(pred, "pred")
        t = _numpy_image_to_nchw(target, "target")
        dtype, is_numpy = torch.float64, True
    elif isinstance(pred, Tensor) and isinstance(target, Tensor):
        shape = tuple(pred.shape)
        if pred.shape != target.shape:
            raise ValueError(
                f"pred and target shapes differ: pred {shape}, target {tuple(target.shape)}"
            )
        if pred.ndim != 4:
            raise ValueError(f"expected NxCxHxW tensors, got shape {shape}")
        if pred.device != target.device:
            raise ValueError(f"pred is on {pred.device} but target is on {target.device}")
        for x in (pred, target):
            if not (x.is_floating_point() or x.dtype == torch.uint8):
                raise TypeError(f"expected float tensors in [0, 1] or uint8 tensors, got {x.dtype}")
        p, t = pred.detach(), target.detach()
        dtype = torch.float64 if torch.float64 in (p.dtype, t.dtype) else torch.float32
        is_numpy = False
    else:
        raise TypeError(
            "pred and target must both be numpy arrays or both torch tensors, got "
            f"{type(pred).__name__} and {type(target).__name__}"
        )
    p, t = _crop(p, crop_border), _crop(t, crop_border)
    height, width = p.shape[-2:]
    if height < min_size or width < min_size:
        raise ValueError(
            f"image of {shape} with crop_border={crop_border} leaves {height}x{width} pixels; "
            f"this metric needs at least {min_size}x{min_size}"
        )
    return p, t, dtype, is_numpy


def _crop(x: Tensor, crop_border: int) -> Tensor:
    if not isinstance(crop_border, int) or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative int, got {crop_border!r}")
    height, width = x.shape[-2:]
    if 2 * crop_border >= min(height, width):
        raise ValueError(
            f"crop_border={crop_border} removes the whole {height}x{width} image "
            f"(it must be below {(min(height, width) + 1) // 2})"
        )
    if crop_border == 0:
        return x
    return x[..., crop_border:-crop_border, crop_border:-crop_border]


def _levels(x: Tensor, dtype: torch.dtype) -> Tensor:
    """A float [0, 1] or uint8 tensor -> levels 0..255 in ``dtype``. Floats are rounded in
    their own dtype (float16/bfloat16 widened to float32 first), as an image writer would."""
    if x.dtype == torch.uint8:
        return x.to(dtype, memory_format=torch.contiguous_format)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    # Integers: exact in any dtype. Contiguous NCHW whatever the input layout.
    return (x * PEAK).round_().clamp_(0, PEAK).to(dtype, memory_format=torch.contiguous_format)


def _chunk_size(x: Tensor) -> int:
    """Images per chunk. On the CPU one: its maps stay in cache, and every image goes through
    the same kernels whatever its batch, so it scores bit for bit the same in any batch (a
    distributed evaluation matches a single process exactly). On a GPU as many as keep the
    intermediate tensors moderate (there the last float32 digits may depend on the batch)."""
    if x.device.type == "cpu":
        return 1
    return max(1, _GPU_CHUNK_ELEMENTS // (4 * x[0].numel()))


def _score(p: Tensor, t: Tensor, dtype: torch.dtype, scores: dict) -> dict:
    """Run ``scores`` (name -> (y_channel, fn(levels_p, levels_t))) chunk by chunk; each
    chunk is converted to levels (and Y) once. Returns name -> float64 tensor of N values."""
    if any(y for y, _ in scores.values()) and p.shape[1] not in (1, 3):
        raise ValueError(f"the Y channel needs 1 or 3 channels, got {p.shape[1]}")
    step = _chunk_size(p)
    parts: dict = {name: [] for name in scores}
    for start in range(0, p.shape[0], step):
        lp, lt = _levels(p[start : start + step], dtype), _levels(t[start : start + step], dtype)
        yp = yt = None
        for name, (y_channel, fn) in scores.items():
            if y_channel:
                if yp is None:
                    yp, yt = _y_from_levels(lp), _y_from_levels(lt)
                parts[name].append(fn(yp, yt))
            else:
                parts[name].append(fn(lp, lt))
    return {name: torch.cat(values) for name, values in parts.items()}


def _one_metric(pred, target, crop_border, y_channel, fn, min_size):
    with torch.no_grad():
        p, t, dtype, is_numpy = _check_pair(pred, target, crop_border, min_size)
        values = _score(p, t, dtype, {"value": (y_channel, fn)})["value"]
    return float(values[0]) if is_numpy else values


# --------------------------------------------------------------------------- PSNR


def psnr(pred, target, crop_border: int = 0, y_channel: bool = False):
    """PSNR in dB with peak 255 on uint8 levels (see the module docstring for the convention).

    numpy ``uint8`` image pair -> float; torch ``NxCxHxW`` pair -> float64 tensor of N values.
    Identical images give ``inf``.
    """
    return _one_metric(pred, target, crop_border, y_channel, _psnr_levels, 1)


def _psnr_levels(p: Tensor, t: Tensor) -> Tensor:
    squared = (p - t).square_()
    mse = squared.sum(dim=(1, 2, 3), dtype=torch.float64) / squared[0].numel()
    return 10.0 * torch.log10(PEAK * PEAK / mse)


# --------------------------------------------------------------------------- SSIM


def ssim(pred, target, crop_border: int = 0, y_channel: bool = False):
    """SSIM on uint8 levels, 11x11 Gaussian window (sigma 1.5), valid region, channel mean.

    numpy ``uint8`` image pair -> float; torch ``NxCxHxW`` pair -> float64 tensor of N values.
    The image must be at least 11x11 after cropping.
    """
    return _one_metric(pred, target, crop_border, y_channel, _ssim_levels, SSIM_WINDOW)


def gaussian_window(dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """The 11 normalised taps of the 1-D Gaussian (sigma 1.5); the 2-D window is their outer product."""
    offsets = torch.arange(SSIM_WINDOW, dtype=torch.float64) - _PAD
    taps = torch.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return (taps / taps.sum()).to(dtype=dtype, device=device)


_BANDS: dict = {}


def _band(rows: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``rows x (rows + 10)`` matrix whose row i holds the taps at columns i..i+10."""
    key = (rows, dtype, str(device))
    band = _BANDS.get(key)
    if band is None:
        taps = gaussian_window()
        band = torch.zeros(rows, rows + SSIM_WINDOW - 1, dtype=torch.float64)
        index = torch.arange(rows)
        for k in range(SSIM_WINDOW):
            band[index, index + k] = taps[k]
        band = band.to(dtype=dtype, device=device)
        _BANDS[key] = band
    return band


def _filter_rows(x: Tensor) -> Tensor:
    """Valid 11-tap Gaussian along dim 0 of a contiguous ``(H, M)`` matrix -> ``(H - 10, M)``."""
    height, width = x.shape
    out_rows = height - 2 * _PAD
    out = torch.empty(out_rows, width, dtype=x.dtype, device=x.device)
    blocks = out_rows // _ROW_BLOCK
    band = _band(_ROW_BLOCK, x.dtype, x.device)
    if blocks:
        # Overlapping views: block k reads input rows [8k, 8k + 18).
        windows = x.as_strided(
            (blocks, _ROW_BLOCK + 2 * _PAD, width), (_ROW_BLOCK * width, width, 1)
        )
        torch.matmul(band, windows, out=out[: blocks * _ROW_BLOCK].view(blocks, _ROW_BLOCK, width))
    rest = out_rows - blocks * _ROW_BLOCK
    if rest:
        torch.matmul(
            band[:rest, : rest + 2 * _PAD], x[blocks * _ROW_BLOCK :], out=out[blocks * _ROW_BLOCK :]
        )
    return out


def _ssim_levels(x: Tensor, y: Tensor) -> Tensor:
    """SSIM of level tensors ``NxCxHxW`` (compute dtype) -> float64 tensor of N values."""
    n, channels, height, width = x.shape
    dtype, device = x.dtype, x.device
    # SSIM's (co)variances do not change when x and y are shifted by the same amount. Shifting
    # by an integer near the channel's mean keeps the levels integers (so x^2 + y^2 and xy are
    # exact in float32) and the sums small, which keeps float32 within ~1e-6 of float64 even
    # on smooth, bright images. The means get the offset back before the luminance term.
    offset = y.mean(dim=(2, 3), keepdim=True).round_()
    # The four maps to filter, laid out (H, map, N, C, W) so that the vertical pass is one
    # matrix product per block of rows: x, y, x^2 + y^2 and xy (of the shifted images).
    maps = torch.empty(height, 4, n, channels, width, dtype=dtype, device=device)
    xs, ys = maps[:, 0], maps[:, 1]
    torch.sub(x.permute(2, 0, 1, 3), offset.view(n, channels, 1), out=xs)
    torch.sub(y.permute(2, 0, 1, 3), offset.view(n, channels, 1), out=ys)
    torch.mul(xs, xs, out=maps[:, 2]).addcmul_(ys, ys)
    torch.mul(xs, ys, out=maps[:, 3])
    vertical = _filter_rows(maps.view(height, -1))

    out_h, out_w = height - 2 * _PAD, width - 2 * _PAD
    rows = vertical.view(out_h * 4 * n * channels, width)
    band_t = _band(_COL_BLOCK, dtype, device).t()
    total = torch.zeros(n, channels, dtype=torch.float64, device=device)
    # The horizontal pass, block of columns by block, each followed at once by the SSIM
    # formula while its output is still in cache.
    for start in range(0, out_w, _COL_BLOCK):
        cols = min(_COL_BLOCK, out_w - start)
        filtered = rows[:, start : start + cols + 2 * _PAD] @ band_t[: cols + 2 * _PAD, :cols]
        total += _ssim_map_sum(
            filtered.view(out_h, 4, n, channels, cols), offset.view(n, channels, 1)
        )
    return (total / (out_h * out_w)).mean(dim=1)


def _ssim_map_sum(filtered: Tensor, offset: Tensor) -> Tensor:
    """Sum of the SSIM map over positions, per (image, channel), from the four filtered maps
    of the shifted images (``offset`` is the shift, per image and channel)."""
    mu_x, mu_y, sq, xy = filtered.unbind(1)
    contrast = xy.addcmul_(mu_x, mu_y, value=-1).mul_(2).add_(SSIM_C2)  # 2 cov + C2
    variances = sq.addcmul_(mu_x, mu_x, value=-1).addcmul_(mu_y, mu_y, value=-1).add_(SSIM_C2)
    mu_x, mu_y = mu_x.add_(offset), mu_y.add_(offset)
    luminance = mu_x * mu_y
    numerator = luminance.mul_(2).add_(SSIM_C1).mul_(contrast)  # (2 mu_x mu_y + C1)(2 cov + C2)
    denominator = mu_x.square_().addcmul_(mu_y, mu_y).add_(SSIM_C1).mul_(variances)
    # Rows of at most 24 values are summed in the compute dtype (a float64 copy of the whole
    # map would cost more than the rest), the row sums in float64. Neither order depends on
    # the other images of the batch, so an image scores the same in any batch.
    return numerator.div_(denominator).sum(dim=3).double().sum(dim=0)



# --------------------------------------------------------------------------- batches

#: The per-image scores, in the order they are reported: name -> (on the Y channel,
#: fn(levels of pred, levels of target) -> float64 tensor of N values).
SCORES = {
    "psnr": (False, _psnr_levels),
    "ssim": (False, _ssim_levels),
    "psnr_y": (True, _psnr_levels),
    "ssim_y": (True, _ssim_levels),
}


def score_batch(pred: Tensor, target: Tensor, crop_border: int, names) -> dict:
    """The scores ``names`` (keys of :data:`SCORES`) of a batch of ``NxCxHxW`` tensors,
    each a float64 tensor of N values; the images must be at least 11x11 after cropping.
    Each image is converted to levels (and Y) once for all the scores."""
    with torch.no_grad():
        p, t, dtype, _ = _check_pair(pred, target, crop_border, SSIM_WINDOW)
        return _score(p, t, dtype, {name: SCORES[name] for name in names})
