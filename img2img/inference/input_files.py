"""Inputs beyond the image that ``img2img predict`` reads from files (``--mask``): which file
goes with which input image, and reading it next to its image.

A file input is given as one file for every image or as a folder with one file per image,
matched by file stem (:func:`img2img.data.masks.match_masks`). It is read as an image when
its image is read, and must have that image's size (a UserError naming both files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from img2img.errors import UserError

#: The ``img2img predict`` option (``args`` attribute) of each input read from files.
FILE_OPTIONS = {"mask": "mask"}


def file_inputs(args: Any, declared: dict[str, str], items: list[Any]) -> dict[str, list[Path]]:
    """Each item's file for every input given as a file option (``--mask FILE_OR_FOLDER``)."""
    from img2img.data.masks import match_masks

    found = {}
    for name, option in FILE_OPTIONS.items():
        given = getattr(args, option, None)
        if given is None:
            continue
        if name not in declared:
            raise UserError(f"--{option}: this model takes no {name}; leave --{option} out")
        found[name] = match_masks([item.path for item in items], given, [item.relative for item in items])
    return found


def input_value(value: Any, name: str, image_path: Path, image: np.ndarray) -> Any:
    """An item's input for the translator: a file is read (float H x W x 3 in [0, 1]) and
    must have the size of ``image``; any other value is passed on as it is."""
    if not isinstance(value, Path):
        return value
    from img2img.data.io import read_image

    array = read_image(value)
    if array.shape[:2] != image.shape[:2]:
        raise UserError(f"--{name}: {value} is {array.shape[1]}x{array.shape[0]} but its image {image_path} is "
                        f"{image.shape[1]}x{image.shape[0]}; a {name} must have its image's size")
    return array
