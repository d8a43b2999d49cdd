"""Image quality metrics as papers report them: PSNR, SSIM, their Y-channel variants, FID, KID.

The convention (the super-resolution literature's, as in BasicSR's ``calculate_psnr`` and
``calculate_ssim`` and the MATLAB code before it):

1. ``crop_border`` pixels are cut from each edge first.
2. Images are compared at uint8 levels. A float image ``x`` in [0, 1] becomes
   ``(x * 255).round().clamp(0, 255)`` (in ``x``'s dtype; float16/bfloat16 are first
   widened to float32), so a float prediction and its saved uint8 PNG score the same.
3. With ``y_channel=True`` the levels become ITU-R BT.601 studio-range luma,
   ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G, B in [0, 1], i.e. Y in
   [16, 235] on the 0..255 scale. Y is not rounded. A one-channel image is its own Y.
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

FID and KID (:func:`fid_kid`, :class:`FidKid`) use torchmetrics' ``FrechetInceptionDistance``
and ``KernelInceptionDistance`` on features of a pluggable network; the standard one is
:func:`img2img.fid.load_fid_inception`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2
PEAK = 255.0
# BT.601 studio range: Y = 16 + R * 65.481 + G * 128.553 + B * 24.966 with R, G, B in [0, 1].
Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_OFFSET = 16.0

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
    y = r * Y_WEIGHTS[0] + g * Y_WEIGHTS[1] + b * Y_WEIGHTS[2] + Y_OFFSET
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


# --------------------------------------------------------------------------- accumulator


class ImageMetrics:
    """Per-image PSNR/SSIM (and their Y-channel variants) over an evaluation set.

    ``update`` takes float ``NxCxHxW`` tensors in [0, 1] (any size per call); ``compute``
    returns the plain means of the per-image values (as BasicSR averages per-image PSNR).

    For a distributed evaluation, every process calls ``state()``; the trainer gathers the
    states (e.g. ``accelerate.utils.gather_object``) and calls ``merge(states)`` on a fresh
    instance. Images are keyed by name: give each image a unique name (its relative path)
    and the copies a padded distributed sampler adds are counted once. On the CPU an image
    scores bit for bit the same in any batch and the means use ``math.fsum``, so the merged
    means equal a single process's exactly (on a GPU, to float32 rounding). Unnamed images
    are never treated as duplicates.
    """

    KEYS = ("psnr", "ssim", "psnr_y", "ssim_y")

    def __init__(self, crop_border: int = 0, y_channel_too: bool = True):
        if not isinstance(crop_border, int) or crop_border < 0:
            raise ValueError(f"crop_border must be a non-negative int, got {crop_border!r}")
        self.crop_border = crop_border
        self.y_channel_too = y_channel_too
        self._rows: list[dict] = []

    @property
    def keys(self) -> tuple[str, ...]:
        return self.KEYS if self.y_channel_too else self.KEYS[:2]

    def reset(self) -> None:
        self._rows = []

    def update(
        self, pred: Tensor, target: Tensor, names: Sequence[str] | None = None
    ) -> list[dict]:
        """Score a batch; returns the new per-image rows."""
        if not isinstance(pred, Tensor):
            raise TypeError(f"ImageMetrics.update expects torch tensors, got {type(pred).__name__}")
        if names is not None and len(names) != pred.shape[0]:
            raise ValueError(f"got {len(names)} names for a batch of {pred.shape[0]} images")
        scores = {"psnr": (False, _psnr_levels), "ssim": (False, _ssim_levels)}
        if self.y_channel_too:
            scores.update(psnr_y=(True, _psnr_levels), ssim_y=(True, _ssim_levels))
        with torch.no_grad():
            p, t, dtype, _ = _check_pair(pred, target, self.crop_border, SSIM_WINDOW)
            values = _score(p, t, dtype, scores)
        columns = {key: value.cpu().tolist() for key, value in values.items()}
        rows = []
        for i in range(pred.shape[0]):
            row = {"name": None if names is None else str(names[i])}
            row.update({key: columns[key][i] for key in self.keys})
            rows.append(row)
        self._rows.extend(rows)
        return rows

    def per_image(self) -> list[dict]:
        """One dict per image (name, psnr, ssim[, psnr_y, ssim_y]), duplicates by name dropped."""
        seen: set[str] = set()
        rows = []
        for row in self._rows:
            name = row["name"]
            if name is not None:
                if name in seen:
                    continue
                seen.add(name)
            rows.append(dict(row))
        return rows

    def compute(self) -> dict:
        """Means over images (``math.fsum``, so the order of images does not matter) and the count."""
        rows = self.per_image()
        if not rows:
            raise ValueError("ImageMetrics.compute() before any update(): no images scored")
        result: dict = {key: math.fsum(row[key] for row in rows) / len(rows) for key in self.keys}
        result["images"] = len(rows)
        return result

    def state(self) -> dict:
        """A plain, picklable snapshot of this process's results (for gathering)."""
        return {
            "crop_border": self.crop_border,
            "y_channel_too": self.y_channel_too,
            "rows": [dict(row) for row in self._rows],
        }

    def merge(self, states: Iterable[dict]) -> ImageMetrics:
        """Add the rows of gathered ``state()`` snapshots to this instance and return it. Call
        it on a fresh instance with every process's state (this process's included)."""
        for state in states:
            if state["crop_border"] != self.crop_border or (
                self.y_channel_too and not state["y_channel_too"]
            ):
                raise ValueError(
                    f"cannot merge a state with crop_border={state['crop_border']}, "
                    f"y_channel_too={state['y_channel_too']} into crop_border={self.crop_border}, "
                    f"y_channel_too={self.y_channel_too}"
                )
            self._rows.extend(
                {"name": row["name"], **{key: row[key] for key in self.keys}}
                for row in state["rows"]
            )
        return self


