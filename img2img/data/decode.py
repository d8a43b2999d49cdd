"""The decoding paths: from a file whose header passed :mod:`img2img.data.header` to an
array of its samples, at full bit depth, oriented as a viewer shows it.

:func:`plan_decoding` reads what the file holds from its header and picks the route;
:func:`check_decoding` applies the byte limit of that route (and Pillow's own limit for a
TIFF it would decode); :func:`decode` runs it:

- ``pil``: Pillow (:func:`pil_array`), for 8-bit files, palettes, CMYK, 16-bit grey PNG
  (mode ``I;16``) and the rest;
- ``cv2``: a 16-bit colour PNG through OpenCV (Pillow reduces it to 8 bits); every PNG's
  chunks are walked first, checking every CRC to IEND and finding the eXIf chunk wherever
  it sits;
- ``tiff``: tifffile at full bit depth (16-bit, float, planar); compressions it needs the
  optional imagecodecs package for go through OpenCV's libtiff;
- ``cv2-jpeg``: a complete RGB JPEG through OpenCV (the same libjpeg-turbo output as
  Pillow's, faster); Pillow when OpenCV cannot decode it.

Arrays are uint8, uint16 or float with 1 to 4 channels, alpha last; :func:`to_rgb01`
turns them into float32 RGB in [0, 1].
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from img2img.data.header import (
    DEFAULT_MAX_PIXELS,
    check_bytes,
    check_tiff_layout,
    exif_orientation,
    image_orientation,
    tiff_bits,
)
from img2img.data.modes import PIL_16BIT_MODES, PIL_DEEP_INT_MODES
from img2img.errors import DataError

_GREY_MODES = {"1", "L", "I", "F", *PIL_16BIT_MODES, "LA", "La"}
_ALPHA_MODES = {"RGBA", "LA", "La", "RGBa", "PA"}

# --------------------------------------------------------------------------- PNG


def png_walk(path: Path) -> tuple[str | None, bytes | None]:
    """Walk a PNG's chunks to IEND checking every CRC: ``(problem, exif)`` where problem
    is None for an intact file, and exif is the eXIf chunk's data wherever it sits (Pillow
    sees one after the image data only once the pixels are decoded). Cheap next to
    decoding: one read of the file and a CRC32 over it."""
    data = memoryview(path.read_bytes())
    pos, exif = 8, None
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = bytes(data[pos + 4 : pos + 8])
        end = pos + 12 + length
        name = kind.decode("latin-1")
        if end > len(data):
            return f"truncated PNG (the {name} chunk runs past the end of the file)", exif
        if zlib.crc32(data[pos + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            return f"corrupt PNG (bad checksum in the {name} chunk)", exif
        if kind == b"eXIf":
            exif = bytes(data[pos + 8 : end - 4])
        if kind == b"IEND":
            return None, exif
        pos = end
    return "truncated PNG (no IEND chunk)", exif


def png_header(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) from a PNG's IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) >= 26 and head[12:16] == b"IHDR":
        return int(head[24]), int(head[25])
    return 8, 2


def _bgr_to_rgb(array: np.ndarray) -> np.ndarray:
    """OpenCV's BGR(A) channel order as RGB(A); grey and grey + alpha as they are."""
    if array.ndim == 3 and array.shape[2] == 3:
        return array[..., ::-1]
    if array.ndim == 3 and array.shape[2] == 4:
        return array[..., [2, 1, 0, 3]]
    return array


def decode_png16(path: Path) -> np.ndarray:
    """A 16-bit PNG through OpenCV, as RGB(A) (OpenCV expands grey(+alpha) to BGR(A))."""
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if array is None:
        raise DataError(f"{path}: truncated or corrupt PNG data")
    return _bgr_to_rgb(array)


# --------------------------------------------------------------------------- JPEG


