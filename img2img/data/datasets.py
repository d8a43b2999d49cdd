"""The datasets of the four jobs, and :func:`build_dataset` which picks one from a config.

Every sample is a dict of CHW float32 tensors in [-1, 1] plus the path strings:

| task          | dataset               | sample                                   |
|---------------|-----------------------|------------------------------------------|
| pix2pix       | :class:`PairedDataset`      | ``A``, ``B``, ``A_path``, ``B_path`` |
| cyclegan      | :class:`UnpairedDataset`    | ``A``, ``B``, ``A_path``, ``B_path`` |
| srgan         | :class:`SRDataset`          | ``A`` (LR), ``B`` (HR), paths        |
| colorization  | :class:`ColorizationDataset`| ``B`` (RGB), ``B_path``              |
| (predict/eval)| :class:`SingleFolderDataset`| ``A``, ``A_path``                    |

``A`` is always the network input (with ``data.direction: BtoA`` the right half / the
``B`` folder becomes ``A``).

Deterministic augmentation: ``dataset[(index, seed)]`` draws every random choice of that
sample (crop position, flip, rotation, the random ``B`` of unpaired data) from generators
seeded by ``seed`` alone, so the same key gives the identical sample in any process or
worker; ``dataset[index]`` uses ``seed = index``. The val split has no randomness.
"""

from __future__ import annotations

import dataclasses
import operator
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from img2img.config import short_repr
from img2img.data.io import (
    DEFAULT_MAX_PIXELS,
    apply_on_error,
    inspect_files,
    load_image,
    scan_images,
    to_float01,
)
from img2img.data.matlab_imresize import imresize
from img2img.data.transforms import (
    build_augment,
    build_sr_augment,
    check_geometry,
    prepare_geometry,
    random_crop_box,
    run_seeded,
    to_grey,
    to_tensor,
)
from img2img.errors import ConfigError, DataError
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


def _child_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent seeds derived from one sample seed (numpy's SeedSequence)."""
    state = np.random.SeedSequence(seed).generate_state(count, np.uint64)
    return [int(s) >> 1 for s in state]


def _same_dtype(*images: np.ndarray) -> list[np.ndarray]:
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


class _ImageDataset(Dataset):
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


class PairedDataset(_ImageDataset):
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
        a, b = _same_dtype(a, b)
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


class UnpairedDataset(_ImageDataset):
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
        seed_a, seed_b = _child_seeds(seed, 2)
        ta, tb = to_tensor(self._one(a_path, seed_a)), to_tensor(self._one(b_path, seed_b))
        if self.in_channels == 1:
            ta = to_grey(ta)
        if self.out_channels == 1:
            tb = to_grey(tb)
        return {"A": ta, "B": tb, "A_path": str(a_path), "B_path": str(b_path)}


# --------------------------------------------------------------------------- super-resolution


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    """Cut the bottom/right rows and columns so both sides are multiples of ``scale``."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


def quantize_like(lr: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Clip to [0, 1]; an 8-bit source's LR is rounded to 8 bits, as a saved LR file would
    be. Deeper sources (16-bit, float: the reader gives them as float32) keep a float LR."""
    lr = np.clip(lr, 0.0, 1.0)
    if like.dtype == np.uint8:
        return np.rint(lr * 255.0).astype(np.uint8)
    return lr.astype(np.float32)


def _unit_chw(image: np.ndarray) -> torch.Tensor:
    """HxWxC uint8/float array (any strides) -> CxHxW float32 tensor in [0, 1]."""
    if image.dtype != np.uint8:
        return torch.from_numpy(np.ascontiguousarray(to_float01(image))).permute(2, 0, 1)
    image = np.ascontiguousarray(image)
    if not image.flags.writeable:  # e.g. np.asarray of a PIL image; torch wants writable memory
        image = image.copy()
    chw = torch.from_numpy(image).permute(2, 0, 1)
    return chw.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)


def make_lr(hr: np.ndarray, scale: int, quantize: bool = True) -> np.ndarray:
    """MATLAB-bicubic downscale of a (mod-cropped) HR image, quantised like the source."""
    lr = imresize(_unit_chw(hr), 1.0 / scale).permute(1, 2, 0).numpy()
    return quantize_like(lr, hr) if quantize else np.ascontiguousarray(lr)


