"""The datasets: what one sample of each kind of data is, with seeded augmentation.

Every sample is a dict of CHW float32 tensors in [-1, 1] plus the path strings:

| dataset                     | data                                  | sample                               |
|-----------------------------|---------------------------------------|--------------------------------------|
| :class:`PairedDataset`      | A|B images, or A and B files by name  | ``A``, ``B``, ``A_path``, ``B_path`` |
| :class:`UnpairedDataset`    | two unrelated folders                 | ``A``, ``B``, ``A_path``, ``B_path`` |
| :class:`PhotoDataset`       | any photos                            | ``B`` (RGB), ``B_path``              |
| :class:`~img2img.data.sr.SRDataset` | HR images (LR on the fly or files) | ``A`` (LR), ``B`` (HR), paths |
| :class:`SingleFolderDataset`| whole images, for predict and eval    | ``A``, ``A_path``                    |

``A`` is always the network input (with ``data.direction: BtoA`` the right half / the
``B`` folder becomes ``A``). Which dataset a method trains on, and how its files are found
(:mod:`img2img.data.splits`), is its task's choice.

Deterministic augmentation: ``dataset[(index, seed)]`` draws every random choice of that
sample (crop position, flip, rotation, the random ``B`` of unpaired data) from generators
seeded by ``seed`` alone, so the same key gives the identical sample in any process or
worker; ``dataset[index]`` uses ``seed = index``. The val split has no randomness.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from img2img.data.header import DEFAULT_MAX_PIXELS
from img2img.data.integrity import apply_on_error, inspect_files
from img2img.data.io import load_image, scan_images, to_float01
from img2img.data.transforms import (
    build_augment,
    prepare_geometry,
    run_seeded,
    to_grey,
    to_tensor,
)
from img2img.errors import DataError
from img2img.log import get_logger

log = get_logger(__name__)

_SEED_MASK = (1 << 64) - 1


def parse_key(key: Any, length: int) -> tuple[int, int]:
    """``index`` or ``(index, seed)`` -> (index in range, seed >= 0)."""
    if isinstance(key, (tuple, list)):
        if len(key) != 2:
            raise TypeError(f"a dataset key is an index or (index, seed), got {key!r}")
        index, seed = operator.index(key[0]), int(key[1])
    else:
        index = operator.index(key)
        seed = None
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of {length}")
    return index, (index if seed is None else seed) & _SEED_MASK


def child_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent seeds derived from one sample seed (numpy's SeedSequence)."""
    state = np.random.SeedSequence(seed).generate_state(count, np.uint64)
    return [int(s) >> 1 for s in state]


def same_dtype(*images: np.ndarray) -> list[np.ndarray]:
    if len({img.dtype for img in images}) == 1:
        return list(images)
    return [to_float01(img) for img in images]


_WORKER_PID: int | None = None


def _limit_worker_threads() -> None:
    """In a DataLoader worker, keep OpenCV on one thread as torch already is (once per
    process), so that workers do not oversubscribe the cores."""
    global _WORKER_PID
    pid = os.getpid()
    if _WORKER_PID == pid:
        return
    _WORKER_PID = pid
    if torch.utils.data.get_worker_info() is not None:
        import cv2

        cv2.setNumThreads(1)


class ImageDataset(Dataset):
    """Shared reading options and the (index, seed) protocol.

    ``skip_bad`` (set for training sets under ``data.on_error=skip``): a file that passed
    the check before training but fails when decoded (a JPEG whose compressed data is
    corrupt yet complete) is skipped with a warning naming it, and the next sample (same
    seed) is served in its place, so the run goes on; otherwise the DataError stands.
    """

    skip_bad = False

    def __init__(self, *, max_pixels: int | None = None, alpha: str = "white") -> None:
        self.max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
        self.alpha = alpha
        self._bad_seen: set[str] = set()

    def _load(self, path: Path) -> np.ndarray:
        image, _ = load_image(path, max_pixels=self.max_pixels, alpha=self.alpha)
        return image

    def _geometry(self, image: np.ndarray, path: Path | str, train: bool) -> np.ndarray:
        """:func:`prepare_geometry` with this dataset's settings and pixel limit."""
        return prepare_geometry(
            image, self.preprocess, self.load_size, self.crop_size, train,
            max_pixels=self.max_pixels, source=str(path),
        )

    def __len__(self) -> int:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __getitem__(self, key: Any) -> dict[str, Any]:
        index, seed = parse_key(key, len(self))
        _limit_worker_threads()
        if not self.skip_bad:
            return self.sample(index, seed)
        first_error = None
        for step in range(len(self)):
            try:
                return self.sample((index + step) % len(self), seed)
            except DataError as err:
                first_error = first_error or err
                if str(err) not in self._bad_seen:
                    self._bad_seen.add(str(err))
                    log.warning("skipping a bad file (data.on_error=skip): %s", err)
        raise DataError(f"no readable sample left in the data set; the first error was: {first_error}")

    def sample(self, index: int, seed: int) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError


