"""Data: robust image reading, split discovery, datasets, MATLAB-compatible imresize,
sample data and standard data sets. Nothing here knows the methods: a task picks its
layout and dataset.

Names are imported lazily (PEP 562), so ``img2img.data.sample`` and
``img2img.data.prepare`` do not pull in torch through this package.

Public API::

    read_image(path, *, max_pixels=None, alpha="white", return_info=False)
    write_image(path, array_or_tensor_in_0_1, bit_depth=8)
    scan_images(root) -> list[Path]
    check_files(paths, max_pixels, on_error) -> list[Path]
    imresize(img, scale=None, output_size=None)
    PairedDataset, UnpairedDataset, PhotoDataset, SRDataset, SingleFolderDataset
    splits.find_single / find_paired / find_unpaired / find_sr(config, split) -> SplitFiles
    color.rgb_to_lab_norm(rgb), color.lab_norm_to_rgb(L, ab)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "read_image": "img2img.data.io",
    "load_image": "img2img.data.io",
    "write_image": "img2img.data.io",
    "scan_images": "img2img.data.io",
    "check_files": "img2img.data.io",
    "ImageInfo": "img2img.data.io",
    "IMAGE_EXTENSIONS": "img2img.data.io",
    "DEFAULT_MAX_PIXELS": "img2img.data.io",
    "imresize": "img2img.data.matlab_imresize",
    "PairedDataset": "img2img.data.datasets",
    "UnpairedDataset": "img2img.data.datasets",
    "SRDataset": "img2img.data.sr",
    "PhotoDataset": "img2img.data.datasets",
    "SingleFolderDataset": "img2img.data.datasets",
    "mod_crop": "img2img.data.sr",
    "make_lr": "img2img.data.sr",
    "SplitFiles": "img2img.data.splits",
    "rgb_to_lab_norm": "img2img.data.color",
    "lab_norm_to_rgb": "img2img.data.color",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'img2img.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