def _check_gt_size(gt_size: int, scale: int) -> None:
    if gt_size % scale:
        raise ConfigError(
            f"data.gt_size: {gt_size} is not a multiple of data.scale ({scale}); use e.g. "
            f"{gt_size - gt_size % scale} or {gt_size - gt_size % scale + scale}"
        )


def check_data_settings(config: Any) -> None:
    """The settings no data set of ``config`` could be built with (beyond the config
    schema's own checks): one ConfigError, before any file is read."""
    if config.task == "srgan":
        _check_gt_size(config.data.gt_size, config.data.scale)


class SRDataset(_ImageDataset):
    """Super-resolution data: HR images; LR made by MATLAB-bicubic downscaling on the fly,
    or read from matching files.

    HR is mod-cropped to a multiple of ``scale``. Train: a random ``gt_size`` HR patch on
    the LR grid and the matching LR patch, then flips/rotations (``flip``, ``rot90``) on
    both. Val: the whole mod-cropped HR and its LR.

    On-the-fly LR of a patch: the HR patch plus a margin of ``2 * scale`` pixels on each
    side (clipped at the image border) is downscaled and the margin cut away, so the LR
    patch equals the same window of the LR of the whole image (the bicubic kernel reaches
    1.5 * scale + 0.5 HR pixels beyond a patch): no border effect. With ``quantize`` (the
    default) LR is rounded to the bit depth of the HR file (1/255 for 8-bit), exactly as
    an LR file saved by MATLAB/BasicSR would hold it.
    """

    def __init__(
        self,
        items: Sequence[tuple[Path, Path | None]],
        *,
        scale: int = 4,
        gt_size: int = 128,
        flip: bool = True,
        rot90: bool = False,
        train: bool = True,
        quantize: bool = True,
        max_pixels: int | None = None,
        alpha: str = "white",
    ) -> None:
        super().__init__(max_pixels=max_pixels, alpha=alpha)
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        if train:
            _check_gt_size(gt_size, scale)
        self.items = [(Path(hr), None if lr is None else Path(lr)) for hr, lr in items]
        self.scale = scale
        self.gt_size = gt_size
        self.train = train
        self.quantize = quantize
        self.augment = build_sr_augment(flip, rot90) if train else None

    def __len__(self) -> int:
        return len(self.items)

    def _read_lr(self, hr_path: Path, lr_path: Path, hr: np.ndarray) -> np.ndarray:
        lr = self._load(lr_path)
        expected = (hr.shape[0] // self.scale, hr.shape[1] // self.scale)
        if lr.shape[:2] != expected:
            raise DataError(
                f"LR/HR size mismatch: {lr_path} is {lr.shape[1]}x{lr.shape[0]} but {hr_path} "
                f"(mod-cropped to {hr.shape[1]}x{hr.shape[0]}) needs {expected[1]}x{expected[0]} "
                f"at x{self.scale}"
            )
        return lr

    def _lr_patch(self, hr: np.ndarray, top: int, left: int, lq: int) -> np.ndarray:
        s = self.scale
        margin = 2  # LR pixels of context on each side
        t0, l0 = max(0, top - margin), max(0, left - margin)
        t1 = min(hr.shape[0] // s, top + lq + margin)
        l1 = min(hr.shape[1] // s, left + lq + margin)
        region = hr[t0 * s : t1 * s, l0 * s : l1 * s]
        # torch, not numpy, does the products: in a DataLoader worker torch is limited to
        # one thread, while numpy's BLAS would start threads of its own on every core.
        lr = imresize(_unit_chw(region), 1.0 / s).permute(1, 2, 0).numpy()
        lr = lr[top - t0 : top - t0 + lq, left - l0 : left - l0 + lq]
        return quantize_like(lr, hr) if self.quantize else np.ascontiguousarray(lr)

    def sample(self, index: int, seed: int) -> dict[str, Any]:
        hr_path, lr_path = self.items[index]
        hr = mod_crop(self._load(hr_path), self.scale)
        s = self.scale
        if hr.shape[0] < s or hr.shape[1] < s:
            raise DataError(f"{hr_path}: smaller than the scale x{s}")
        lr_full = self._read_lr(hr_path, lr_path, hr) if lr_path is not None else None
        if not self.train:
            lr = lr_full if lr_full is not None else make_lr(hr, s, self.quantize)
            return {"A": to_tensor(lr), "B": to_tensor(hr),
                    "A_path": str(lr_path or hr_path), "B_path": str(hr_path)}
        lq = self.gt_size // s
        h_lr, w_lr = hr.shape[0] // s, hr.shape[1] // s
        if h_lr < lq or w_lr < lq:
            raise DataError(
                f"{hr_path}: {hr.shape[1]}x{hr.shape[0]} is smaller than data.gt_size={self.gt_size}"
            )
        crop_seed, aug_seed = _child_seeds(seed, 2)
        top, left = random_crop_box(np.random.default_rng(crop_seed), h_lr, w_lr, lq)
        hr_patch = hr[top * s : (top + lq) * s, left * s : (left + lq) * s]
        if lr_full is not None:
            lr_patch = lr_full[top : top + lq, left : left + lq]
        else:
            lr_patch = self._lr_patch(hr, top, left, lq)
        hr_patch, lr_patch = _same_dtype(hr_patch, lr_patch)
        out = run_seeded(self.augment, aug_seed, hr_patch, lr=lr_patch)
        return {"A": to_tensor(out["lr"]), "B": to_tensor(out["image"]),
                "A_path": str(lr_path or hr_path), "B_path": str(hr_path)}


# --------------------------------------------------------------------------- colorization


class ColorizationDataset(_ImageDataset):
    """Any folder of colour photos; preprocessing as pix2pix. The task converts ``B`` to
    Lab on the device (:mod:`img2img.data.color`)."""

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


class SingleFolderDataset(_ImageDataset):
    """Whole images of a folder (recursive), a single file, or a list of files, as they
    are: ``{"A": 3xHxW in [-1, 1], "A_path": str}``. For prediction and evaluation.

    Files are checked when the dataset is made (:func:`~img2img.data.io.check_files`):
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


# --------------------------------------------------------------------------- from a config


@dataclasses.dataclass
class SplitFiles:
    """What the scan of one split found: folders and their image counts, the problems
    (file, reason), and the usable items for the task's dataset."""

    task: str
    split: str
    folders: dict[str, int]
    problems: list[tuple[Path, str]]
    items: Any
    where: str
    sizes: dict[Path, tuple[int, int]] = dataclasses.field(default_factory=dict)


def _key(path: Path, folder: Path) -> str:
    return path.relative_to(folder).with_suffix("").as_posix()


def _index_by_key(
    paths: Sequence[Path], folder: Path, problems: list[tuple[Path, str]], strip: str = ""
) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for p in paths:
        key = _key(p, folder)
        if strip and key.endswith(strip):
            key = key[: -len(strip)]
        if key in index:
            problems.append((p, f"has the same name as {index[key]}; names must be unique"))
            continue
        index[key] = p
    return index


def _root(config: Any) -> Path:
    text = (config.data.root or "").strip()
    if not text:
        raise DataError(
            "data.root is empty: set it to the folder of your images, e.g. data.root=datasets/facades"
        )
    root = Path(text).expanduser()
    try:
        exists, is_dir = root.exists(), root.is_dir()
    except OSError as err:  # a name too long for the file system, ...
        raise DataError(f"data.root: cannot use {short_repr(text)}: {err.strerror or err}") from None
    if not exists:
        raise DataError(f"data.root: folder not found: {root}")
    if not is_dir:
        raise DataError(f"data.root: not a folder: {root}")
    return root


def _split_name(config: Any, split: str) -> str:
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    return config.data.train_split if split == "train" else config.data.val_split


def _scan_split(root: Path, name: str, split: str, config: Any) -> list[Path] | None:
    """Images of ``root/name``; for train, ``root`` itself when that folder is absent."""
    folder = root / name
    if folder.is_dir():
        return scan_images(folder)
    if split == "val":
        return None
    try:
        return scan_images(root, exclude=[root / config.data.val_split])
    except DataError:
        raise DataError(
            f"no training images: {folder} does not exist and {root} holds no images "
            f"(set data.root to a folder of images, or create {folder})"
        ) from None


def _inspect(paths: Sequence[Path], config: Any, full_decode: bool):
    return inspect_files(paths, config.data.max_pixels, full_decode)


def _collect_single(config, root, split, full_decode) -> SplitFiles | None:
    name = _split_name(config, split)
    paths = _scan_split(root, name, split, config)
    if paths is None:
        return None
    folder = root / name if (root / name).is_dir() else root
    sizes, problems = _inspect(paths, config, full_decode)
    items = [p for p in paths if p in sizes]
    return SplitFiles(
        config.task, split, {str(folder): len(paths)}, problems, items, str(folder), sizes
    )


def _drop_extreme_shapes(
    config: Any, split: str, paths: Sequence[Path], sizes: dict[Path, tuple[int, int]],
    problems: list[tuple[Path, str]], half: bool = False,
) -> list[Path]:
    """``paths`` without the images whose preprocessing would blow them up beyond the
    pixel limit (:func:`~img2img.data.transforms.check_geometry`), which go to ``problems``.
    ``half``: the image holds A|B side by side."""
    d = config.data
    keep = []
    for p in paths:
        width, height = sizes[p]
        reason = check_geometry(height, width // 2 if half else width, d.preprocess, d.load_size,
                                d.crop_size, split == "train", d.max_pixels)
        if reason is None:
            keep.append(p)
        else:
            problems.append((p, reason))
    return keep


def _collect_aligned(config, root, split, full_decode) -> SplitFiles | None:
    """A|B images side by side: a folder of single images, each at least 2 px wide."""
    name = _split_name(config, split)
    base = root / name if (root / name).is_dir() else root
    if (base / "A").is_dir() and (base / "B").is_dir():
        raise ConfigError(
            f"data.layout is 'aligned' (A|B side by side in one image) but {base} holds A/ and "
            "B/ folders: set data.layout=folders to pair them by file name")
    found = _collect_single(config, root, split, full_decode)
    if found is None:
        return None
    narrow = [p for p in found.items if found.sizes[p][0] < 2]
    for p in narrow:
        found.problems.append((p, f"too narrow ({found.sizes[p][0]} px) to hold A|B side by side"))
    found.items = [p for p in found.items if p not in narrow]
    found.items = _drop_extreme_shapes(config, split, found.items, found.sizes, found.problems,
                                       half=True)
    return found


def _collect_paired_folders(config, root, split, full_decode) -> SplitFiles | None:
    name = _split_name(config, split)
    base = root / name
    if not base.is_dir():
        if split == "val":
            return None
        base = root
    dir_a, dir_b = base / "A", base / "B"
    if not dir_a.is_dir() or not dir_b.is_dir():
        if split == "val" and base != root:
            raise DataError(f"{base}: the folders layout needs {dir_a} and {dir_b}")
        raise DataError(
            f"data.layout=folders needs {dir_a} and {dir_b} (files matched by name); "
            f"found {'neither' if not (dir_a.is_dir() or dir_b.is_dir()) else 'only one'}"
        )
    paths_a, paths_b = scan_images(dir_a), scan_images(dir_b)
    problems: list[tuple[Path, str]] = []
    index_a = _index_by_key(paths_a, dir_a, problems)
    index_b = _index_by_key(paths_b, dir_b, problems)
    for key, p in index_a.items():
        if key not in index_b:
            problems.append((p, f"no file named {key}.* in {dir_b}"))
    for key, p in index_b.items():
        if key not in index_a:
            problems.append((p, f"no file named {key}.* in {dir_a}"))
    pairs = [(index_a[k], index_b[k]) for k in index_a if k in index_b]
    sizes, bad = _inspect([p for pair in pairs for p in pair], config, full_decode)
    problems += bad
    items = []
    for a, b in pairs:
        if a not in sizes or b not in sizes:
            continue
        if sizes[a] != sizes[b]:
            (wa, ha), (wb, hb) = sizes[a], sizes[b]
            problems.append((a, f"is {wa}x{ha} but its pair {b} is {wb}x{hb}; pairs must match"))
            continue
        if not _drop_extreme_shapes(config, split, [a], sizes, problems):
            continue
        items.append((a, b))
    folders = {str(dir_a): len(paths_a), str(dir_b): len(paths_b)}
    return SplitFiles(config.task, split, folders, problems, items, str(base))


def _unpaired_dirs(root: Path, name: str, split: str) -> tuple[Path, Path] | None:
    candidates = [name] if split == "train" else [name, "test"]
    for stem in candidates:
        dir_a, dir_b = root / f"{stem}A", root / f"{stem}B"
        if dir_a.is_dir() and dir_b.is_dir():
            return dir_a, dir_b
        if dir_a.is_dir() != dir_b.is_dir():
            have, missing = (dir_a, dir_b) if dir_a.is_dir() else (dir_b, dir_a)
            raise DataError(f"unpaired data: found {have} but not {missing}")
    if split == "train":
        raise DataError(
            f"unpaired data needs {root / (name + 'A')} and {root / (name + 'B')} "
            "(one folder per domain)"
        )
    return None


def _collect_unpaired(config, root, split, full_decode) -> SplitFiles | None:
    dirs = _unpaired_dirs(root, _split_name(config, split), split)
    if dirs is None:
        return None
    dir_a, dir_b = dirs
    if config.data.direction == "BtoA":
        dir_a, dir_b = dir_b, dir_a
    paths_a, paths_b = scan_images(dir_a), scan_images(dir_b)
    sizes, problems = _inspect(paths_a + paths_b, config, full_decode)
    items = tuple(
        _drop_extreme_shapes(config, split, [p for p in paths if p in sizes], sizes, problems)
        for paths in (paths_a, paths_b)
    )
    folders = {str(dir_a): len(paths_a), str(dir_b): len(paths_b)}
    return SplitFiles(config.task, split, folders, problems, items, f"{dir_a} and {dir_b}")


def _collect_sr(config, root, split, full_decode) -> SplitFiles | None:
    found = _collect_single(config, root, split, full_decode)
    if found is None:
        return None
    d = config.data
    scale = d.scale
    sizes_hr = found.sizes
    lr_folder = None
    if d.lr_root:
        lr_root = Path(d.lr_root).expanduser()
        if not lr_root.is_dir():
            raise DataError(f"data.lr_root: folder not found: {lr_root}")
        name = _split_name(config, split)
        if (lr_root / name).is_dir():
            lr_folder = lr_root / name
        elif split == "train":
            lr_folder = lr_root
    problems = list(found.problems)
    items: list[tuple[Path, Path | None]] = []
    hr_folder = Path(found.where)
    if lr_folder is not None:
        lr_paths = scan_images(lr_folder)
        found.folders[str(lr_folder)] = len(lr_paths)
        lr_index = _index_by_key(lr_paths, lr_folder, problems)
        # LR files may be named like BasicSR's (0001x4.png for 0001.png).
        suffixed = {k[: -len(f"x{scale}")]: p for k, p in lr_index.items() if k.endswith(f"x{scale}")}
        lr_sizes, lr_bad = _inspect(list(lr_index.values()), config, full_decode)
        problems += lr_bad
        for hr in found.items:
            key = _key(hr, hr_folder)
            lr = lr_index.get(key) or suffixed.get(key)
            if lr is None:
                problems.append((hr, f"no LR file named {key}.* (or {key}x{scale}.*) in {lr_folder}"))
                continue
            if lr not in lr_sizes:
                continue
            w, h = sizes_hr[hr]
            want = ((w - w % scale) // scale, (h - h % scale) // scale)
            if lr_sizes[lr] != want:
                problems.append((
                    lr,
                    f"is {lr_sizes[lr][0]}x{lr_sizes[lr][1]} but {hr} is {w}x{h}, which needs "
                    f"{want[0]}x{want[1]} at x{scale} (after mod-crop)",
                ))
                continue
            items.append((hr, lr))
        found.where = f"{hr_folder} and {lr_folder}"
    else:
        items = [(hr, None) for hr in found.items]
    good = []
    for hr, lr in items:
        w, h = sizes_hr[hr]
        w, h = w - w % scale, h - h % scale
        if split == "train" and min(w, h) < d.gt_size:
            problems.append((hr, f"{w}x{h} (mod-cropped) is smaller than data.gt_size={d.gt_size}"))
        elif min(w, h) < scale:
            problems.append((hr, f"{w}x{h} is smaller than the scale x{scale}"))
        else:
            good.append((hr, lr))
    found.items = good
    found.problems = problems
    return found


def collect_split(config: Any, split: str, full_decode: bool = False) -> SplitFiles | None:
    """Scan and check the files of one split of a config, without deciding what to do
    with the problems. None when the (optional) val split does not exist."""
    root = _root(config)
    task = config.task
    if task == "pix2pix":
        if config.data.layout == "folders":
            return _collect_paired_folders(config, root, split, full_decode)
        return _collect_aligned(config, root, split, full_decode)
    if task == "cyclegan":
        return _collect_unpaired(config, root, split, full_decode)
    if task == "srgan":
        return _collect_sr(config, root, split, full_decode)
    if task == "colorization":
        found = _collect_single(config, root, split, full_decode)
        if found is not None:
            found.items = _drop_extreme_shapes(config, split, found.items, found.sizes,
                                               found.problems)
        return found
    raise ConfigError(f"task: no dataset for task {task!r}")


def dataset_from_files(config: Any, found: SplitFiles) -> Dataset:
    """The dataset of a checked split (problems already handled)."""
    d = config.data
    train = found.split == "train"
    items = found.items
    if found.split == "val" and d.max_val_images:
        if config.task == "cyclegan":
            items = (items[0][: d.max_val_images], items[1])
        else:
            items = items[: d.max_val_images]
    common = {"max_pixels": d.max_pixels, "alpha": d.alpha}
    cin, cout = config.channels()
    if config.task == "pix2pix":
        return PairedDataset(
            items, aligned=d.layout == "aligned", direction=d.direction, preprocess=d.preprocess,
            load_size=d.load_size, crop_size=d.crop_size, flip=d.flip, train=train,
            in_channels=cin, out_channels=cout, **common,
        )
    if config.task == "cyclegan":
        return UnpairedDataset(
            items[0], items[1], preprocess=d.preprocess, load_size=d.load_size,
            crop_size=d.crop_size, flip=d.flip, train=train, in_channels=cin,
            out_channels=cout, **common,
        )
    if config.task == "srgan":
        return SRDataset(
            items, scale=d.scale, gt_size=d.gt_size, flip=d.flip, rot90=d.rot90, train=train,
            **common,
        )
    return ColorizationDataset(
        items, preprocess=d.preprocess, load_size=d.load_size, crop_size=d.crop_size,
        flip=d.flip, train=train, **common,
    )


def build_dataset(config: Any, split: str, bad_files_hint: str | None = None) -> Dataset | None:
    """The dataset of ``config.task`` for ``split`` ("train" or "val").

    Layout under ``data.root``: ``<train_split>/`` and ``<val_split>/`` (``A/`` and ``B/``
    inside with ``data.layout=folders``; ``<split>A/`` and ``<split>B/`` for cyclegan, val
    falling back to ``testA/``, ``testB/``). Without ``<train_split>/``, the images of
    ``data.root`` itself are the training set. The val split is optional: None when it
    does not exist. Every file is checked first (see :mod:`img2img.data.io`); problems
    raise one DataError listing them all (``data.on_error=raise``) or are dropped with a
    warning (``skip``). A missing or empty root is a DataError, never an empty dataset.
    """
    if split == "train":
        check_data_settings(config)
    found = collect_split(config, split)
    if found is None:
        return None
    apply_on_error(found.problems, config.data.on_error, where=found.where,
                   **({"hint": bad_files_hint} if bad_files_hint else {}))
    count = len(found.items[0]) if config.task == "cyclegan" else len(found.items)
    if config.task == "cyclegan" and not found.items[1]:
        count = 0
    if count == 0:
        raise DataError(f"no usable images left in {found.where} ({split} split)")
    dataset = dataset_from_files(config, found)
    if split == "train" and config.data.on_error == "skip":
        dataset.skip_bad = True
    log.debug("%s %s split: %d samples from %s", config.task, split, len(dataset), found.where)
    return dataset
