"""Image files in and out: one reader used everywhere, an atomic writer and the folder scan.

Reading (:func:`read_image`) returns float32 HxWx3 RGB in [0, 1] whatever the file holds:

- 8-bit and 16-bit PNG and TIFF; 16-bit values are divided by 65535 (never clipped to 8
  bits). Pillow reduces 16-bit colour PNG/TIFF to 8 bits, so those go through OpenCV (PNG)
  and tifffile (TIFF); 16-bit greyscale PNG is read by Pillow (mode ``I;16``).
- greyscale (1 channel) is repeated to 3 channels;
- alpha (RGBA, LA, palette with transparency, a tRNS colour key) is composited on white by
  default (``alpha="white"``: ``rgb * a + (1 - a)``), or dropped (``alpha="drop"``: the
  colour channels as stored, whatever their alpha);
- palette, CMYK (including Adobe's inverted CMYK JPEG), YCbCr, LAB, HSV are converted to RGB
  by Pillow;
- the EXIF orientation tag is applied, so the array is the image as a viewer shows it;
- 32-bit float TIFF is taken as [0, 1] data and clipped to it.

Only the formats of :data:`~img2img.data.header.PIL_FORMATS` are opened (PNG, JPEG/MPO,
BMP, TIFF, WebP, PPM), whatever the file's name says: anything else (an EPS or PDF file
named ``.png``) is refused before any decoder sees it, naming the format found.

It refuses with one :class:`~img2img.errors.DataError` that names the file: missing and
zero-byte files, files that are not images or are in another format, truncated or corrupt
files, float files holding NaN or infinite values, and images above the limits, which are
checked on the header before anything is decoded (:mod:`img2img.data.header`): the pixel
limit (``max_pixels``, the config's ``data.max_pixels``, width x height) and the byte limit
derived from it (:data:`~img2img.data.header.BYTES_PER_PIXEL` x ``max_pixels``; width x
height x samples per pixel x bytes per sample, which bounds TIFFs with many samples per
pixel). Pillow's process-wide ``Image.MAX_IMAGE_PIXELS`` is read, never changed: files are
opened through the decoders of the supported formats directly (the size check is the one
that speaks), and an image above Pillow's own limit that Pillow would refuse while
decoding is decoded by tifffile (plain TIFF) or refused with a message (other TIFF, WebP).
Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False (its default) for truncation
to be caught; img2img never sets it.

:func:`load_image` reads like its pipeline: open the header (limits), plan the decoding
(what the file holds, which decoder reads it), check the bytes it will take, decode
(:mod:`img2img.data.decode`), check the values, convert.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from img2img.data.decode import (
    apply_orientation,
    check_decoding,
    check_finite,
    decode,
    decode_tiff,
    plan_decoding,
    to_rgb01,
)
from img2img.data.header import (
    DEFAULT_MAX_PIXELS,
    check_pixels,
    is_tiff,
    open_header,
    tiff_size_and_orientation,
)
from img2img.errors import DataError
from img2img.files import atomic_write

__all__ = [
    "DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "ImageInfo", "load_image", "read_image",
    "scan_images", "to_float01", "write_image",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the file held before it became float RGB.

    ``size`` is (width, height) after the EXIF orientation is applied. ``channels`` counts
    the meaningful channels of the original: 1 grey, 2 grey + alpha, 3 colour, 4 colour +
    alpha; a palette image counts as colour (3, or 4 with transparency). ``bit_depth`` is 8
    or 16 (32 for float TIFF). ``mode`` is Pillow's mode of the file.
    """

    path: str
    format: str
    mode: str
    size: tuple[int, int]
    channels: int
    bit_depth: int
    has_alpha: bool
    orientation: int = 1


# --------------------------------------------------------------------------- reading


def _output(raw: np.ndarray, alpha: str, path: Path) -> np.ndarray:
    """Plain 8-bit RGB or grey (and 8-bit with alpha dropped) stays uint8 HxWx3; the rest
    becomes float32 HxWx3 in [0, 1]."""
    if raw.dtype == np.uint8 and raw.ndim == 3 and raw.shape[2] == 3:
        return np.ascontiguousarray(raw)
    if raw.dtype == np.uint8 and raw.ndim == 2:
        return np.repeat(raw[..., None], 3, axis=2)
    if raw.dtype == np.uint8 and alpha == "drop":
        colour_part = raw[..., :3] if raw.shape[2] >= 3 else raw[..., :1]
        if colour_part.shape[2] == 1:
            colour_part = np.repeat(colour_part, 3, axis=2)
        return np.ascontiguousarray(colour_part)
    return to_rgb01(raw, alpha, path)


