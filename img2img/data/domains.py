"""Multi-domain data: one folder per domain under each split, one label per image.

Layout (``<split>`` is ``data.train_split`` or ``data.val_split``)::

    <data.root>/<split>/<domain>/...    images of that domain, found recursively

The domain names are the folder names. :func:`domain_folders` lists them (sorted: the
order a model's domain indices follow when the config does not give one);
:func:`find_domains` scans and checks one split for a fixed list of domains (every one
must be there in the train split; the val split may lack some, or be absent);
:class:`DomainDataset` serves ``{"A": image, "A_path": str, "label": int64}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from img2img.data.datasets import PhotoDataset
from img2img.data.integrity import inspect_files
from img2img.data.io import scan_images
from img2img.data.splits import SplitFiles, split_folder_name, split_root
from img2img.errors import DataError


def domain_folders(folder: Path) -> list[str]:
    """The sorted names of the visible subfolders of ``folder`` (none when it is absent)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_domains(config: Any, split: str, domains: Sequence[str], full_decode: bool = False) -> SplitFiles | None:
    """The images of ``split`` as ``(path, domain index)`` items, checked; None when the
    val split is absent or holds none of the domains. A DataError when the train split
    lacks a domain's folder, naming what is there."""
    base = split_root(config) / split_folder_name(config, split)
    present = domain_folders(base)
    missing = [d for d in domains if d not in present]
    if split == "train" and (missing or not domains):
        found = f"found {', '.join(present)}" if present else "it has no subfolders"
        raise DataError(
            f"multi-domain data needs one folder per domain under {base} "
            f"({', '.join(missing) or 'none given'} missing; {found}): {base}/<domain>/*.png")
    if split == "val" and len(missing) == len(domains):
        return None
    paths, labels, folders = [], [], {}
    for label, name in enumerate(domains):
        if name in missing:
            continue
        found_paths = scan_images(base / name)
        folders[str(base / name)] = len(found_paths)
        paths += found_paths
        labels += [label] * len(found_paths)
    sizes, problems = inspect_files(paths, config.data.max_pixels, full_decode)
    items = [(p, label) for p, label in zip(paths, labels) if p in sizes]
    return SplitFiles(split, folders, problems, items, str(base), sizes)


def round_robin(items: Sequence[tuple[Path, int]], limit: int) -> list[tuple[Path, int]]:
    """``limit`` of the ``(path, label)`` items taken in turn from each label (in label
    order: the first item of every label, then the second, ...), so a small ``limit``
    keeps every domain; returned grouped by label, each label's in their order."""
    by_label: dict[int, list[tuple[Path, int]]] = {}
    for item in items:
        by_label.setdefault(item[1], []).append(item)
    depth = max((len(group) for group in by_label.values()), default=0)
    taken = [group[k] for k in range(depth) for _, group in sorted(by_label.items()) if k < len(group)]
    return sorted(taken[:limit], key=lambda item: item[1])


class DomainDataset(PhotoDataset):
    """Images with their domain label: ``{"A": 3xHxW in [-1, 1], "A_path", "label"}``,
    with the paired datasets' preprocessing (and its random crop and flip in training)."""

    def __init__(self, items: Sequence[tuple[Path, int]], **options: Any) -> None:
        super().__init__([p for p, _ in items], **options)
        self.labels = [label for _, label in items]

    def sample(self, index: int, seed: int) -> dict[str, Any]:
        out = super().sample(index, seed)
        return {"A": out["B"], "A_path": out["B_path"], "label": torch.tensor(self.labels[index])}

    def indices_of(self, label: int) -> list[int]:
        """The samples of domain ``label``."""
        return [i for i, other in enumerate(self.labels) if other == label]
