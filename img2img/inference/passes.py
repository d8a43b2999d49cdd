"""Running the tiles of a set of images through the network, and choosing their overlap.

**Overlap.** A tile's output differs from the whole image's near the tile's border, as
far as the network sees: :func:`img2img.nets.receptive.reach` measures that difference
against the distance to a border. :func:`border_reach` is the distance beyond which it
stays below :data:`LEVEL` (0.01 in [0, 1] units: the 40 dB of :data:`TARGET_DB`), and
:func:`needed_overlap` twice that, so that the blend (which gives each tile's pixels
near its border little weight) takes every pixel from a tile that saw it from far enough.
``tile_overlap=None`` (the default) uses it; an overlap or a tile too small for it gets
one warning that says what would do (:func:`warn_if_short`).

**Norm-consistent tiles.** When the network normalises by image statistics (instance
norm, group norm, batch norm in train mode), the statistics are first gathered over the
whole image, tile by tile, one layer per pass (:class:`img2img.nets.normstats.NormStats`;
each pass runs the network only up to the layer it gathers), and the tiled pass then
normalises every tile with its image's statistics. Images that fit in one tile run as
they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from img2img.inference.extras import batch_extras, cut_extras
from img2img.inference.tiling import Canvas, Job, jobs
from img2img.log import get_logger
from img2img.nets.contract import pad_index
from img2img.nets.normstats import NormStats
from img2img.nets.receptive import Reach

log = get_logger(__name__)

#: The agreement with the whole-image result that tiling aims for (PSNR, peak 1).
TARGET_DB = 40.0
#: A tile border must move the output by less than this (RMS, [0, 1] units) where the
#: blend takes it from that tile: 10 ** (-TARGET_DB / 20).
LEVEL = 10 ** (-TARGET_DB / 20)


# --------------------------------------------------------------------------- overlap


def border_reach(reach: Reach) -> int | None:
    """The distance from a tile border (input pixels) beyond which the border moves the
    output by less than :data:`LEVEL`; None when it never does within the probe."""
    above = np.nonzero(reach.error >= LEVEL)[0]
    if len(above) == 0:
        return 0
    last = int(above[-1]) + 1
    return None if last >= len(reach.error) else last


def needed_overlap(reach: Reach, multiple: int = 1) -> int | None:
    """The overlap a network needs: twice :func:`border_reach`, rounded up to a multiple
    of ``multiple``; None when the network sees past what the probe measures."""
    distance = border_reach(reach)
    return None if distance is None else -(-2 * distance // multiple) * multiple


def auto_overlap(reach: Reach, tile: int, multiple: int) -> int:
    """The overlap tiles of ``tile`` pixels get by default: what the network needs, at
    most what the tile allows (aligned tiles step by at least ``multiple``)."""
    need = needed_overlap(reach, multiple)
    return tile - multiple if need is None else min(need, tile - multiple)


def warn_if_short(reach: Reach, tile: int, overlap: int, multiple: int) -> bool:
    """One warning, saying what would do, when tiles of ``tile`` pixels that overlap by
    ``overlap`` (the least of a plan) are too small for the network; whether it warned."""
    need = needed_overlap(reach, multiple)
    if need is not None and overlap >= need:
        return False
    if need is None:
        sees = f"more than {len(reach.error)} px"
        advice = "run whole images (tile 0), or the largest tiles that fit"
    else:
        sees = f"{border_reach(reach)} px"
        advice = f"use --tile-overlap {need} (tile_overlap={need})"
        if need > tile - multiple:
            advice += f" with tiles of at least {need + multiple} px"
    log.warning("tiles of %d px overlapping by %d px may differ from the whole-image result by more "
                "than %.0f dB allows: a tile border changes this network's output up to %s away; %s",
                tile, overlap, TARGET_DB, sees, advice)
    return True


# --------------------------------------------------------------------------- the passes


def _window(job: Job) -> tuple[slice, slice] | tuple[torch.Tensor, torch.Tensor]:
    """The image rows and columns of a job's tile: slices, or index tensors that
    reflection-pad as the whole-image call pads when the plan covers a padded canvas."""
    canvas, row, col = job
    plan, src = canvas.plan, canvas.source
    y0, x0 = plan.ys[row], plan.xs[col]
    if not plan.height:
        return slice(y0, y0 + plan.th), slice(x0, x0 + plan.tw)
    rows = pad_index(src.height, plan.top, plan.height - src.height - plan.top)[y0 : y0 + plan.th]
    cols = pad_index(src.width, plan.left, plan.width - src.width - plan.left)[x0 : x0 + plan.tw]
    return rows, cols


def tile_input(job: Job, device: torch.device) -> torch.Tensor:
    """The input pixels of a job's tile (3 x th x tw in [0, 1]), reflection-padded as the
    whole-image call pads them when the plan covers a padded canvas."""
    src = job[0].source
    rows, cols = _window(job)
    if isinstance(rows, slice):
        return src.crop(rows.start, rows.stop, cols.start, cols.stop, device)
    return src.crop_indexed(rows, cols, device)


def tile_extras(batch: list[Job], device: torch.device) -> dict[str, torch.Tensor] | None:
    """The inputs beyond the image of a batch of tiles (see :mod:`img2img.inference.extras`):
    global ones per image, spatial ones cut like :func:`tile_input`; None when there are none."""
    return batch_extras([cut_extras(job[0].extras, *_window(job), device) for job in batch])


def _shape(job: Job) -> tuple[int, int, bool]:
    plan = job[0].plan
    return plan.th, plan.tw, plan.single


def batches(todo: list[Job], size: int) -> Iterator[list[Job]]:
    """Consecutive jobs of one tile shape (and all tiled, or all whole images), ``size``
    at most."""
    batch: list[Job] = []
    for job in todo:
        if batch and (len(batch) == size or _shape(job) != _shape(batch[0])):
            yield batch
            batch = []
        batch.append(job)
    if batch:
        yield batch


def _call(batch: list[Job], forward: Callable, device: torch.device, norm: NormStats | None) -> torch.Tensor | None:
    tiles = torch.stack([tile_input(job, device) for job in batch])
    extras = tile_extras(batch, device)
    if not norm:
        return forward(tiles, extras)
    tiled = not batch[0][0].plan.single
    keys = [job[0] if tiled else None for job in batch]
    norm.set_batch(keys, [job[0].plan.core(job[1], job[2]) if tiled else (0, 0, 0, 0) for job in batch],
                   (batch[0][0].plan.th, batch[0][0].plan.tw))
    return norm.call(forward, tiles, extras)


def gather_statistics(norm: NormStats, tiled: list[Job], batch_size: int, forward: Callable,
                      device: torch.device) -> int:
    """Gather the normalisation statistics of every tiled image over its tiles' cores,
    one layer per pass (see :mod:`img2img.nets.normstats`); returns the number of passes."""
    passes = 0
    while not norm.complete:
        with norm.gathering():
            for batch in batches(tiled, batch_size):
                _call(batch, forward, device, norm)
        passes += 1
    return passes


def run_tiles(canvases: list[Canvas], batch_size: int, forward: Callable, device: torch.device,
              net: torch.nn.Module, consistent_norm: bool = True) -> None:
    """Every tile of every canvas through ``forward`` and into its canvas; with
    ``consistent_norm``, tiled images are normalised with their whole-image statistics."""
    todo = list(jobs(canvases))
    tiled = [job for job in todo if not job[0].plan.single]
    with NormStats(net) as norm:
        if not (consistent_norm and norm and tiled):
            norm = None
        else:
            passes = gather_statistics(norm, tiled, batch_size, forward, device)
            log.debug("normalisation statistics of %d layers gathered in %d passes", len(norm.layers), passes)
        for batch in batches(todo, batch_size):
            if norm:
                with norm.applying():
                    out = _call(batch, forward, device, norm)
            else:
                out = _call(batch, forward, device, None)
            for (canvas, row, col), tile_out in zip(batch, out):
                canvas.add(row, col, tile_out)