def _load_tiff_alone(path: Path, limit: int, alpha: str) -> tuple[np.ndarray, ImageInfo]:
    """TIFFs Pillow cannot open (float RGB, BigTIFF, ...) through tifffile alone, with
    the same pixel limit (from the header) and orientation handling."""
    width, height, orient = tiff_size_and_orientation(path)
    check_pixels(path, width, height, limit)
    try:
        raw = apply_orientation(decode_tiff(path, limit), orient)
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"{path}: truncated or corrupt image data ({err})") from None
    check_finite(path, raw)
    channels = 1 if raw.ndim == 2 else raw.shape[2]
    info = ImageInfo(
        path=str(path), format="TIFF", mode=str(raw.dtype), size=(int(raw.shape[1]), int(raw.shape[0])),
        channels=channels, bit_depth=raw.dtype.itemsize * 8, has_alpha=channels in (2, 4),
        orientation=orient,
    )
    return to_rgb01(raw, alpha, path), info


def load_image(
    path: str | os.PathLike, *, max_pixels: int | None = None, alpha: str = "white"
) -> tuple[np.ndarray, ImageInfo]:
    """The reader's core, for pipelines that want to resize before converting to float.

    Returns ``(array, info)``: a uint8 HxWx3 array when the file is plain 8-bit without
    alpha (the common case, kept in 8 bits so that resizing is cheap and matches Pillow),
    otherwise float32 HxWx3 in [0, 1] (16-bit, float, or alpha composited/dropped).
    """
    if alpha not in ("white", "drop"):
        raise ValueError(f"alpha must be 'white' or 'drop', got {alpha!r}")
    path = Path(path)
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    try:
        im = open_header(path, limit)
    except DataError as err:
        if "not an image file" in str(err) and is_tiff(path):
            return _load_tiff_alone(path, limit, alpha)
        raise
    try:
        plan = plan_decoding(path, im)
        check_decoding(path, im, plan, limit)
        raw = decode(path, im, plan, limit)
    finally:
        im.close()
    check_finite(path, raw)
    height, width = raw.shape[:2]
    info = ImageInfo(
        path=str(path),
        format=plan.fmt,
        mode=plan.mode,
        size=(int(width), int(height)),
        channels=(3 if plan.colour else 1) + (1 if plan.has_alpha else 0),
        bit_depth=plan.bit_depth,
        has_alpha=plan.has_alpha,
        orientation=plan.orientation,
    )
    return _output(raw, alpha, path), info


def to_float01(array: np.ndarray) -> np.ndarray:
    """uint8 (/255), uint16 (/65535) or float arrays -> float32 in [0, 1]."""
    if array.dtype == np.uint8:
        return np.divide(array, np.float32(255.0), dtype=np.float32)
    if array.dtype == np.uint16:
        return np.divide(array, np.float32(65535.0), dtype=np.float32)
    return np.asarray(array, dtype=np.float32)


def read_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = None,
    alpha: str = "white",
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, ImageInfo]:
    """Read any supported image file as float32 HxWx3 RGB in [0, 1].

    ``max_pixels`` None means :data:`DEFAULT_MAX_PIXELS`. ``alpha`` is ``"white"``
    (composite on white) or ``"drop"``. With ``return_info`` the result is
    ``(array, ImageInfo)``. Every failure is a :class:`DataError` naming the file.
    """
    array, info = load_image(path, max_pixels=max_pixels, alpha=alpha)
    array = to_float01(array)
    return (array, info) if return_info else array


# --------------------------------------------------------------------------- writing


def _as_hwc(image: Any) -> np.ndarray:
    if hasattr(image, "detach"):  # a torch tensor: CxHxW or 1xCxHxW
        tensor = image.detach().to("cpu")
        if tensor.ndim == 4:
            if tensor.shape[0] != 1:
                raise ValueError(f"write_image takes one image, got a batch of {tensor.shape[0]}")
            tensor = tensor[0]
        if tensor.ndim == 3:
            tensor = tensor.permute(1, 2, 0)
        array = tensor.float().numpy()
    else:
        array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"expected HxW, HxWx1, HxWx3 or HxWx4 (or CxHxW), got {array.shape}")
    return array


