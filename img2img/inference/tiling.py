"""Tiles: where the windows of a large image go, how their outputs blend, and the canvas
that blends them in a band one tile row high.

With ``tile > 0`` an image is cut into ``tile x tile`` windows (``tile`` in input pixels,
already rounded up to what the network takes) that overlap by at least ``tile_overlap``
pixels, spread evenly so that the last one ends at the image edge. Each window's output
gets a weight that is 1 inside and, on each side that has a neighbour, falls to ~0 across
the overlap: a raised-cosine ramp over the middle half of the overlap, ~0
(:data:`RAMP_FLOOR`) in its outer quarter, where a window's own border effects are.
Weights are normalised by their sum, so the seams blend. (A linear ramp over the whole
overlap gives border pixels enough weight that a tiled SR output drifts visibly from the
untiled one; this profile keeps the two close.) Weights are separable, so they are kept
per axis (1-D arrays) and no full-size weight map exists.

For a network with a size multiple (a U-Net's ``2**num_downs``, a ResNet's 4),
:func:`plan_image` lays the tiles over the image padded exactly as a whole-image call
pads it, starting on multiples of that size (:func:`aligned_starts`), so that every tile
sees the pixels and the feature grid of the whole-image call; each tile also gets a core
(:func:`core_bounds`: the cores partition the image), over which normalisation
statistics are gathered.

A :class:`Canvas` accumulates one image's outputs in float32 in a band one tile row high;
rows that no later tile touches are finished and handed to the sink, so peak memory grows
with the tile size and the image width, not with the image area.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from img2img.errors import UserError

if TYPE_CHECKING:
    from img2img.inference.adapters import Sink, Source

# Output rows finished (clamped, colour-converted, written to the sink) at a time.
EMIT_ROWS = 256

# Smallest blending weight, so that every covered pixel has a positive total weight.
RAMP_FLOOR = 1e-6


def check_tiling(tile: int, tile_overlap: int | None, batch_size: int) -> None:
    """The tile size, overlap (None: the network's own) and batch size, checked (a
    UserError naming the one that is wrong)."""
    if tile < 0:
        raise UserError(f"tile: must be >= 0 (0: whole image), got {tile}")
    if tile_overlap is not None and tile_overlap < 0:
        raise UserError(f"tile overlap: must be >= 0, got {tile_overlap}")
    if tile and tile_overlap is not None and tile_overlap >= tile:
        raise UserError(
            f"tile overlap ({tile_overlap}) must be smaller than the tile size ({tile})"
        )
    if batch_size < 1:
        raise UserError(f"batch size: must be >= 1, got {batch_size}")


@dataclass
class TilePlan:
    """Where the tiles of one image go, in input pixels, and their blending weights along
    each axis in output pixels (``wy[i]`` for tile row i, ``wx[j]`` for tile column j)."""

    ys: list[int]
    xs: list[int]
    th: int
    tw: int
    scale: int
    wy: list[torch.Tensor] = field(repr=False)
    wx: list[torch.Tensor] = field(repr=False)
    #: Where the image sits in the padded canvas the tiles cover (``top``, ``left``) and
    #: that canvas's size (0: the image's own, unpadded).
    top: int = 0
    left: int = 0
    height: int = 0
    width: int = 0
    #: Each tile row's and column's core, relative to the tile: the cores partition the
    #: canvas (normalisation statistics are gathered over them).
    cy: list[tuple[int, int]] = field(default_factory=list, repr=False)
    cx: list[tuple[int, int]] = field(default_factory=list, repr=False)

    @property
    def single(self) -> bool:
        return len(self.ys) == 1 and len(self.xs) == 1

    @property
    def least_overlap(self) -> int:
        """The smallest overlap between neighbouring tiles (in input pixels)."""
        pairs = [a + self.th - b for a, b in zip(self.ys, self.ys[1:])]
        pairs += [a + self.tw - b for a, b in zip(self.xs, self.xs[1:])]
        return min(pairs, default=0)

    def core(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The core of tile (``row``, ``col``): (top, bottom, left, right) in its pixels."""
        return (*self.cy[row], *self.cx[col])


