"""The steps of the real-world degradation model (:mod:`img2img.data.degradations`), each
on a whole N3HW batch in [0, 1] on its device.

Filtering pads by reflection (as BasicSR's ``filter2D``), or by repeating the edge when an
image is too small to reflect a kernel's half-width (a heavy downscale of a small image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import kornia
import torch
import torch.nn.functional as F

from img2img.data.color import luma


class NoiseDraw(Protocol):
    gaussian: bool
    sigma: float
    scale: float
    grey: bool
    seed: int


def _border(x: torch.Tensor, side: int) -> str:
    return "reflect" if min(x.shape[-2:]) > side // 2 else "replicate"


def blur(x: torch.Tensor, kernels: torch.Tensor, support: int | None = None) -> torch.Tensor:
    """Each image filtered by its own kernel (N x k x k, odd k), in one grouped
    convolution; ``support``: the largest kernel side in use (the kernels are zero
    beyond it, so the grid is cut to it; 1: all are the identity, nothing to do)."""
    side = kernels.shape[-1]
    if support is not None and support < side:
        if support <= 1:
            return x
        cut = (side - support) // 2
        kernels = kernels[:, cut : side - cut, cut : side - cut]
    return kornia.filters.filter2d(x, kernels.to(x.dtype), border_type=_border(x, kernels.shape[-1]))


def resize(x: torch.Tensor, mode: str, factor: float | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``interpolate`` by ``factor`` (Real-ESRGAN's first resize) or to ``size`` (never
    below one pixel)."""
    height, width = x.shape[-2:]
    kwargs = {} if mode == "area" else {"align_corners": False}
    if factor is not None:
        if math.floor(height * factor) >= 1 and math.floor(width * factor) >= 1:
            return F.interpolate(x, scale_factor=factor, mode=mode, **kwargs)
        size = (math.floor(height * factor), math.floor(width * factor))
    assert size is not None
    return F.interpolate(x, size=(max(1, size[0]), max(1, size[1])), mode=mode, **kwargs)


def _poisson(image: torch.Tensor, scale: float, grey: bool, generator: torch.Generator) -> torch.Tensor:
    """BasicSR's Poisson noise of one image (1 x 3 x H x W): counts on as many levels as
    the power of two at or above the number of distinct 8-bit values it holds."""
    source = luma(image) if grey else image
    codes = torch.clamp((source * 255.0).round(), 0, 255)
    source = codes / 255.0
    distinct = torch.bincount(codes.flatten().long(), minlength=256).count_nonzero()
    levels = torch.exp2(torch.ceil(torch.log2(distinct.to(source.dtype).clamp(min=1))))
    counts = torch.poisson(source * levels, generator=generator) / levels
    return (counts - source) * scale


def add_noise(x: torch.Tensor, draws: Sequence[NoiseDraw]) -> torch.Tensor:
    """Gaussian (sigma in 8-bit levels) or Poisson noise per image, colour or grey (one
    field for all channels), each field drawn from the image's own seed; clipped to [0, 1]."""
    out = torch.empty_like(x)
    height, width = x.shape[-2:]
    for i, draw in enumerate(draws):
        generator = torch.Generator(device=x.device)
        generator.manual_seed(draw.seed)
        image = x[i : i + 1]
        if draw.gaussian:
            channels = 1 if draw.grey else x.shape[1]
            noise = torch.randn((1, channels, height, width), generator=generator, device=x.device,
                                dtype=x.dtype) * (draw.sigma / 255.0)
        else:
            noise = _poisson(image, draw.scale, draw.grey, generator)
        out[i : i + 1] = (image + noise).clamp_(0.0, 1.0)
    return out


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """Rounded to 8-bit levels and clipped, as a saved LR image would be."""
    return torch.clamp((x * 255.0).round(), 0, 255) / 255.0


def _reflect_matrix(n: int, taps: torch.Tensor) -> torch.Tensor:
    """The n x n matrix ``M`` with ``(row @ M)[j] = sum_t taps[t] * row[reflect(j + t - half)]``:
    a 1-D correlation with reflected borders (repeated for a row shorter than the kernel),
    as one matrix product, which the CPU does far faster than a long 1-D convolution."""
    half = taps.numel() // 2
    out = torch.arange(n, device=taps.device)
    src = out[None, :] + torch.arange(-half, half + 1, device=taps.device)[:, None]  # taps x n
    if n > 1:
        period = 2 * (n - 1)
        src = src.remainder(period)
        src = torch.where(src > n - 1, period - src, src)
    else:
        src = torch.zeros_like(src)
    matrix = torch.zeros(n, n, dtype=taps.dtype, device=taps.device)
    matrix.index_put_((src.flatten(), out.repeat(taps.numel())), taps.repeat_interleave(n), accumulate=True)
    return matrix


def gaussian_blur(x: torch.Tensor, side: int, sigma: float) -> torch.Tensor:
    """A separable ``side`` x ``side`` Gaussian blur with reflected borders (OpenCV's and
    kornia's normalised taps), as two matrix products."""
    taps = kornia.filters.get_gaussian_kernel1d(side, sigma, device=x.device, dtype=torch.float64).flatten()
    rows = _reflect_matrix(x.shape[-1], taps).to(x.dtype)
    cols = _reflect_matrix(x.shape[-2], taps).to(x.dtype)
    return cols.T @ (x @ rows)


def unsharp_mask(x: torch.Tensor, radius: int = 50, weight: float = 0.5, threshold: float = 10.0) -> torch.Tensor:
    """BasicSR's USM sharpening: ``x + weight * (x - blurred)``, clipped, blended in where
    the detail exceeds ``threshold`` 8-bit levels (a blurred mask); the Gaussian is
    OpenCV's for ``radius`` (made odd) with sigma 0, i.e. ``0.3 * ((side - 1) / 2 - 1) + 0.8``."""
    side = radius + 1 if radius % 2 == 0 else radius
    sigma = 0.3 * ((side - 1) * 0.5 - 1) + 0.8
    residual = x - gaussian_blur(x, side, sigma)
    mask = (residual.abs() * 255 > threshold).to(x.dtype)
    soft = gaussian_blur(mask, side, sigma)
    sharp = (x + weight * residual).clamp(0.0, 1.0)
    return soft * sharp + (1 - soft) * x


def random_crops(
    images: dict[str, torch.Tensor], where: Sequence[tuple[float, float]], size: int, scale: int
) -> dict[str, torch.Tensor]:
    """Cut each image of ``images`` (``lr`` and HR-sized others) to a ``size`` HR window
    on the LR grid, at its own position: ``where[i]`` gives fractions of the room left
    for the window, top then left."""
    lr = images["lr"]
    n, _, height, width = lr.shape
    side = size // scale
    if height < side or width < side:
        raise ValueError(f"the LR ({width}x{height}) is smaller than the {side} px crop")
    spots = torch.tensor(list(where), dtype=torch.float64)
    top = (spots[:, 0] * (height - side + 1)).floor().long().clamp_(max=height - side)
    left = (spots[:, 1] * (width - side + 1)).floor().long().clamp_(max=width - side)
    out = {}
    for name, x in images.items():
        factor = 1 if name == "lr" else scale
        span = torch.arange(side * factor)
        rows = ((top * factor)[:, None] + span).to(x.device)  # N x side
        cols = ((left * factor)[:, None] + span).to(x.device)
        batch = torch.arange(n, device=x.device)[:, None, None]
        picked = x[batch, :, rows[:, :, None], cols[:, None, :]]
        out[name] = picked.permute(0, 3, 1, 2).contiguous()  # advanced indices come first: N h w C
    return out
