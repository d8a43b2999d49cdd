"""Benchmark section ``metrics``: PSNR + SSIM (RGB) over a set of images.

    python tools/bench.py metrics [--quick] [--device cpu|cuda] [--sizes 512] [--steps 3]

Rows, per image size:

- ``per-image scipy, 2-D window``: the straightforward port of the reference code (BasicSR's
  ``calculate_psnr``/``calculate_ssim``, OpenCV's ``filter2D`` with the 11x11 window), one
  image and one channel at a time, with ``scipy.ndimage.correlate`` in float64.
- ``per-image scipy, separable``: the same, filtering with two 1-D passes
  (``scipy.ndimage.correlate1d``): a stronger baseline.
- ``img2img numpy (per image)``: :func:`img2img.metrics.psnr`/``ssim`` on uint8 arrays,
  one image at a time (the float64 torch path).
- ``img2img torch float64`` / ``float32``: one call each on the whole batch of float
  tensors in [0, 1] on ``--device``.

The per-image baselines are slow, so they are timed on the first few images only
(``images`` says how many); throughput (images/s) is what is compared. ``speedup`` is
relative to the 2-D-window baseline and ``vs_separable`` to the separable one.
``max_ssim_diff`` is the largest SSIM difference from the 2-D-window baseline.
Timings are the best of ``--steps`` repetitions (default 3; 1 with ``--quick``).
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch
from scipy import ndimage

from img2img.metrics import gaussian_window, psnr, ssim

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _ssim_numpy(pred: np.ndarray, target: np.ndarray, separable: bool) -> float:
    taps = gaussian_window().numpy()
    window = np.outer(taps, taps)
    values = []
    for c in range(pred.shape[2]):
        x = pred[..., c].astype(np.float64)
        y = target[..., c].astype(np.float64)

        def filt(img):
            if separable:
                img = ndimage.correlate1d(img, taps, axis=0)
                img = ndimage.correlate1d(img, taps, axis=1)
            else:
                img = ndimage.correlate(img, window)
            return img[5:-5, 5:-5]  # the valid region, as BasicSR crops after filter2D

        mu_x, mu_y = filt(x), filt(y)
        var_x, var_y = filt(x * x) - mu_x**2, filt(y * y) - mu_y**2
        cov = filt(x * y) - mu_x * mu_y
        ssim_map = ((2 * mu_x * mu_y + C1) * (2 * cov + C2)) / (
            (mu_x**2 + mu_y**2 + C1) * (var_x + var_y + C2)
        )
        values.append(ssim_map.mean())
    return float(np.mean(values))


def _psnr_numpy(pred: np.ndarray, target: np.ndarray) -> float:
    mse = np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _images(count: int, size: int, seed: int = 0):
    """Smooth random targets and noisy, shifted predictions (uint8 NxHxWx3)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, size // 16, size // 16, generator=generator)
    target = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic")
    pred = target + 0.04 * torch.randn(target.shape, generator=generator) + 0.01
    to_uint8 = lambda t: (t.clamp(0, 1) * 255).round().to(torch.uint8)  # noqa: E731
    return to_uint8(pred).permute(0, 2, 3, 1).numpy(), to_uint8(target).permute(0, 2, 3, 1).numpy()


def _best_time(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _baseline(pred_np, target_np, n: int, separable: bool) -> list[float]:
    return [
        (_psnr_numpy(pred_np[i], target_np[i]), _ssim_numpy(pred_np[i], target_np[i], separable))[1]
        for i in range(n)
    ]


def _ours_numpy(pred_np, target_np, n: int) -> list[float]:
    return [(psnr(pred_np[i], target_np[i]), ssim(pred_np[i], target_np[i]))[1] for i in range(n)]


def _ours_torch(pred: torch.Tensor, target: torch.Tensor, device: str) -> list[float]:
    _, values = psnr(pred, target), ssim(pred, target)
    _sync(device)
    return values.cpu().tolist()


def _cases(size: int, count: int, baseline_count: int, repeats: int, device: str) -> list[tuple]:
    """(name, images timed, seconds, SSIM values) per implementation."""
    pred_np, target_np = _images(count, size)
    cases = []
    for name, separable in (
        ("per-image scipy, 2-D window", False),
        ("per-image scipy, separable", True),
    ):
        run_once = partial(_baseline, pred_np, target_np, baseline_count, separable)
        seconds, values = _best_time(run_once, repeats)
        cases.append((name, baseline_count, seconds, values))

    _ours_numpy(pred_np, target_np, 1)  # warm up
    run_once = partial(_ours_numpy, pred_np, target_np, baseline_count)
    seconds, values = _best_time(run_once, repeats)
    cases.append(("img2img numpy (per image)", baseline_count, seconds, values))

    for dtype in (torch.float64, torch.float32):
        # Contiguous NCHW float tensors in [0, 1], as a data loader or a model gives them.
        pred = torch.from_numpy(pred_np).permute(0, 3, 1, 2).to(device, dtype).contiguous() / 255
        target = (
            torch.from_numpy(target_np).permute(0, 3, 1, 2).to(device, dtype).contiguous() / 255
        )
        _ours_torch(pred[:1], target[:1], device)  # warm up (kernels, band matrices)
        seconds, values = _best_time(partial(_ours_torch, pred, target, device), repeats)
        label = f"img2img torch {str(dtype).replace('torch.', '')} ({device}, batched)"
        cases.append((label, count, seconds, values))
        del pred, target
    return cases


def run(opts) -> list[dict]:
    quick = bool(getattr(opts, "quick", False))
    device = getattr(opts, "device", "cpu") or "cpu"
    sizes = getattr(opts, "sizes", None) or ([256] if quick else [512])
    repeats = getattr(opts, "steps", None) or (1 if quick else 3)
    count = 10 if quick else 100
    baseline_count = 2 if quick else 5

    rows: list[dict] = []
    for size in sizes:
        cases = _cases(size, count, baseline_count, repeats, device)
        reference_rate = cases[0][1] / cases[0][2]
        separable_rate = cases[1][1] / cases[1][2]
        reference_ssim = np.array(cases[0][3])
        for name, n, seconds, ssim_values in cases:
            rate = n / seconds
            diff = np.abs(np.array(ssim_values[: len(reference_ssim)]) - reference_ssim).max()
            rows.append(
                {
                    "implementation": name,
                    "images": n,
                    "size": size,
                    "seconds": seconds,
                    "images/s": rate,
                    "speedup": rate / reference_rate,
                    "vs_separable": rate / separable_rate,
                    "max_ssim_diff": float(diff),
                }
            )
    return rows