def tile_starts(length: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """Tile starts along one axis and the tile length: one tile when the axis fits, else
    the fewest tiles that overlap by at least ``overlap``, spread evenly, last at the end."""
    if tile <= 0 or length <= tile:
        return [0], length
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    return [math.floor(i * (length - tile) / (n - 1)) for i in range(n)], tile


def edge_ramp(distance: np.ndarray, overlap: float) -> np.ndarray:
    """Weight of a tile's pixel at ``distance`` from an interior edge shared over
    ``overlap`` pixels with a neighbour: ~0 in the outer quarter of the overlap (where the
    tile's own border effects live), a raised cosine over the middle half, 1 beyond.
    Two tiles' ramps over the same overlap sum to exactly 1."""
    margin = overlap / 4
    f = np.clip((distance - margin) / (overlap - 2 * margin), 0.0, 1.0)
    return np.maximum(np.sin(np.pi / 2 * f) ** 2, RAMP_FLOOR)


def blend_weights(starts: list[int], size: int, scale: int) -> list[torch.Tensor]:
    """Per-tile 1-D weights in output pixels: 1 inside, :func:`edge_ramp` over the overlap
    with each neighbour, normalised so that they sum to 1 at every position."""
    n_out = size * scale
    raw = []
    for i, start in enumerate(starts):
        pos = np.arange(n_out, dtype=np.float64) + 0.5
        w = np.ones(n_out)
        if i > 0:
            lo = (starts[i - 1] + size - start) * scale
            if lo > 0:
                w = np.minimum(w, edge_ramp(pos, lo))
        if i + 1 < len(starts):
            hi = (start + size - starts[i + 1]) * scale
            if hi > 0:
                w = np.minimum(w, edge_ramp(n_out - pos, hi))
        raw.append(w)
    total = np.zeros((starts[-1] + size) * scale)
    for start, w in zip(starts, raw):
        total[start * scale : start * scale + n_out] += w
    return [
        torch.from_numpy(w / total[s * scale : s * scale + n_out]).float()
        for s, w in zip(starts, raw)
    ]


def plan_tiles(height: int, width: int, tile: int, overlap: int, scale: int) -> TilePlan:
    """The :class:`TilePlan` of an image of ``height x width`` input pixels (``tile`` 0:
    one window, the whole image)."""
    ys, th = tile_starts(height, tile, overlap)
    xs, tw = tile_starts(width, tile, overlap)
    return TilePlan(ys, xs, th, tw, scale, blend_weights(ys, th, scale),
                    blend_weights(xs, tw, scale))


def aligned_starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Tile starts along an axis of ``length`` (a multiple of ``multiple``, as ``tile``
    is), each a multiple of ``multiple`` so that every tile's feature grid lines up with
    the whole image's, spread evenly, first at 0 and last at the end: the fewest tiles
    whose overlaps are at least ``overlap``, or, when aligned starts cannot give that
    much, one tile every ``multiple`` pixels."""
    if length <= tile:
        return [0]
    slots = (length - tile) // multiple
    n = max(2, math.ceil((length - overlap) / max(tile - overlap, 1)))
    while True:
        starts = sorted({round(i * slots / (n - 1)) * multiple for i in range(n)})
        least = min(a + tile - b for a, b in zip(starts, starts[1:]))
        if least >= overlap or n - 1 >= slots:
            return starts
        n += 1


def core_bounds(starts: list[int], size: int, multiple: int, length: int) -> list[tuple[int, int]]:
    """Each tile's core relative to its start: cut at the middle of every overlap (on a
    multiple of ``multiple``), so that the cores partition ``0 .. length``."""
    cuts = [0, *(((b + a + size) // 2) // multiple * multiple for a, b in zip(starts, starts[1:])), length]
    return [(cuts[i] - s, cuts[i + 1] - s) for i, s in enumerate(starts)]


def plan_image(height: int, width: int, tile: int, overlap: int, scale: int, multiple: int,
               padded: Callable[[int], int]) -> TilePlan:
    """The :class:`TilePlan` of an image for a network whose sides must be multiples of
    ``multiple`` (``padded`` gives the smallest side it takes). An image that fits in one
    tile is one window, the image itself (padded by the network call). A larger one is
    padded as a whole-image call pads it (``top``/``left``), and tiles of ``tile`` (a side
    the network takes) start on multiples of ``multiple`` across that canvas, so every
    tile sees exactly the pixels, and the feature grid, of the whole-image call."""
    if tile <= 0 or (height <= tile and width <= tile):
        return plan_tiles(height, width, 0, 0, scale)
    ph, pw = padded(height), padded(width)
    ys, xs = aligned_starts(ph, tile, overlap, multiple), aligned_starts(pw, tile, overlap, multiple)
    th, tw = min(tile, ph), min(tile, pw)
    return TilePlan(ys, xs, th, tw, scale, blend_weights(ys, th, scale), blend_weights(xs, tw, scale),
                    top=(ph - height) // 2, left=(pw - width) // 2, height=ph, width=pw,
                    cy=core_bounds(ys, th, multiple, ph), cx=core_bounds(xs, tw, multiple, pw))


#: One network input: a canvas and the (row, column) of one of its tiles.
Job = tuple["Canvas", int, int]


def jobs(canvases: list[Canvas]) -> Iterator[Job]:
    """Every tile of every canvas, each canvas's in raster order."""
    for canvas in canvases:
        for row in range(len(canvas.plan.ys)):
            for col in range(len(canvas.plan.xs)):
                yield canvas, row, col