# --------------------------------------------------------------------------- paired


class PairedDataset(ImageDataset):
    """pix2pix data: aligned A|B images (split in the middle; an odd last column is
    dropped so both halves have the same width), or (A file, B file) pairs.

    The same resize, random crop and flip are applied to both sides.
    """

    def __init__(
        self,
        items: Sequence[Path] | Sequence[tuple[Path, Path]],
        *,
        aligned: bool = True,
        direction: str = "AtoB",
        preprocess: str = "resize_and_crop",
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        train: bool = True,
        in_channels: int = 3,
        out_channels: int = 3,
        max_pixels: int | None = None,
        alpha: str = "white",
    ) -> None:
        super().__init__(max_pixels=max_pixels, alpha=alpha)
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be AtoB or BtoA, got {direction!r}")
        self.items = list(items)
        self.aligned = aligned
        self.direction = direction
        self.preprocess = preprocess
        self.load_size = load_size
        self.crop_size = crop_size
        self.train = train
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.augment = build_augment(preprocess, crop_size, flip, ("B",)) if train else None

    def __len__(self) -> int:
        return len(self.items)

    def _pair(self, index: int) -> tuple[np.ndarray, np.ndarray, str, str]:
        item = self.items[index]
        if self.aligned:
            image = self._load(item)
            half = image.shape[1] // 2
            if half < 1:
                raise DataError(f"{item}: too narrow ({image.shape[1]} px) to hold A|B side by side")
            left, right = image[:, :half], image[:, half : 2 * half]
            left_path = right_path = str(item)
        else:
            a_file, b_file = item
            left, right = self._load(a_file), self._load(b_file)
            if left.shape[:2] != right.shape[:2]:
                raise DataError(
                    f"paired images differ in size: {a_file} is {left.shape[1]}x{left.shape[0]}"
                    f" but {b_file} is {right.shape[1]}x{right.shape[0]}"
                )
            left_path, right_path = str(a_file), str(b_file)
        if self.direction == "BtoA":
            return right, left, right_path, left_path
        return left, right, left_path, right_path

    def sample(self, index: int, seed: int) -> dict[str, Any]:
        a, b, a_path, b_path = self._pair(index)
        a, b = same_dtype(a, b)
        a = self._geometry(a, a_path, self.train)
        b = self._geometry(b, b_path, self.train)
        out = run_seeded(self.augment, seed, a, B=b)
        ta, tb = to_tensor(out["image"]), to_tensor(out["B"])
        if self.in_channels == 1:
            ta = to_grey(ta)
        if self.out_channels == 1:
            tb = to_grey(tb)
        return {"A": ta, "B": tb, "A_path": a_path, "B_path": b_path}


# --------------------------------------------------------------------------- unpaired


