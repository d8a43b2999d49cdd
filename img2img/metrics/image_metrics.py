"""The per-image accumulator of PSNR/SSIM over an evaluation set, mergeable across processes.

The scores themselves, and their convention, are :mod:`img2img.metrics.psnr_ssim`'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from torch import Tensor

from img2img.metrics.psnr_ssim import SCORES, score_batch


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

    KEYS = tuple(SCORES)  # psnr, ssim, psnr_y, ssim_y

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
        values = score_batch(pred, target, self.crop_border, self.keys)
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

