"""HR photos for LR made on the training device (the real-world degradation model of
:mod:`img2img.data.degradations`): each sample carries its seed, from which the device
draws that image's degradation.

Train: a ``crop_size`` square of the HR image at a random place (an image smaller than
that on a side is first padded by reflection, without repeating the edge, as Real-ESRGAN
pads to its 400 px), then flips (``flip``) or the 8 symmetries of the square (``rot90``).
Val: the whole image, mod-cropped to a multiple of ``scale``, and its LR file when the
item names one (then nothing is degraded).

Sample: ``B`` (3xHxW in [-1, 1]), ``B_path``, ``seed`` (an int below 2**63, the key's seed:
``dataset[index]`` gives ``seed = index``, so an evaluation image is degraded the same way
every time), and ``A``/``A_path`` for a given LR file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from img2img.data.datasets import ImageDataset, child_seeds
from img2img.data.sr import load_hr_and_lr
from img2img.data.transforms import build_sr_augment, random_crop_box, run_seeded, to_tensor

_SEED_BITS = (1 << 63) - 1  # a seed that collates into an int64 tensor


class HRCropDataset(ImageDataset):
    def __init__(
        self,
        items: Sequence[tuple[Path, Path | None]],
        *,
        scale: int = 4,
        crop_size: int = 400,
        flip: bool = True,
        rot90: bool = False,
        train: bool = True,
        max_pixels: int | None = None,
        alpha: str = "white",
    ) -> None:
        super().__init__(max_pixels=max_pixels, alpha=alpha)
        if crop_size % scale:
            raise ValueError(f"crop_size {crop_size} is not a multiple of the scale {scale}")
        self.items = [(Path(hr), None if lr is None else Path(lr)) for hr, lr in items]
        self.scale = scale
        self.crop_size = crop_size
        self.train = train
        self.augment = build_sr_augment(flip, rot90, extra_images=()) if train else None

    def __len__(self) -> int:
        return len(self.items)

    def _crop(self, image: np.ndarray, seed: int) -> np.ndarray:
        side = self.crop_size
        height, width = image.shape[:2]
        if height < side or width < side:
            pad = ((0, max(0, side - height)), (0, max(0, side - width)), (0, 0))
            image = np.pad(image, pad, mode="reflect" if min(height, width) > 1 else "edge")
            height, width = image.shape[:2]
        top, left = random_crop_box(np.random.default_rng(seed), height, width, side)
        return image[top : top + side, left : left + side]

    def sample(self, index: int, seed: int) -> dict[str, Any]:
        hr_path, lr_path = self.items[index]
        out: dict[str, Any] = {"B_path": str(hr_path), "seed": seed & _SEED_BITS}
        if self.train:
            crop_seed, aug_seed = child_seeds(seed, 2)
            patch = run_seeded(self.augment, aug_seed, self._crop(self._load(hr_path), crop_seed))["image"]
            out["B"] = to_tensor(patch)
            return out
        hr, lr = load_hr_and_lr(self._load, hr_path, lr_path, self.scale)
        out["B"] = to_tensor(hr)
        if lr is not None:
            out["A"], out["A_path"] = to_tensor(lr), str(lr_path)
        return out
