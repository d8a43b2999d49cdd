"""Where a config's images are: split discovery and the checks made before any dataset is
built, for every data layout.

A finder scans one split (``"train"`` or ``"val"``) under ``data.root``, checks every file
(:func:`~img2img.data.integrity.inspect_files`: readable, within the pixel limit) and the layout
(names matched, sizes paired, shapes preprocessing can take) and returns a
:class:`SplitFiles`: the folders it read, the problems (file, reason) and the usable
items. It decides nothing about the problems (``data.on_error`` does, in the task's
``build_dataset``). The val split is optional: a finder returns None without one.

Layouts (``<split>`` is ``data.train_split`` or ``data.val_split``; without a
``<train_split>/`` folder the images of ``data.root`` itself are the training set):

- :func:`find_single`: any images, ``<split>/``;
- :func:`find_aligned`: A|B images side by side, ``<split>/``;
- :func:`find_paired_folders`: ``<split>/A/`` and ``<split>/B/`` matched by name;
- :func:`find_unpaired`: ``<split>A/`` and ``<split>B/`` (val falls back to ``testA/``,
  ``testB/``);
- :func:`find_sr`: HR images, and LR files matched by name under ``data.lr_root``.

Which layout a method reads is its task's choice; nothing here knows the methods.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from img2img.config import short_repr
from img2img.data import layouts
from img2img.data.integrity import inspect_files
from img2img.data.io import scan_images
from img2img.data.transforms import check_geometry
from img2img.errors import ConfigError, DataError


@dataclasses.dataclass
class SplitFiles:
    """What the scan of one split found: folders and their image counts, the problems
    (file, reason), and the usable items: a list (of paths, or of path pairs) or, for two
    unrelated domains, a tuple of two lists."""

    split: str
    folders: dict[str, int]
    problems: list[tuple[Path, str]]
    items: Any
    where: str
    sizes: dict[Path, tuple[int, int]] = dataclasses.field(default_factory=dict)

    @property
    def usable(self) -> int:
        """How many samples the items make: for two domains, the first one's images (none
        when the second has none)."""
        if isinstance(self.items, tuple):
            return len(self.items[0]) if all(self.items) else 0
        return len(self.items)

    @property
    def unit(self) -> str:
        """What :attr:`usable` counts, for reports."""
        return "A images" if isinstance(self.items, tuple) else "samples"


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


def split_root(config: Any) -> Path:
    """``data.root`` as a folder that exists; a DataError naming it otherwise."""
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


def split_folder_name(config: Any, split: str) -> str:
    """The folder name of ``split`` (``data.train_split`` or ``data.val_split``)."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    return config.data.train_split if split == "train" else config.data.val_split


def _scan_split(root: Path, name: str, split: str, config: Any, pairs: bool = False) -> list[Path] | None:
    """Images of ``root/name``; for train, ``root`` itself when that folder is absent.
    ``pairs``: the images are to hold A|B side by side (for the layout check's advice)."""
    folder = root / name
    if folder.is_dir():
        return scan_images(folder)
    if split == "val":
        return None
    layouts.check_fallback(root, name, config.data.val_split, pairs)
    try:
        return scan_images(root, exclude=[root / config.data.val_split])
    except DataError:
        raise DataError(
            f"no training images: {folder} does not exist and {root} holds no images "
            f"(set data.root to a folder of images, or create {folder})"
        ) from None


def _inspect(paths: Sequence[Path], config: Any, full_decode: bool):
    return inspect_files(paths, config.data.max_pixels, full_decode)


def _collect_single(config, root, split, full_decode, pairs: bool = False) -> SplitFiles | None:
    name = split_folder_name(config, split)
    paths = _scan_split(root, name, split, config, pairs)
    if paths is None:
        return None
    folder = root / name if (root / name).is_dir() else root
    sizes, problems = _inspect(paths, config, full_decode)
    items = [p for p in paths if p in sizes]
    return SplitFiles(split, {str(folder): len(paths)}, problems, items, str(folder), sizes)


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
    name = split_folder_name(config, split)
    base = root / name if (root / name).is_dir() else root
    if (base / "A").is_dir() and (base / "B").is_dir():
        raise ConfigError(
            f"data.layout is 'aligned' (A|B side by side in one image) but {base} holds A/ and "
            "B/ folders: set data.layout=folders to pair them by file name")
    found = _collect_single(config, root, split, full_decode, pairs=True)
    if found is None:
        return None
    layouts.check_pairs_side_by_side(found.where, found.sizes, found.items, config.data.min_pair_ratio)
    narrow = [p for p in found.items if found.sizes[p][0] < 2]
    for p in narrow:
        found.problems.append((p, f"too narrow ({found.sizes[p][0]} px) to hold A|B side by side"))
    found.items = [p for p in found.items if p not in narrow]
    found.items = _drop_extreme_shapes(config, split, found.items, found.sizes, found.problems,
                                       half=True)
    return found