def jpeg_complete(path: Path) -> bool:
    """Whether a JPEG's data ends with the EOI marker (a truncated one does not)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 4096))
        tail = f.read().rstrip(b"\x00\r\n\t ")
    return tail.endswith(b"\xff\xd9")


def decode_jpeg(path: Path) -> np.ndarray | None:
    """A complete (EOI-terminated) YCbCr JPEG through OpenCV: the same libjpeg-turbo
    output as Pillow's, and faster. None when OpenCV cannot decode it (Pillow then
    decodes it and reports the error)."""
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.ndim != 3:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- TIFF


def _decode_cv2_tiff(path: Path) -> np.ndarray:
    import cv2

    array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if array is None:
        raise DataError(f"{path}: a TIFF compression that neither tifffile nor OpenCV can decode")
    return np.ascontiguousarray(_bgr_to_rgb(array))


def decode_tiff(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The first page of a TIFF through tifffile (its layout checked first), samples last."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        check_tiff_layout(path, page, max_pixels)
        try:
            array = page.asarray()
        except ValueError as err:
            if "imagecodecs" not in str(err):
                raise
            # A compression tifffile needs the optional imagecodecs package for (LZW,
            # JPEG, ...): OpenCV's own libtiff decodes it, at full bit depth.
            return _decode_cv2_tiff(path)
        axes = page.axes
    if "S" in axes and axes.index("S") < axes.index("Y"):  # planar: samples first
        array = np.moveaxis(array, axes.index("S"), -1)
    array = np.squeeze(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] > 4):
        raise DataError(f"{path}: unsupported TIFF layout (axes {axes}, shape {array.shape})")
    return array


# --------------------------------------------------------------------------- Pillow


def pil_array(im: Image.Image, has_alpha: bool) -> np.ndarray:
    """Decode a Pillow image (orientation already applied) into uint8/uint16/float arrays
    with 1-4 channels; alpha, when present, is the last channel."""
    mode = im.mode
    if mode in PIL_16BIT_MODES:
        return np.asarray(im).astype(np.uint16, copy=False)
    if mode == "I":  # 32-bit integer: Pillow's mode for some 16-bit files
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
    if mode == "F":
        return np.asarray(im, dtype=np.float32)
    if has_alpha:
        if mode not in ("RGBA", "LA"):
            im = im.convert("RGBA")
        return np.asarray(im)
    if mode in ("RGB", "L"):
        return np.asarray(im)
    if mode == "1":
        return np.asarray(im.convert("L"))
    return np.asarray(im.convert("RGB"))


# --------------------------------------------------------------------------- routes


@dataclasses.dataclass
class DecodePlan:
    """What an open file holds, from its header, and which decoder reads it: ``pil``,
    ``cv2-jpeg`` (a complete RGB JPEG), ``cv2`` (16-bit colour PNG) or ``tiff`` (tifffile).
    The full-depth decoders correct ``has_alpha`` and ``colour`` from what they decode."""

    fmt: str
    mode: str
    orientation: int
    has_alpha: bool
    colour: bool
    bit_depth: int = 8
    route: str = "pil"
    png_colour_type: int | None = None
    quiet: bool = False  # Pillow's decompression-bomb warning is silenced while decoding


def plan_decoding(path: Path, im: Image.Image) -> DecodePlan:
    """What the open file ``im`` holds, from its header, and which decoder reads it."""
    fmt, mode = im.format or "?", im.mode
    plan = DecodePlan(
        fmt=fmt,
        mode=mode,
        # Pillow's getexif() on a PNG decodes the pixels and swallows a decoding error
        # (the later read then returns zeros): a PNG's orientation comes from its chunks.
        orientation=1 if fmt == "PNG" else image_orientation(im),
        has_alpha=mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in im.info),
        colour=mode not in _GREY_MODES,
    )
    if fmt == "PNG":
        _plan_png(path, plan)
    elif fmt == "TIFF":
        bits, is_float = tiff_bits(im)
        if is_float:
            plan.bit_depth, plan.route = 32, "tiff"
        elif bits > 8:
            plan.bit_depth, plan.route = 16, "tiff"
    elif mode in PIL_DEEP_INT_MODES:
        plan.bit_depth = 16
    elif mode == "F":
        plan.bit_depth = 32
    if plan.route == "pil" and fmt == "JPEG" and mode == "RGB" and jpeg_complete(path):
        plan.route = "cv2-jpeg"
    return plan


def _plan_png(path: Path, plan: DecodePlan) -> None:
    """A PNG's chunks are checked whole (CRCs to IEND) and give its orientation and depth."""
    problem, exif = png_walk(path)
    if problem:
        raise DataError(f"{path}: {problem}")
    plan.orientation = exif_orientation(exif)
    bits, plan.png_colour_type = png_header(path)
    if bits == 16:
        plan.bit_depth = 16
        if plan.mode not in PIL_DEEP_INT_MODES:
            plan.route = "cv2"


