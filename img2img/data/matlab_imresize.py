"""MATLAB-compatible bicubic ``imresize``: how super-resolution test inputs are made.

What MATLAB's ``imresize(img, scale)`` does with its default 'bicubic' method, for double
images, is reproduced here:

- the cubic convolution kernel with a = -0.5 (Keys);
- when downscaling (scale < 1) with antialiasing on (MATLAB's default), the kernel is
  stretched by 1/scale: ``h(x) = scale * cubic(scale * x)``, width ``4 / scale``;
- the output size is ``ceil(scale * input size)``; the weights of each output index are
  computed from the *given* scale (MATLAB's ``contributions``): output index x (1-based)
  maps to input coordinate ``u = x / scale + 0.5 * (1 - 1 / scale)``, the taps are
  ``floor(u - width / 2) + (0 .. ceil(width) + 1)``, weights are normalised to sum to 1,
  and the tap columns whose weight is zero for every output are removed;
- out-of-range taps read the image mirrored symmetrically (``[1..n, n..1]``, the edge
  pixel repeated);
- the two dimensions are resized one after the other, the one with the smaller scale
  first (rows first on a tie).

Each 1-D pass is a product with a dense (out x in) weight matrix built from those taps
(cached per size and scale), so numpy arrays and torch tensors run through BLAS without
Python loops. uint8 input is computed in float64 and rounded back to uint8, as MATLAB does.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["imresize", "resize_weights"]


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return inner + outer


def _contributions(
    in_length: int, out_length: int, scale: float, antialias: bool
) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's ``contributions``: (weights, 0-based indices), both (out_length, taps)."""
    kernel_width = 4.0
    stretch = scale < 1 and antialias
    if stretch:
        kernel_width = kernel_width / scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(scale * distance) if stretch else _cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric border: 1-based index i reads aux[(i - 1) mod 2n], aux = [1..n, n..1].
    aux = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
    mirrored = aux[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], mirrored[:, keep]


@lru_cache(maxsize=256)
def _weight_matrix(in_length: int, out_length: int, scale: float, antialias: bool) -> np.ndarray:
    weights, indices = _contributions(in_length, out_length, scale, antialias)
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    rows = np.repeat(np.arange(out_length), weights.shape[1])
    np.add.at(matrix, (rows, indices.ravel()), weights.ravel())
    matrix.setflags(write=False)
    return matrix


def resize_weights(
    in_length: int, out_length: int, scale: float | None = None, antialias: bool = True
) -> np.ndarray:
    """The (out_length x in_length) float64 matrix of one 1-D MATLAB bicubic pass."""
    if scale is None:
        scale = out_length / in_length
    return _weight_matrix(int(in_length), int(out_length), float(scale), bool(antialias))


def _plan(
    in_hw: tuple[int, int], scale: Any, output_size: Any
) -> tuple[tuple[float, float], tuple[int, int]]:
    if (scale is None) == (output_size is None):
        raise ValueError("give exactly one of scale and output_size")
    if scale is not None:
        sh, sw = (float(scale), float(scale)) if np.isscalar(scale) else map(float, scale)
        if sh <= 0 or sw <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        out_hw = (int(math.ceil(sh * in_hw[0])), int(math.ceil(sw * in_hw[1])))
    else:
        out_hw = (int(output_size[0]), int(output_size[1]))
        if out_hw[0] < 1 or out_hw[1] < 1:
            raise ValueError(f"output_size must be positive, got {output_size}")
        sh, sw = out_hw[0] / in_hw[0], out_hw[1] / in_hw[1]
    return (sh, sw), out_hw


def imresize(
    img: Any,
    scale: float | tuple[float, float] | None = None,
    output_size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> Any:
    """Resize like MATLAB's ``imresize(img, scale)`` / ``imresize(img, [h w])`` (bicubic).

    ``img``: numpy HxW or HxWxC (float, or uint8 which is rounded back to uint8), or a
    float torch tensor CxHxW or NxCxHxW. ``scale`` multiplies the size (0.25 makes an
    image 4x smaller); ``output_size`` is (height, width). Returns the same kind of object
    with the same dtype (float32 stays float32).
    """
    if hasattr(img, "detach"):
        return _imresize_torch(img, scale, output_size, antialias)
    array = np.asarray(img)
    if array.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC array, got shape {array.shape}")
    (sh, sw), (oh, ow) = _plan(array.shape[:2], scale, output_size)
    is_uint8 = array.dtype == np.uint8
    if array.dtype.kind != "f" and not is_uint8:
        raise TypeError(f"imresize takes float or uint8 arrays, got {array.dtype}")
    work = np.float32 if array.dtype == np.float32 else np.float64
    out = array.astype(work, copy=False)
    passes = [(0, sh, oh), (1, sw, ow)]
    passes.sort(key=lambda p: p[1])  # smaller scale first; stable: rows first on a tie
    for axis, s, length in passes:
        matrix = resize_weights(out.shape[axis], length, s, antialias).astype(work, copy=False)
        if axis == 0:
            out = np.tensordot(matrix, out, axes=(1, 0))
        else:
            out = np.moveaxis(np.tensordot(matrix, out, axes=(1, 1)), 0, 1)
    if is_uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out.astype(array.dtype, copy=False))


@lru_cache(maxsize=64)
def _torch_matrix(
    in_length: int, out_length: int, scale: float, antialias: bool, dtype: Any, device: str
) -> Any:
    import torch

    weights = resize_weights(in_length, out_length, scale, antialias)
    return torch.tensor(weights, dtype=dtype, device=device)


def _imresize_torch(img: Any, scale: Any, output_size: Any, antialias: bool) -> Any:
    import torch

    if not torch.is_floating_point(img):
        raise TypeError(f"imresize takes float tensors, got {img.dtype}")
    squeeze = img.ndim == 3
    if img.ndim not in (3, 4):
        raise ValueError(f"expected a CxHxW or NxCxHxW tensor, got shape {tuple(img.shape)}")
    x = img[None] if squeeze else img
    (sh, sw), (oh, ow) = _plan(tuple(x.shape[-2:]), scale, output_size)
    passes = [(0, sh, oh), (1, sw, ow)]
    passes.sort(key=lambda p: p[1])
    for axis, s, length in passes:
        in_length = x.shape[-2] if axis == 0 else x.shape[-1]
        matrix = _torch_matrix(in_length, length, s, antialias, x.dtype, str(x.device))
        x = torch.matmul(matrix, x) if axis == 0 else torch.matmul(x, matrix.T)
    return x[0] if squeeze else x
