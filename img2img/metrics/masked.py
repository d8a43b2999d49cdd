"""Scores of an image inside a region (the hole of an inpainting mask) and as a whole.

For one prediction and its target (``1 x 3 x H x W`` floats in [0, 1]) and a mask
(``1 x 1 x H x W``, 1 inside the region), :func:`region_scores` gives

- ``l1``: the mean absolute difference over every pixel and channel, in [0, 1] units;
- ``l1_hole``: the same over the region's pixels;
- ``psnr_hole``: ``10 log10(1 / MSE)`` over the region's pixels and channels (peak 1, i.e.
  255 on 8-bit levels; infinite for a perfect match);
- ``ssim_hole``: the SSIM map of the whole image (the convention of
  :mod:`img2img.metrics.psnr_ssim`: 8-bit levels, 11 x 11 Gaussian window with sigma 1.5,
  valid positions only, per channel then averaged) averaged over the window positions whose
  centre pixel lies in the region (absent when none does: a region within 5 px of the edges).

As elsewhere, the prediction is first rounded to 8-bit levels (as a saved image would be);
the target is too. Computed in float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from img2img.metrics.psnr_ssim import SSIM_WINDOW, gaussian_window

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _levels(x: Tensor) -> Tensor:
    return (x.double() * 255).round().clamp(0, 255)


def ssim_map(pred: Tensor, target: Tensor) -> Tensor:
    """The SSIM map (``N x (H-10) x (W-10)``, mean over channels) of two level images."""
    taps = gaussian_window(torch.float64, pred.device)
    window = torch.outer(taps, taps)[None, None].expand(pred.shape[1], 1, -1, -1)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, window, groups=pred.shape[1])

    mu_x, mu_y = blur(pred), blur(target)
    var_x = blur(pred * pred) - mu_x**2
    var_y = blur(target * target) - mu_y**2
    cov = blur(pred * target) - mu_x * mu_y
    value = ((2 * mu_x * mu_y + C1) * (2 * cov + C2)) / ((mu_x**2 + mu_y**2 + C1) * (var_x + var_y + C2))
    return value.mean(dim=1)


def region_scores(pred: Tensor, target: Tensor, mask: Tensor) -> dict[str, float]:
    """``l1``, ``l1_hole``, ``psnr_hole`` and ``ssim_hole`` of one image (module docstring)."""
    p, t = _levels(pred), _levels(target)
    hole = (mask.double() > 0.5).expand_as(p)
    diff = (p - t) / 255
    scores = {"l1": float(diff.abs().mean())}
    if hole.any():
        inside = diff[hole]
        scores["l1_hole"] = float(inside.abs().mean())
        mse = float((inside**2).mean())
        scores["psnr_hole"] = math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
        h, w = p.shape[-2:]
        if min(h, w) >= SSIM_WINDOW:
            pad = SSIM_WINDOW // 2
            centres = hole[:, 0, pad : h - pad, pad : w - pad]
            if centres.any():
                scores["ssim_hole"] = float(ssim_map(p, t)[centres].mean())
    return scores