def _quantise(array: np.ndarray, bit_depth: int) -> np.ndarray:
    """uint8 (8-bit) and uint16 (16-bit) as they are; anything else clipped to [0, 1] (NaN
    as 0) and rounded to the bit depth."""
    if array.dtype == np.uint8 and bit_depth == 8:
        return array
    if array.dtype == np.uint16 and bit_depth == 16:
        return array
    peak = 255.0 if bit_depth == 8 else 65535.0
    values = np.clip(np.nan_to_num(array.astype(np.float64), nan=0.0), 0.0, 1.0)
    return np.rint(values * peak).astype(np.uint8 if bit_depth == 8 else np.uint16)


def _encode(tmp: Path, pixels: np.ndarray, path: Path, bit_depth: int) -> None:
    """Write ``pixels`` to ``tmp`` in the format ``path``'s suffix names."""
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        photometric = "rgb" if pixels.ndim == 3 else "minisblack"
        tifffile.imwrite(tmp, pixels, photometric=photometric)
    elif bit_depth == 16:
        if suffix not in (".png", ""):
            raise ValueError(f"16-bit images are written as PNG or TIFF, not {suffix}")
        import cv2

        bgr = pixels if pixels.ndim == 2 else pixels[..., [2, 1, 0, 3][: pixels.shape[2]]]
        ok, data = cv2.imencode(".png", np.ascontiguousarray(bgr))
        if not ok:
            raise OSError(f"could not encode {path} as 16-bit PNG")
        tmp.write_bytes(data.tobytes())
    else:
        fmt = "PNG" if suffix in (".png", "") else Image.registered_extensions().get(suffix)
        if fmt is None:
            raise ValueError(f"unknown image suffix {suffix!r} for {path}")
        pil = Image.fromarray(pixels)
        if fmt == "JPEG" and pil.mode == "RGBA":
            pil = pil.convert("RGB")
        pil.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def write_image(path: str | os.PathLike, image: Any, bit_depth: int = 8) -> Path:
    """Write an image in [0, 1] (numpy HxW[xC] or torch CxHxW / 1xCxHxW) as PNG.

    Values are clipped to [0, 1] and rounded to 8 or 16 bits. uint8 (and, for 16-bit,
    uint16) arrays are written as they are. The file is written under a temporary name in
    the same folder and then renamed, so a reader never sees half a file; parent folders
    are created. A ``.tif``/``.tiff`` suffix writes TIFF instead (8 or 16 bits); other
    suffixes Pillow knows (``.jpg``, ``.bmp``, ``.webp``) are written 8-bit by Pillow.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    path = Path(path)
    pixels = _quantise(_as_hwc(image), bit_depth)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        _encode(tmp, pixels, path, bit_depth)
    return path


def encode_image(image: Any, suffix: str = ".png") -> bytes:
    """An 8-bit image in [0, 1] (as :func:`write_image` takes it) encoded in memory in the
    format ``suffix`` names (``.png``, ``.jpg``, ...), e.g. for a data URI."""
    import io

    pixels = _quantise(_as_hwc(image), 8)
    fmt = "PNG" if suffix.lower() == ".png" else Image.registered_extensions().get(suffix.lower())
    if fmt is None:
        raise ValueError(f"unknown image suffix {suffix!r}")
    pil = Image.fromarray(pixels)
    buffer = io.BytesIO()
    pil.convert("RGB" if fmt == "JPEG" else pil.mode).save(buffer, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


# --------------------------------------------------------------------------- scanning


def scan_images(root: str | os.PathLike, *, exclude: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Every image file under ``root`` (recursively), in a deterministic sorted order.

    Extensions (any case): jpg, jpeg, png, bmp, tif, tiff, webp, ppm. Hidden files and
    folders (names starting with ``.``, e.g. macOS ``._x.jpg`` resource forks) are
    skipped, and so are the folders in ``exclude``. A missing folder, or one without
    images, is a :class:`DataError` naming it.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"not a folder: {root}")
    skip = {Path(p).resolve() for p in exclude}
    found: list[tuple[str, Path]] = []
    seen: set[tuple[int, int]] = set()  # followed symlinks must not loop
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        stat = here.stat()
        if (stat.st_dev, stat.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirnames[:] = [
            d for d in dirnames if not d.startswith(".") and (here / d).resolve() not in skip
        ]
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            full = here / name
            found.append((full.relative_to(root).as_posix(), full))
    if not found:
        exts = " ".join(IMAGE_EXTENSIONS)
        raise DataError(f"no images found in {root} (looked for {exts}, in it and its subfolders)")
    found.sort(key=lambda item: item[0])
    return [p for _, p in found]