class UnpairedDataset(ImageDataset):
    """CycleGAN data: two unrelated folders.

    Train: length max(|A|, |B|); sample i takes A[i % |A|] and a B drawn at random (from
    the sample's seed); A and B get independent crops and flips. Val: length |A|; sample i
    pairs A[i] with B[i % |B|], without randomness.
    """

    def __init__(
        self,
        paths_a: Sequence[Path],
        paths_b: Sequence[Path],
        *,
        preprocess: str = "resize_and_crop",
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        train: bool = True,
        in_channels: int = 3,
        out_channels: int = 3,
        max_pixels: int | None = None,
        alpha: str = "white",
    ) -> None:
        super().__init__(max_pixels=max_pixels, alpha=alpha)
        self.paths_a = list(paths_a)
        self.paths_b = list(paths_b)
        if not self.paths_a or not self.paths_b:
            raise DataError("unpaired data needs at least one image in each of A and B")
        self.preprocess = preprocess
        self.load_size = load_size
        self.crop_size = crop_size
        self.train = train
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.augment = build_augment(preprocess, crop_size, flip) if train else None

    def __len__(self) -> int:
        if self.train:
            return max(len(self.paths_a), len(self.paths_b))
        return len(self.paths_a)

    def b_index(self, index: int, seed: int) -> int:
        """Which B image sample (index, seed) uses."""
        if not self.train:
            return index % len(self.paths_b)
        return int(np.random.default_rng(seed).integers(len(self.paths_b)))

    def _one(self, path: Path, seed: int) -> np.ndarray:
        image = self._geometry(self._load(path), path, self.train)
        return run_seeded(self.augment, seed, image)["image"]

    def domain_image(self, domain: str, index: int) -> tuple[torch.Tensor, str]:
        """Image ``index`` of domain ``"A"`` or ``"B"`` alone, preprocessed as validation
        images are (for FID/KID, which need every image of each domain exactly once)."""
        paths = self.paths_a if domain == "A" else self.paths_b
        channels = self.in_channels if domain == "A" else self.out_channels
        path = paths[index]
        image = to_tensor(self._geometry(self._load(path), path, train=False))
        return (to_grey(image) if channels == 1 else image), str(path)

    def sample(self, index: int, seed: int) -> dict[str, Any]:
        a_path = self.paths_a[index % len(self.paths_a)]
        b_path = self.paths_b[self.b_index(index, seed)]
        seed_a, seed_b = child_seeds(seed, 2)
        ta, tb = to_tensor(self._one(a_path, seed_a)), to_tensor(self._one(b_path, seed_b))
        if self.in_channels == 1:
            ta = to_grey(ta)
        if self.out_channels == 1:
            tb = to_grey(tb)
        return {"A": ta, "B": tb, "A_path": str(a_path), "B_path": str(b_path)}


# --------------------------------------------------------------------------- photos


class PhotoDataset(ImageDataset):
    """Any folder of photos, one image per sample (``B``), with the paired datasets'
    preprocessing; what the network sees of it (Lab, a hole, noise) is the task's business."""

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        preprocess: str = "resize_and_crop",
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        train: bool = True,
        max_pixels: int | None = None,
        alpha: str = "white",
    ) -> None:
        super().__init__(max_pixels=max_pixels, alpha=alpha)
        self.paths = list(paths)
        self.preprocess = preprocess
        self.load_size = load_size
        self.crop_size = crop_size
        self.train = train
        self.augment = build_augment(preprocess, crop_size, flip) if train else None

    def __len__(self) -> int:
        return len(self.paths)

    def sample(self, index: int, seed: int) -> dict[str, Any]:
        path = self.paths[index]
        image = self._geometry(self._load(path), path, self.train)
        image = run_seeded(self.augment, seed, image)["image"]
        return {"B": to_tensor(image), "B_path": str(path)}


# --------------------------------------------------------------------------- single folder


class SingleFolderDataset(ImageDataset):
    """Whole images of a folder (recursive), a single file, or a list of files, as they
    are: ``{"A": 3xHxW in [-1, 1], "A_path": str}``. For prediction and evaluation.

    Files are checked when the dataset is made (:func:`~img2img.data.integrity.check_files`):
    ``on_error="raise"`` lists every bad file in one DataError, ``"skip"`` drops them.
    """

    def __init__(
        self,
        root: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        max_pixels: int | None = None,
        alpha: str = "white",
        on_error: str = "raise",
    ) -> None:
        super().__init__(max_pixels=max_pixels, alpha=alpha)
        if isinstance(root, (str, os.PathLike)):
            root = Path(root).expanduser()
            paths = [root] if root.is_file() else scan_images(root)
        else:
            paths = [Path(p) for p in root]
            if not paths:
                raise DataError("no image files given")
        sizes, bad = inspect_files(paths, self.max_pixels)
        apply_on_error(bad, on_error, where=str(root) if not isinstance(root, list) else "the inputs")
        self.paths = [p for p in paths if p in sizes]
        self.sizes = [sizes[p] for p in self.paths]
        if not self.paths:
            raise DataError(f"no readable images in {root}")

    def __len__(self) -> int:
        return len(self.paths)

    def sample(self, index: int, seed: int) -> dict[str, Any]:
        path = self.paths[index]
        return {"A": to_tensor(self._load(path)), "A_path": str(path)}
