"""Blur kernels of the real-world degradation model, made for a whole batch at once.

Each kernel is described by one row of numbers (:data:`PARAMS`): its kind, its support
(an odd side from 7 to 21), and the parameters of its family; :func:`make_kernels` turns
N rows into N kernels on a common 21 x 21 grid (zero outside the support) with tensor
operations only, on the device the rows are on. The families are those of Real-ESRGAN
(BasicSR's ``basicsr/data/degradations.py``), on the grid ``x, y`` in ``-(k-1)/2 ..
(k-1)/2`` with ``q = [x y] S^-1 [x y]^T`` and ``S = R(theta) diag(sx^2, sy^2) R(theta)^T``:

- ``iso`` / ``aniso``: Gaussian, ``exp(-q / 2)`` (iso: ``sy = sx``, ``theta = 0``);
- ``generalized_iso`` / ``generalized_aniso``: ``exp(-q^beta / 2)``;
- ``plateau_iso`` / ``plateau_aniso``: ``1 / (1 + q^beta)``;
- ``sinc``: the circular low-pass filter ``w J1(w r) / (2 pi r)`` (``w^2 / (4 pi)`` at
  ``r = 0``) of cut-off ``w`` in radians;
- ``pulse``: the identity (a one at the centre), for a blur that is skipped.

Every kernel sums to 1 (the sinc filter has negative side lobes).
"""

from __future__ import annotations

import math

import torch

#: The blur kernel kinds a config may list, in this order (their row codes are 0..5).
BLUR_KINDS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
SINC, PULSE = 6, 7
#: The columns of a kernel's row.
PARAMS = ("kind", "size", "sigma_x", "sigma_y", "theta", "beta", "omega")
#: The side of the common grid (Real-ESRGAN pads every kernel to 21).
GRID = 21


def pulse_row() -> list[float]:
    """The row of the identity kernel."""
    return [float(PULSE), 1.0, 1.0, 1.0, 0.0, 1.0, 0.0]


def sinc_row(size: int, omega: float) -> list[float]:
    """The row of a ``size`` x ``size`` circular low-pass filter of cut-off ``omega``."""
    return [float(SINC), float(size), 1.0, 1.0, 0.0, 1.0, float(omega)]


def blur_row(kind: str, size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> list[float]:
    """The row of a blur kernel of one of :data:`BLUR_KINDS` (iso kinds ignore
    ``sigma_y`` and ``theta``)."""
    code = BLUR_KINDS.index(kind)
    if code % 2 == 0:  # isotropic
        sigma_y, theta = sigma_x, 0.0
    return [float(code), float(size), float(sigma_x), float(sigma_y), float(theta), float(beta), 0.0]


def make_kernels(rows: torch.Tensor, grid: int = GRID) -> torch.Tensor:
    """N x 7 rows (:data:`PARAMS`) -> N x grid x grid kernels, each summing to 1."""
    rows = rows.to(torch.float64)
    kind, size, sx, sy, theta, beta, omega = (c[:, None, None] for c in rows.unbind(1))
    axis = torch.arange(grid, dtype=torch.float64, device=rows.device) - grid // 2
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    # x S^-1 x^T in the rotated frame: u, v are the coordinates along the two axes.
    cos, sin = torch.cos(theta), torch.sin(theta)
    u, v = cos * x + sin * y, cos * y - sin * x
    q = (u / sx) ** 2 + (v / sy) ** 2
    powered = q.pow(beta)
    gaussian = torch.exp(-0.5 * powered)
    plateau = 1.0 / (powered + 1.0)
    r = torch.sqrt(x * x + y * y).expand_as(q)
    safe_r = torch.where(r > 0, r, torch.ones_like(r))
    sinc = omega * torch.special.bessel_j1(omega * safe_r) / (2 * math.pi * safe_r)
    sinc = torch.where(r > 0, sinc, omega**2 / (4 * math.pi))
    pulse = (r == 0).to(torch.float64).expand_as(q)
    is_plateau = (kind == 4) | (kind == 5)
    kernel = torch.where(is_plateau, plateau, gaussian)
    kernel = torch.where(kind == SINC, sinc, kernel)
    kernel = torch.where(kind == PULSE, pulse, kernel)
    half = (size - 1) / 2
    inside = (x.abs() <= half) & (y.abs() <= half)
    kernel = kernel * inside
    return (kernel / kernel.sum(dim=(1, 2), keepdim=True)).to(torch.float32)
