"""JPEG compression and decompression of a batch on its device, one quality per image:
the codec of Real-ESRGAN's degradations (BasicSR's ``DiffJPEG`` as Real-ESRGAN runs it,
``differentiable=False``).

YCbCr (JFIF, full range), chroma subsampled 2x2 by averaging, 8x8 blocks, the DCT, the
standard quantization tables (ITU-T T.81 Annex K, in natural order) scaled for the quality
as libjpeg scales them (``5000 / q`` below 50, ``200 - 2q`` above, ``floor((t * s + 50) /
100)`` clipped to 1..255), coefficients rounded to integers, then the way back with the
chroma repeated 2x2, clipped to [0, 1]. Sides are padded to a multiple of 16 by repeating
the last row and column (libjpeg's padding) and cropped back.

Why not kornia's codec: it is built for gradients, so it replaces rounding by a smooth
polynomial (a coefficient keeps up to 1/8 of a quantization step it should lose) and
antialiases the chroma with a Gaussian; the degradation wants the integer coefficients
a JPEG file holds, and on the CPU this codec is several times faster (``tools/bench.py``).
kornia's colour conversion is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import kornia
import torch
import torch.nn.functional as F

_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
) + ((99,) * 8,) * 4


def quant_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The luma and chroma tables (N x 8 x 8) libjpeg writes for each quality (1..100)."""
    q = quality.to(torch.float64).clamp(1, 100)[:, None, None]
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    tables = []
    for base in (_LUMA, _CHROMA):
        t = torch.tensor(base, dtype=torch.float64, device=quality.device)
        tables.append(torch.floor((t * scale + 50.0) / 100.0).clamp(1, 255))
    return tables[0], tables[1]


def _dct_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The orthonormal 8-point DCT-II (JPEG's FDCT is its 2-D form)."""
    k = torch.arange(8, dtype=torch.float64)
    m = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m.to(device=device, dtype=dtype)


def _code(plane: torch.Tensor, table: torch.Tensor, dct: torch.Tensor) -> torch.Tensor:
    """One N x H x W plane (levels 0..255, sides multiples of 8) through DCT,
    quantization and back."""
    n, h, w = plane.shape
    blocks = (plane - 128.0).view(n, h // 8, 8, w // 8, 8).transpose(2, 3)  # N h w 8 8
    coeff = dct @ blocks @ dct.T
    table = table[:, None, None].to(plane.dtype)
    coeff = torch.round(coeff / table) * table
    blocks = dct.T @ coeff @ dct + 128.0
    return blocks.transpose(2, 3).reshape(n, h, w)


def jpeg(x: torch.Tensor, qualities: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """N3HW RGB in [0, 1] -> the same after JPEG at ``qualities`` (one per image)."""
    quality = torch.as_tensor(qualities, dtype=torch.float64, device=x.device).reshape(-1)
    if quality.numel() != x.shape[0]:
        raise ValueError(f"one JPEG quality per image: {quality.numel()} for {x.shape[0]} images")
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % 16, -width % 16
    image = F.pad(x.clamp(0, 1), (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x.clamp(0, 1)
    ycc = kornia.color.rgb_to_ycbcr(image) * 255.0
    luma_table, chroma_table = quant_tables(quality)
    dct = _dct_matrix(x.device, x.dtype)
    y = _code(ycc[:, 0], luma_table, dct)
    chroma = F.avg_pool2d(ycc[:, 1:], 2)
    n, _, ch, cw = chroma.shape
    coded = _code(chroma.reshape(n * 2, ch, cw), chroma_table.repeat_interleave(2, dim=0), dct)
    chroma = F.interpolate(coded.view(n, 2, ch, cw), scale_factor=2, mode="bilinear", align_corners=False)
    rgb = kornia.color.ycbcr_to_rgb(torch.cat([y[:, None], chroma], dim=1) / 255.0)
    return rgb[..., :height, :width].clamp(0, 1)