# --------------------------------------------------------------------------- FID / KID


class _Features(nn.Module):
    """Identity "feature network" handed to torchmetrics: the features are computed once by
    :class:`FidKid` and fed to both FID and KID."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def _feature_count(net: nn.Module) -> int:
    count = getattr(net, "num_features", None)
    if isinstance(count, Tensor):
        count = int(count.item())
    if not isinstance(count, int) or count < 1:
        raise ValueError(
            f"the feature network {type(net).__name__} must expose num_features (an int), "
            f"got {count!r}"
        )
    return count


class FidKid:
    """Streaming FID and KID between real and generated images.

    Images are float ``Nx3xHxW`` tensors in [0, 1]; by default they are first rounded to
    uint8 levels (``quantize=True``), so tensors score the same as their saved PNGs. The
    feature network (it must expose ``num_features``; the standard one is
    :func:`img2img.fid.load_fid_inception`) runs once per batch in eval mode without
    gradients, on its own device. Its features feed torchmetrics'
    ``FrechetInceptionDistance`` (running float64 sums) and ``KernelInceptionDistance``
    (stored features, polynomial kernel, ``kid_subsets`` random subsets of
    ``kid_subset_size``; fewer samples than that use all of them). ``seed`` makes the KID
    subsets reproducible. Under an initialised ``torch.distributed`` group torchmetrics
    gathers the statistics of every process in ``compute``.
    """

    def __init__(
        self,
        feature_net: nn.Module,
        kid_subset_size: int = 1000,
        kid_subsets: int = 100,
        fid: bool = True,
        kid: bool = True,
        quantize: bool = True,
        seed: int = 0,
    ):
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        if not (fid or kid):
            raise ValueError("FidKid needs fid=True or kid=True")
        self.feature_net = feature_net
        self.num_features = _feature_count(feature_net)
        self.kid_subset_size = kid_subset_size
        self.quantize = quantize
        self.seed = seed
        identity = _Features(self.num_features)
        self._fid = FrechetInceptionDistance(feature=identity, normalize=True) if fid else None
        self._kid = None
        if kid:
            import warnings

            with warnings.catch_warnings():  # "will save all extracted features in buffer"
                warnings.simplefilter("ignore", UserWarning)
                self._kid = KernelInceptionDistance(
                    feature=_Features(self.num_features),
                    subsets=kid_subsets,
                    subset_size=kid_subset_size,
                    normalize=True,
                )
        self.counts = {"real": 0, "fake": 0}

    def _metrics(self):
        return [m for m in (self._fid, self._kid) if m is not None]

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """Features (float64, ``N x num_features``) of float ``Nx3xHxW`` images in [0, 1]."""
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"FID/KID expect float Nx3xHxW tensors in [0, 1], got {shape}")
        if not images.is_floating_point():
            raise TypeError(f"FID/KID expect float images in [0, 1], got {images.dtype}")
        param = next(self.feature_net.parameters(), None)
        if param is not None:
            images = images.to(device=param.device, dtype=param.dtype)
        if self.quantize:
            images = (images * PEAK).round().clamp(0, PEAK) / PEAK
        self.feature_net.eval()
        features = self.feature_net(images)
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(
                f"the feature network returned shape {tuple(features.shape)}, expected "
                f"(N, {self.num_features})"
            )
        return features.double()

    def update(self, real: Tensor | None = None, fake: Tensor | None = None) -> None:
        """Add a batch of real images, of generated images, or of both."""
        for images, is_real in ((real, True), (fake, False)):
            if images is None:
                continue
            features = self.features(images)
            for metric in self._metrics():
                metric.to(features.device)
                metric.update(features, real=is_real)
            self.counts["real" if is_real else "fake"] += features.shape[0]

    def _total_counts(self) -> dict:
        """Images seen by every process together (torchmetrics syncs the states, if distributed)."""
        if self._fid is not None:
            with self._fid.sync_context():
                return {
                    "real": int(self._fid.real_features_num_samples),
                    "fake": int(self._fid.fake_features_num_samples),
                }
        with self._kid.sync_context():
            return {
                "real": sum(int(f.shape[0]) for f in self._kid.real_features),
                "fake": sum(int(f.shape[0]) for f in self._kid.fake_features),
            }

    def compute(self) -> dict:
        """``{"fid", "kid", "kid_std", "kid_subset_size", "real", "fake"}`` (only what was enabled),
        over the images of every process."""
        counts = self._total_counts()
        if min(counts.values()) < 2:
            raise ValueError(
                f"FID/KID need at least 2 real and 2 generated images, got {counts['real']} "
                f"real and {counts['fake']} generated"
            )
        result: dict = dict(counts)
        if self._fid is not None:
            result["fid"] = float(self._fid.compute())
        if self._kid is not None:
            subset = min(self.kid_subset_size, counts["real"], counts["fake"])
            self._kid.subset_size = subset
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                kid_mean, kid_std = self._kid.compute()
            result.update(kid=float(kid_mean), kid_std=float(kid_std), kid_subset_size=subset)
        return result

    def reset(self) -> None:
        for metric in self._metrics():
            metric.reset()
        self.counts = {"real": 0, "fake": 0}


def _batches(images, batch_size: int):
    if isinstance(images, Tensor):
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size]
    else:
        yield from images


def fid_kid(
    real_images,
    fake_images,
    feature_net: nn.Module,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    batch_size: int = 50,
    quantize: bool = True,
    seed: int = 0,
) -> dict:
    """FID and KID between two image sets.

    Each set is a float ``Nx3xHxW`` tensor in [0, 1] (scored ``batch_size`` at a time) or an
    iterable of such batches. Returns ``{"fid", "kid", "kid_std", "kid_subset_size", "real",
    "fake"}``; see :class:`FidKid`.
    """
    metric = FidKid(
        feature_net,
        kid_subset_size=kid_subset_size,
        kid_subsets=kid_subsets,
        quantize=quantize,
        seed=seed,
    )
    for batch in _batches(real_images, batch_size):
        metric.update(real=batch)
    for batch in _batches(fake_images, batch_size):
        metric.update(fake=batch)
    return metric.compute()