def job_shape(job: Job) -> tuple[int, int]:
    """The input size of a job's tile (jobs of one shape can share a network call)."""
    return job[0].plan.th, job[0].plan.tw


class Canvas:
    """Blends one image's tile outputs in a float32 band one tile row high, and hands
    finished rows to ``finish(out, source, y0, y1, extras)`` and then the sink. Tiles must
    arrive in raster order."""

    def __init__(
        self,
        source: Source,
        sink: Sink,
        plan: TilePlan,
        channels: int,
        finish: Callable[..., torch.Tensor],
        extras: dict | None = None,
    ) -> None:
        self.source, self.sink, self.plan = source, sink, plan
        self.channels, self.finish = channels, finish
        #: The image's inputs beyond the image (see :mod:`img2img.inference.extras`).
        self.extras = extras or {}
        self.band: torch.Tensor | None = None
        self.band_top = 0
        self.done_in_row = 0

    def add(self, row: int, col: int, out: torch.Tensor) -> None:
        """The network output of tile (``row``, ``col``), blended in."""
        plan, s = self.plan, self.plan.scale
        if plan.single:
            self._emit(out, 0, out.shape[-2])
            return
        if self.band is None:
            self.band = out.new_zeros(self.channels, plan.th * s, (plan.width or self.source.width) * s)
            self.band_top = plan.ys[row] * s
        weight = plan.wy[row].to(out.device)[:, None] * plan.wx[col].to(out.device)[None, :]
        y0 = plan.ys[row] * s - self.band_top
        x0 = plan.xs[col] * s
        self.band[:, y0 : y0 + out.shape[-2], x0 : x0 + out.shape[-1]].addcmul_(out, weight)
        self.done_in_row += 1
        if self.done_in_row == len(plan.xs):
            self.done_in_row = 0
            self._row_done(row)

    def _row_done(self, row: int) -> None:
        plan, s, band = self.plan, self.plan.scale, self.band
        assert band is not None
        last = row + 1 == len(plan.ys)
        final_end = (plan.height or self.source.height) * s if last else plan.ys[row + 1] * s
        self._emit(band[:, : final_end - self.band_top], self.band_top, final_end)
        if last:
            self.band = None
            return
        shift = final_end - self.band_top
        carry = band.shape[1] - shift
        band[:, :carry] = band[:, shift:].clone()
        band[:, carry:] = 0
        self.band_top = final_end

    def _emit(self, out: torch.Tensor, y0: int, y1: int) -> None:
        # Rows y0:y1 of the (padded) canvas; only the image's part goes to the sink.
        s, top, left = self.plan.scale, self.plan.top * self.plan.scale, self.plan.left * self.plan.scale
        a, b = max(y0, top), min(y1, top + self.source.height * s)
        if b <= a:
            return
        out = out[:, a - y0 : b - y0, left : left + self.source.width * s]
        y0, y1 = a - top, b - top
        # In slices of rows, so the float copies that finishing makes stay small.
        for a in range(0, y1 - y0, EMIT_ROWS):
            b = min(a + EMIT_ROWS, y1 - y0)
            self.sink.write(y0 + a, y0 + b, self.finish(out[:, a:b], self.source, y0 + a, y0 + b, self.extras))
