"""Preprocessing and augmentation that run in DataLoader workers.

Geometry follows the reference pix2pix/CycleGAN code (``base_dataset.get_transform``):

| preprocess              | train                                         | val (test-time)            |
|-------------------------|-----------------------------------------------|----------------------------|
| ``resize_and_crop``     | resize to load_size x load_size, random crop  | resize to crop x crop      |
| ``crop``                | random crop of crop_size                      | the whole image            |
| ``scale_width``         | width -> load_size (height >= crop_size)      | width -> crop_size         |
| ``scale_width_and_crop``| as scale_width, then random crop              | width -> crop_size         |
| ``none``                | sides rounded to a multiple of 4 (resized)    | the image as it is         |

then a random horizontal flip when ``data.flip`` (train only). Resizing is bicubic with
antialiasing, as the reference's PIL ``BICUBIC``; it runs through torch's uint8 kernel
(``interpolate(..., mode="bicubic", antialias=True)``, which implements Pillow's
algorithm: it differs from Pillow by at most one 8-bit level on a fraction of a percent
of pixels, and is about 6x faster). An image smaller than the crop in either side is
first enlarged (keeping its aspect ratio) so that the crop fits; the reference would pad
the crop with black instead.

What the resizing makes is planned from the image's size first (:func:`planned_size`): an
image of an extreme shape that it would blow up beyond the pixel limit (a 1x100000 strip
enlarged to fit a 256x256 crop would be 256x25600000) is refused with one DataError naming
it (:func:`check_geometry`), before anything is allocated.

Random choices (crop position, flip, rotation) are made by albumentations pipelines with
``additional_targets`` so that both images of a pair get the same crop and flip; before
each sample the pipeline's generators are replaced by ones seeded from the sample's seed
(:func:`run_seeded`), so a given (index, seed) gives the same sample in any process.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Mapping

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from img2img.data.header import DEFAULT_MAX_PIXELS
from img2img.errors import DataError

# --------------------------------------------------------------------------- resizing


def _as_torch(image: np.ndarray) -> torch.Tensor:
    """A zero-copy tensor view of a (possibly strided, possibly read-only) array."""
    if any(step < 0 for step in image.strides):
        image = np.ascontiguousarray(image)
    if image.flags.writeable:
        return torch.from_numpy(image)
    with warnings.catch_warnings():  # arrays from Pillow are read-only; torch only reads
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(image)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic (antialiased when shrinking) resize of an HxWx3 uint8 or float32 array."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    tensor = _as_torch(image).permute(2, 0, 1)[None]
    out = F.interpolate(tensor, size=(height, width), mode="bicubic", antialias=True,
                        align_corners=False)[0]
    if image.dtype != np.uint8:
        out = out.clamp_(0.0, 1.0)
    # The kernel writes planar CxHxW; OpenCV interleaves planes far faster than a copy
    # through numpy or torch.
    return cv2.merge([plane.numpy() for plane in out])


def _scale_width_size(height: int, width: int, target_width: int, min_height: int) -> tuple[int, int]:
    if width == target_width and height >= min_height:
        return height, width
    return int(max(target_width * height / width, min_height)), target_width


def _multiple_size(height: int, width: int, base: int) -> tuple[int, int]:
    return max(base, int(round(height / base) * base)), max(base, int(round(width / base) * base))


def _at_least_size(height: int, width: int, min_height: int, min_width: int) -> tuple[int, int]:
    if height >= min_height and width >= min_width:
        return height, width
    factor = max(min_height / height, min_width / width)
    return max(min_height, int(round(height * factor))), max(min_width, int(round(width * factor)))


def scale_width(image: np.ndarray, target_width: int, min_height: int) -> np.ndarray:
    """The reference's ``__scale_width``: width -> target, height proportional, at least
    ``min_height``."""
    height, width = image.shape[:2]
    new_height, new_width = _scale_width_size(height, width, target_width, min_height)
    if (new_height, new_width) == (height, width):
        return image
    return resize(image, new_height, new_width)


def make_multiple(image: np.ndarray, base: int = 4) -> np.ndarray:
    """The reference's ``__make_power_2``: each side rounded to the nearest multiple of
    ``base`` (at least ``base``), resizing when that changes the size."""
    return resize(image, *_multiple_size(*image.shape[:2], base))


def at_least(image: np.ndarray, min_height: int, min_width: int) -> np.ndarray:
    """Enlarge (aspect kept) so that both sides reach the minimum; no-op otherwise."""
    height, width = image.shape[:2]
    new_h, new_w = _at_least_size(height, width, min_height, min_width)
    if (new_h, new_w) == (height, width):
        return image
    return resize(image, new_h, new_w)


def planned_size(
    height: int, width: int, preprocess: str, load_size: int, crop_size: int, train: bool
) -> tuple[int, int]:
    """(height, width) that :func:`prepare_geometry` makes of an image of this size,
    worked out without touching pixels. No step in between makes anything larger than
    both the image and this result."""
    if preprocess == "resize_and_crop":
        size = load_size if train else crop_size
        height, width = size, size
    elif preprocess in ("scale_width", "scale_width_and_crop"):
        height, width = _scale_width_size(height, width, load_size if train else crop_size, crop_size)
    elif preprocess == "none":
        if train:
            height, width = _multiple_size(height, width, 4)
    elif preprocess != "crop":
        raise ValueError(f"unknown preprocess {preprocess!r}")
    if train and "crop" in preprocess:
        height, width = _at_least_size(height, width, crop_size, crop_size)
    return height, width


def check_geometry(
    height: int, width: int, preprocess: str, load_size: int, crop_size: int, train: bool,
    max_pixels: int | None = None,
) -> str | None:
    """Why preprocessing an image of this size would cost too much (None when it is fine):
    the resized image may hold as many pixels as the image itself, or ``max_pixels``
    (``data.max_pixels``, the reader's limit), or 64 times the configured size
    (``max(load_size, crop_size)`` squared: a 64:1 strip enlarged to fit the crop) where
    that is more. Only an extreme shape exceeds them."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    sized = 64 * max(load_size, crop_size) ** 2
    new_h, new_w = planned_size(height, width, preprocess, load_size, crop_size, train)
    if new_h * new_w <= max(limit, sized, height * width):
        return None
    which = f"{limit:,} (data.max_pixels)" if limit >= sized else f"{sized:,} (64 x the configured size)"
    return (
        f"data.preprocess={preprocess} would resize this {width}x{height} image to "
        f"{new_w}x{new_h} ({new_w * new_h:,} pixels), above the limit of {which}: its shape "
        "is too extreme; crop or remove the image (or use data.preprocess=resize_and_crop)"
    )


def prepare_geometry(
    image: np.ndarray, preprocess: str, load_size: int, crop_size: int, train: bool,
    *, max_pixels: int | None = None, source: str = "an image",
) -> np.ndarray:
    """The deterministic (resize) part of the preprocessing, before the random crop.
    An image that it would blow up beyond ``max_pixels`` (see :func:`check_geometry`) is a
    DataError naming ``source``, raised before any resizing."""
    problem = check_geometry(*image.shape[:2], preprocess, load_size, crop_size, train, max_pixels)
    if problem is not None:
        raise DataError(f"{source}: {problem}")
    if preprocess == "resize_and_crop":
        size = load_size if train else crop_size
        image = resize(image, size, size)
    elif preprocess in ("scale_width", "scale_width_and_crop"):
        image = scale_width(image, load_size if train else crop_size, crop_size)
    elif preprocess == "none":
        if train:  # at test time the image stays as it is; the model pads it
            image = make_multiple(image, 4)
    elif preprocess != "crop":
        raise ValueError(f"unknown preprocess {preprocess!r}")
    if train and "crop" in preprocess:
        image = at_least(image, crop_size, crop_size)
    return image


# --------------------------------------------------------------------------- augmentation


def build_augment(
    preprocess: str, crop_size: int, flip: bool, extra_images: tuple[str, ...] = ()
) -> A.Compose | None:
    """Random crop (when the mode crops) and horizontal flip, the same for every image
    passed (``image`` plus the ``extra_images`` names). None when nothing is random."""
    steps: list = []
    if "crop" in preprocess:
        steps.append(A.RandomCrop(height=crop_size, width=crop_size))
    if flip:
        steps.append(A.HorizontalFlip(p=0.5))
    if not steps:
        return None
    return A.Compose(steps, additional_targets={name: "image" for name in extra_images})


def build_sr_augment(flip: bool, rot90: bool, extra_images: tuple[str, ...] = ("lr",)) -> A.Compose | None:
    """SR flips and rotations, applied alike to HR and LR of different sizes.

    ``rot90``: one of the 8 symmetries of the square, uniformly (``D4``; the same group and
    distribution as BasicSR's hflip + vflip + transpose). ``flip`` alone: horizontal flip.
    """
    if rot90:
        steps = [A.D4(p=1.0)]
    elif flip:
        steps = [A.HorizontalFlip(p=0.5)]
    else:
        return None
    return A.Compose(
        steps,
        additional_targets={name: "image" for name in extra_images},
        is_check_shapes=False,
    )


def run_seeded(
    compose: A.Compose | None, seed: int, image: np.ndarray, **others: np.ndarray
) -> Mapping[str, np.ndarray]:
    """Apply ``compose`` with every random draw taken from generators seeded by ``seed``."""
    if compose is None:
        return {"image": image, **others}
    compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return compose(image=image, **others)


def random_crop_box(
    rng: np.random.Generator, height: int, width: int, size: int
) -> tuple[int, int]:
    """Top-left corner of a uniformly random size x size window."""
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    return top, left


# --------------------------------------------------------------------------- tensors


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWxC uint8 / uint16 / float [0, 1] -> CxHxW float32 in [-1, 1] (one copy)."""
    chw = _as_torch(image).permute(2, 0, 1)
    out = chw.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    if image.dtype == np.uint8:
        return out.mul_(2.0 / 255.0).sub_(1.0)
    if image.dtype == np.uint16:
        return out.mul_(2.0 / 65535.0).sub_(1.0)
    return out.mul_(2.0).sub_(1.0)


def to_grey(tensor: torch.Tensor) -> torch.Tensor:
    """3xHxW -> 1xHxW with ITU-R 601 luma weights (Pillow's ``convert("L")``)."""
    from img2img.data.color import luma

    return luma(tensor, dim=0)