def check_decoding(path: Path, im: Image.Image, plan: DecodePlan, limit: int) -> None:
    """The byte limit of the planned route, and Pillow's own size limit for a TIFF it
    decodes (within twice that limit only its warning, silenced; plain samples above it go
    to tifffile; anything else is refused)."""
    width, height = im.size
    if plan.route == "cv2":  # 16-bit PNG: at most 4 samples of 2 bytes
        check_bytes(path, width, height, 4, 2, limit)
    elif plan.route != "tiff":  # tifffile's route checks its own header
        samples = max(len(im.getbands()), (3 if plan.colour else 1) + plan.has_alpha)
        sample_bytes = 4 if plan.mode in ("I", "F") else 2 if plan.mode in PIL_16BIT_MODES else 1
        check_bytes(path, width, height, samples, sample_bytes, limit)
    pil_limit = Image.MAX_IMAGE_PIXELS
    if plan.fmt != "TIFF" or plan.route != "pil" or pil_limit is None or width * height <= pil_limit:
        return
    if width * height <= 2 * pil_limit:
        plan.quiet = True  # only Pillow's warning: within img2img's limit, say nothing
    elif plan.mode in ("L", "LA", "RGB", "RGBA") and im.tag_v2.get(262) in (1, 2):
        plan.route = "tiff"  # plain samples: tifffile reads them as Pillow would
    else:
        raise DataError(
            f"{path}: a {width}x{height} {plan.mode} TIFF is above Pillow's own "
            f"decompression-bomb limit (2 x PIL.Image.MAX_IMAGE_PIXELS = "
            f"{2 * pil_limit:,} pixels), which img2img does not change for the "
            "process; convert it to PNG"
        )


def _decode_pil(im: Image.Image, plan: DecodePlan) -> np.ndarray:
    with warnings.catch_warnings() if plan.quiet else contextlib.nullcontext():
        if plan.quiet:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if plan.orientation != 1:
            ImageOps.exif_transpose(im, in_place=True)
        return pil_array(im, plan.has_alpha)


def _decode_full_depth(path: Path, plan: DecodePlan, limit: int) -> np.ndarray:
    raw = decode_png16(path) if plan.route == "cv2" else decode_tiff(path, limit)
    if raw.ndim == 3 and raw.shape[2] in (2, 4):
        plan.has_alpha = True
    plan.colour = raw.ndim == 3 and raw.shape[2] >= 3
    if plan.png_colour_type is not None:  # OpenCV expands grey(+alpha) to BGR(A)
        plan.colour = plan.png_colour_type in (2, 3, 6)
    return apply_orientation(raw, plan.orientation)


def decode(path: Path, im: Image.Image, plan: DecodePlan, limit: int) -> np.ndarray:
    """The samples of the file, oriented; any decoder's failure is a DataError."""
    try:
        if plan.route == "cv2-jpeg":
            raw = decode_jpeg(path)
            if raw is not None:
                if plan.orientation != 1:
                    raw = np.ascontiguousarray(apply_orientation(raw, plan.orientation))
                return raw
        if plan.route in ("pil", "cv2-jpeg"):
            return _decode_pil(im, plan)
        return _decode_full_depth(path, plan, limit)
    except DataError:
        raise
    except Exception as err:  # decoders raise many types on bad data
        raise DataError(f"{path}: truncated or corrupt image data ({err})") from None


# --------------------------------------------------------------------------- arrays


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an HxW[xC] array, as Pillow's exif_transpose does."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:  # transpose
        return np.swapaxes(array, 0, 1)
    if orientation == 6:  # rotate 90 clockwise
        return np.rot90(array, -1)
    if orientation == 7:  # transverse
        return np.swapaxes(array[::-1, ::-1], 0, 1)
    if orientation == 8:  # rotate 90 counter-clockwise
        return np.rot90(array, 1)
    return array


def check_finite(path: Path, array: np.ndarray) -> None:
    """Float pixels must be finite: a NaN would pass every check and stop training later."""
    if array.dtype.kind != "f":
        return
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise DataError(
            f"{path}: {bad:,} pixel value(s) are NaN or infinite; img2img needs finite "
            "values: fix the file or remove it"
        )


def to_rgb01(array: np.ndarray, alpha: str, path: Path) -> np.ndarray:
    """uint8/uint16/float array with 1-4 channels -> float32 HxWx3 in [0, 1]."""
    if array.ndim == 2:
        array = array[..., None]
    if array.dtype == np.uint8:
        scale = 255.0
    elif array.dtype == np.uint16:
        scale = 65535.0
    elif array.dtype.kind == "f":
        scale = None
    else:
        raise DataError(f"{path}: unsupported pixel type {array.dtype}")
    channels = array.shape[2]
    colour = array[..., : 3 if channels >= 3 else 1]
    rgb = colour.astype(np.float32)
    if scale is not None:
        rgb /= np.float32(scale)
    else:
        np.clip(rgb, 0.0, 1.0, out=rgb)
    if channels in (2, 4) and alpha == "white":
        a = array[..., -1:].astype(np.float32)
        a = a / np.float32(scale) if scale is not None else np.clip(a, 0.0, 1.0)
        rgb = rgb * a + (1.0 - a)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return np.ascontiguousarray(rgb, dtype=np.float32)
