"""Data: everything between image files on disk and the tensors a task trains on. It
owns reading image files safely (the header and its limits in ``header``, the decoding
paths in ``decode``, Pillow's deep modes in ``modes``, one reader, one writer and the
folder scan in ``io``, the integrity check of a data set's files in ``integrity``), split
discovery (``splits``), the datasets (``datasets``, SR data in ``sr``), transforms and
augmentation, colour spaces, MATLAB-compatible imresize, the bundled sample data
(``sample``) and the standard data sets (the ``prepare`` command, with the ``catalog`` of
known sets, ``download`` and the verification and safe extraction of ``archives``).
Nothing here knows the methods or the engine: a task picks its layout and dataset.

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

from img2img.lazy import lazy_exports

_EXPORTS = {
    "read_image": "img2img.data.io",
    "load_image": "img2img.data.io",
    "write_image": "img2img.data.io",
    "scan_images": "img2img.data.io",
    "check_files": "img2img.data.integrity",
    "ImageInfo": "img2img.data.io",
    "IMAGE_EXTENSIONS": "img2img.data.io",
    "DEFAULT_MAX_PIXELS": "img2img.data.header",
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