def _collect_paired_folders(config, root, split, full_decode) -> SplitFiles | None:
    name = split_folder_name(config, split)
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
            f" ({base} holds {layouts.describe(base)}); for A|B images side by side set "
            "data.layout=aligned"
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
    return SplitFiles(split, folders, problems, items, str(base))


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
            f"(one folder per domain); {root} holds {layouts.describe(root)}. Put each domain's "
            f"images in its own folder ({name}A/, {name}B/; held-out ones in valA/, valB/), or "
            "train a paired recipe on paired data ('img2img recipes')"
        )
    return None


def _collect_unpaired(config, root, split, full_decode) -> SplitFiles | None:
    dirs = _unpaired_dirs(root, split_folder_name(config, split), split)
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
    return SplitFiles(split, folders, problems, items, f"{dir_a} and {dir_b}")


def _lr_folder(config: Any, split: str) -> Path | None:
    """The folder of LR files for ``split`` under ``data.lr_root`` (None without one)."""
    if not config.data.lr_root:
        return None
    lr_root = Path(config.data.lr_root).expanduser()
    if not lr_root.is_dir():
        raise DataError(f"data.lr_root: folder not found: {lr_root}")
    name = split_folder_name(config, split)
    if (lr_root / name).is_dir():
        return lr_root / name
    return lr_root if split == "train" else None


def _match_lr(config: Any, found: SplitFiles, lr_folder: Path, full_decode: bool) -> list[tuple[Path, Path]]:
    """(HR, LR) pairs of ``found``'s HR images and the LR files of ``lr_folder``, matched
    by name (BasicSR's ``0001x4.png`` for ``0001.png`` too) and checked for size; what
    does not match goes to ``found.problems``."""
    scale = config.data.scale
    hr_folder = Path(found.where)
    lr_paths = scan_images(lr_folder)
    found.folders[str(lr_folder)] = len(lr_paths)
    lr_index = _index_by_key(lr_paths, lr_folder, found.problems)
    suffixed = {k[: -len(f"x{scale}")]: p for k, p in lr_index.items() if k.endswith(f"x{scale}")}
    lr_sizes, lr_bad = _inspect(list(lr_index.values()), config, full_decode)
    found.problems += lr_bad
    pairs = []
    for hr in found.items:
        key = _key(hr, hr_folder)
        lr = lr_index.get(key) or suffixed.get(key)
        if lr is None:
            found.problems.append((hr, f"no LR file named {key}.* (or {key}x{scale}.*) in {lr_folder}"))
            continue
        if lr not in lr_sizes:
            continue
        w, h = found.sizes[hr]
        want = ((w - w % scale) // scale, (h - h % scale) // scale)
        if lr_sizes[lr] != want:
            found.problems.append((
                lr,
                f"is {lr_sizes[lr][0]}x{lr_sizes[lr][1]} but {hr} is {w}x{h}, which needs "
                f"{want[0]}x{want[1]} at x{scale} (after mod-crop)",
            ))
            continue
        pairs.append((hr, lr))
    found.where = f"{hr_folder} and {lr_folder}"
    return pairs


def _collect_sr(config, root, split, full_decode) -> SplitFiles | None:
    found = _collect_single(config, root, split, full_decode)
    if found is None:
        return None
    d = config.data
    scale = d.scale
    lr_folder = _lr_folder(config, split)
    if lr_folder is not None:
        items: list[tuple[Path, Path | None]] = list(_match_lr(config, found, lr_folder, full_decode))
    else:
        items = [(hr, None) for hr in found.items]
    good = []
    for hr, lr in items:
        w, h = found.sizes[hr]
        w, h = w - w % scale, h - h % scale
        if split == "train" and min(w, h) < d.gt_size:
            found.problems.append((hr, f"{w}x{h} (mod-cropped) is smaller than data.gt_size={d.gt_size}"))
        elif min(w, h) < scale:
            found.problems.append((hr, f"{w}x{h} is smaller than the scale x{scale}"))
        else:
            good.append((hr, lr))
    found.items = good
    return found


def find_single(config: Any, split: str, full_decode: bool = False) -> SplitFiles | None:
    """Single images (any colour photos): ``<split>/``, each one preprocessing can take."""
    found = _collect_single(config, split_root(config), split, full_decode)
    if found is not None:
        found.items = _drop_extreme_shapes(config, split, found.items, found.sizes, found.problems)
    return found


def find_paired(config: Any, split: str, full_decode: bool = False) -> SplitFiles | None:
    """Pairs: A|B side by side (``data.layout: aligned``), or ``A/`` and ``B/`` folders
    matched by name (``folders``)."""
    root = split_root(config)
    if config.data.layout == "folders":
        return _collect_paired_folders(config, root, split, full_decode)
    return _collect_aligned(config, root, split, full_decode)


def find_unpaired(config: Any, split: str, full_decode: bool = False) -> SplitFiles | None:
    """Two unrelated domains, ``<split>A/`` and ``<split>B/`` (swapped by
    ``data.direction: BtoA``); items are a tuple of two lists."""
    return _collect_unpaired(config, split_root(config), split, full_decode)


def find_sr(config: Any, split: str, full_decode: bool = False) -> SplitFiles | None:
    """HR images and, with ``data.lr_root``, their LR files; items are (HR, LR or None)."""
    return _collect_sr(config, split_root(config), split, full_decode)
