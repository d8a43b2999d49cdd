"""Image files in and out: one reader used everywhere, an atomic writer, the folder scan
and the integrity check of a data set.

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

Only the formats of :data:`PIL_FORMATS` are opened (PNG, JPEG/MPO, BMP, TIFF, WebP, PPM),
whatever the file's name says: anything else (an EPS or PDF file named ``.png``) is refused
before any decoder sees it, naming the format found.

It refuses with one :class:`~img2img.errors.DataError` that names the file: missing and
zero-byte files, files that are not images or are in another format, truncated or corrupt
files, float files holding NaN or infinite values, and images above the limits, which are
checked on the header before anything is decoded: the pixel limit (``max_pixels``, the
config's ``data.max_pixels``, width x height) and the byte limit derived from it
(:data:`BYTES_PER_PIXEL` x ``max_pixels``; width x height x samples per pixel x bytes per
sample, which bounds TIFFs with many samples per pixel). Pillow's process-wide
``Image.MAX_IMAGE_PIXELS`` is read, never changed: files are opened through the decoders of
the supported formats directly (the size check here is the one that speaks), and an image
above Pillow's own limit that Pillow would refuse while decoding is decoded by tifffile
(plain TIFF) or refused with a message (other TIFF, WebP). Pillow's
``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False (its default) for truncation to be
caught; img2img never sets it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from img2img.errors import DataError
from img2img.log import get_logger

log = get_logger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
#: The default pixel limit: the config's ``data.max_pixels`` default, which is also the
#: size at which Pillow's own decompression-bomb check raises an error (2 x 89,478,485).
DEFAULT_MAX_PIXELS = 178_956_970

#: The formats img2img reads, by Pillow's names. A file is handed only to these decoders,
#: whatever its name says (Pillow's own sniffing would pass an EPS file to Ghostscript).
PIL_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "TIFF", "WEBP", "PPM")
#: The byte limit is this many bytes per pixel of the pixel limit: the widest layout the
#: reader takes (four 64-bit float samples), so every image within the pixel limit and with
#: 1 to 4 samples per pixel is within it; only odd layouts (thousands of samples per pixel,
#: volumes) can exceed it.
BYTES_PER_PIXEL = 32

_GREY_MODES = {"1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N", "LA", "La"}
_ALPHA_MODES = {"RGBA", "LA", "La", "RGBa", "PA"}
_PLUGINS_READY = False


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


# --------------------------------------------------------------------------- opening


def _pil_plugins() -> None:
    """Register the Pillow plugins of :data:`PIL_FORMATS` (importing one registers it)."""
    global _PLUGINS_READY
    if _PLUGINS_READY:
        return
    from PIL import (  # noqa: F401
        BmpImagePlugin,
        JpegImagePlugin,
        MpoImagePlugin,
        PngImagePlugin,
        PpmImagePlugin,
        TiffImagePlugin,
    )

    try:
        from PIL import WebPImagePlugin  # noqa: F401
    except ImportError:  # a Pillow built without WebP
        pass
    _PLUGINS_READY = True


def _sniff_format(prefix: bytes) -> str | None:
    """Pillow's name of the (unsupported) format whose signature ``prefix`` carries, for
    the message. Only the plugins' signature checks run on the 16 bytes: nothing is opened."""
    if prefix.startswith(b"%PDF"):
        return "PDF"
    Image.init()
    for name in Image.ID:
        if name in PIL_FORMATS:
            continue
        accept = Image.OPEN.get(name, (None, None))[1]
        if accept is None:
            continue
        try:
            result = accept(prefix)
        except Exception:  # a signature check that chokes on 16 bytes says nothing
            continue
        if result and not isinstance(result, str):
            return name
    return None


def _pil_open(path: Path, max_pixels: int) -> Image.Image:
    """What ``Image.open(path, formats=PIL_FORMATS)`` does, without Pillow's own
    decompression-bomb check (which reads, and would need img2img to change, the
    process-wide ``Image.MAX_IMAGE_PIXELS``): the caller checks the size from the header.
    A TIFF's layout (samples per pixel, bytes) is checked here, before Pillow parses it."""
    _pil_plugins()
    try:
        with open(path, "rb") as f:
            prefix = f.read(16)
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err})") from None
    if prefix[:4] in _TIFF_MAGIC:
        _precheck_tiff(path, max_pixels)
    for name in PIL_FORMATS:
        entry = Image.OPEN.get(name)
        if entry is None:
            continue
        factory, accept = entry
        if accept is not None:
            result = accept(prefix)
            if not result or isinstance(result, str):
                continue
        try:
            return factory(str(path), str(path))
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue  # not this format after all (as Image.open goes on to the next)
        except Image.DecompressionBombError:  # WebP checks its size while opening
            raise DataError(
                f"{path}: the {name} image is above Pillow's own decompression-bomb limit "
                f"(2 x PIL.Image.MAX_IMAGE_PIXELS = {2 * (Image.MAX_IMAGE_PIXELS or 0):,} "
                "pixels), which img2img does not change for the process; convert it to PNG"
            ) from None
        except (OSError, ValueError, EOFError) as err:
            raise DataError(f"{path}: cannot open the image ({err})") from None
    found = _sniff_format(prefix)
    if found is not None:
        raise DataError(
            f"{path}: {found} format, which img2img does not open (it reads PNG, JPEG, BMP, "
            "TIFF, WebP and PPM, whatever the file name says); convert it to PNG"
        )
    raise DataError(f"{path}: not an image file (or a format Pillow cannot read)")


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Open the header of ``path`` (nothing decoded yet) and apply the pixel limit."""
    try:
        nbytes = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err})") from None
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not an image file")
    if nbytes == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    im = _pil_open(path, max_pixels)
    try:
        _check_pixels(path, *im.size, max_pixels)
    except DataError:
        im.close()
        raise
    return im


def _check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise DataError(
            f"{path}: {width}x{height} = {width * height:,} pixels is above the limit of "
            f"{max_pixels:,} (the pixel limit, data.max_pixels); raise data.max_pixels if the "
            "file is trusted"
        )
    if width < 1 or height < 1:
        raise DataError(f"{path}: image has no pixels ({width}x{height})")


def _check_bytes(
    path: Path, width: int, height: int, samples: int, sample_bytes: int, max_pixels: int
) -> None:
    """The byte limit: what decoding would allocate, from the header, before decoding."""
    need = width * height * samples * sample_bytes
    limit = max_pixels * BYTES_PER_PIXEL
    if need > limit:
        raise DataError(
            f"{path}: decoding {width}x{height} pixels x {samples:,} samples x {sample_bytes} "
            f"byte(s) would take {need:,} bytes, above the limit of {limit:,} bytes "
            f"({BYTES_PER_PIXEL} per pixel of data.max_pixels); raise data.max_pixels if the "
            "file is trusted"
        )


def _check_finite(path: Path, array: np.ndarray) -> None:
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


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in _TIFF_MAGIC


def _load_tiff_without_pillow(path: Path, max_pixels: int, alpha: str) -> tuple[np.ndarray, ImageInfo]:
    """TIFFs Pillow cannot open (float RGB, BigTIFF, ...) through tifffile alone, with
    the same pixel limit (from the header) and orientation handling."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            height = page.shape[page.axes.index("Y")]
            width = page.shape[page.axes.index("X")]
            tag = page.tags.get(274)
            orientation = int(tag.value) if tag is not None and 1 <= int(tag.value) <= 8 else 1
    except Exception as err:  # tifffile raises many types on bad files
        raise DataError(f"{path}: not an image file that img2img can read ({err})") from None
    _check_pixels(path, width, height, max_pixels)
    try:
        raw = apply_orientation(_decode_tiff(path, max_pixels), orientation)
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"{path}: truncated or corrupt image data ({err})") from None
    _check_finite(path, raw)
    channels = 1 if raw.ndim == 2 else raw.shape[2]
    info = ImageInfo(
        path=str(path), format="TIFF", mode=str(raw.dtype), size=(int(raw.shape[1]), int(raw.shape[0])),
        channels=channels, bit_depth=raw.dtype.itemsize * 8, has_alpha=channels in (2, 4),
        orientation=orientation,
    )
    return _to_rgb01(raw, alpha, path), info


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not make the image unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _exif_orientation(raw: bytes | None) -> int:
    """The orientation tag of a raw EXIF block (1 when there is none or it is broken)."""
    if not raw:
        return 1
    try:
        exif = Image.Exif()
        exif.load(raw)
        value = exif.get(0x0112, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _oriented_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


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


def _png_walk(path: Path) -> tuple[str | None, bytes | None]:
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


def _png_header(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) from a PNG's IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) >= 26 and head[12:16] == b"IHDR":
        return int(head[24]), int(head[25])
    return 8, 2


def _tiff_bits(im: Image.Image) -> tuple[int, bool]:
    """(largest bits per sample, float samples) of a TIFF from its tags."""
    tags = getattr(im, "tag_v2", {})
    bits = tags.get(258, 8)
    bits = max(bits) if isinstance(bits, tuple) else int(bits)
    sample_format = tags.get(339, 1)
    sample_format = sample_format[0] if isinstance(sample_format, tuple) else sample_format
    return bits, sample_format == 3


# --------------------------------------------------------------------------- decoding


def _decode_cv2_png16(path: Path) -> np.ndarray:
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if array is None:
        raise DataError(f"{path}: truncated or corrupt PNG data")
    if array.ndim == 3:
        if array.shape[2] == 3:
            array = array[..., ::-1]
        elif array.shape[2] == 4:
            array = array[..., [2, 1, 0, 3]]
    return array


def _decode_cv2_jpeg(path: Path) -> np.ndarray | None:
    """A complete (EOI-terminated) YCbCr JPEG through OpenCV: the same libjpeg-turbo
    output as Pillow's, about 25% faster. None when OpenCV cannot decode it (Pillow then
    decodes it and reports the error)."""
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.ndim != 3:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _decode_cv2_tiff(path: Path) -> np.ndarray:
    import cv2

    array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if array is None:
        raise DataError(f"{path}: a TIFF compression that neither tifffile nor OpenCV can decode")
    if array.ndim == 3 and array.shape[2] == 3:
        array = array[..., ::-1]
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(array)


def _check_tiff_layout(path: Path, page: Any, max_pixels: int) -> None:
    """The byte limit and the samples per pixel of a tifffile page, from its header: a
    TIFF may declare thousands of samples per pixel (or a depth), which the pixel limit
    does not count."""
    shape = [int(n) for n in page.shape]
    axes = str(page.axes)
    if "Y" not in axes or "X" not in axes:
        raise DataError(f"{path}: unsupported TIFF layout (axes {axes}, shape {tuple(shape)})")
    height, width = shape[axes.index("Y")], shape[axes.index("X")]
    per_pixel = math.prod(shape) // max(1, width * height)
    dtype = page.dtype
    sample_bytes = dtype.itemsize if dtype is not None else max(1, (int(page.bitspersample) + 7) // 8)
    _check_bytes(path, width, height, per_pixel, sample_bytes, max_pixels)
    if per_pixel > 4:
        raise DataError(
            f"{path}: unsupported TIFF layout ({per_pixel:,} samples per pixel, axes {axes}); "
            "img2img reads 1 to 4 (grey, grey + alpha, RGB, RGBA): convert the file"
        )


def _precheck_tiff(path: Path, max_pixels: int) -> None:
    """:func:`_check_tiff_layout` on the first page's header, before Pillow sees the file
    (Pillow's TIFF plugin logs its own error for many samples per pixel). A header tifffile
    cannot parse is left to the decoders, which say what is wrong with it."""
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception:
        return
    with tif:
        try:
            _check_tiff_layout(path, tif.pages[0], max_pixels)
        except DataError:
            raise
        except Exception:
            return


def _decode_tiff(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        _check_tiff_layout(path, page, max_pixels)
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


def _pil_array(im: Image.Image, has_alpha: bool) -> np.ndarray:
    """Decode a Pillow image (orientation already applied) into uint8/uint16/float arrays
    with 1-4 channels; alpha, when present, is the last channel."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
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


def _to_rgb01(array: np.ndarray, alpha: str, path: Path) -> np.ndarray:
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
        im = _open(path, limit)
    except DataError as err:
        if "not an image file" in str(err) and _is_tiff(path):
            return _load_tiff_without_pillow(path, limit, alpha)
        raise
    try:
        fmt = im.format or "?"
        mode = im.mode
        # Pillow's getexif() on a PNG decodes the pixels and swallows a decoding error
        # (the later read then returns zeros): a PNG's orientation comes from its chunks.
        orientation = 1 if fmt == "PNG" else _orientation(im)
        has_alpha = mode in _ALPHA_MODES or (
            mode in ("P", "L", "RGB") and "transparency" in im.info
        )
        colour = mode not in _GREY_MODES
        bit_depth = 8
        route = "pil"
        png_colour_type = None
        if fmt == "PNG":
            problem, exif = _png_walk(path)
            if problem:
                raise DataError(f"{path}: {problem}")
            orientation = _exif_orientation(exif)
            png_bits, png_colour_type = _png_header(path)
            if png_bits == 16:
                bit_depth = 16
                if mode not in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                    route = "cv2"
        elif fmt == "TIFF":
            bits, is_float = _tiff_bits(im)
            if is_float:
                bit_depth, route = 32, "tiff"
            elif bits > 8:
                bit_depth, route = 16, "tiff"
        elif mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            bit_depth = 16
        elif mode == "F":
            bit_depth = 32
        if route == "pil" and fmt == "JPEG" and mode == "RGB" and _jpeg_complete(path):
            route = "cv2-jpeg"
        width, height = im.size
        if route == "cv2":  # 16-bit PNG: at most 4 samples of 2 bytes
            _check_bytes(path, width, height, 4, 2, limit)
        elif route != "tiff":  # tifffile's route checks its own header
            samples = max(len(im.getbands()), (3 if colour else 1) + has_alpha)
            sample_bytes = 4 if mode in ("I", "F") else 2 if mode.startswith("I;16") else 1
            _check_bytes(path, width, height, samples, sample_bytes, limit)
        quiet = False  # Pillow's TIFF decoder checks the size against its own limit again
        pil_limit = Image.MAX_IMAGE_PIXELS
        if fmt == "TIFF" and route == "pil" and pil_limit is not None and width * height > pil_limit:
            if width * height <= 2 * pil_limit:
                quiet = True  # only Pillow's warning: within img2img's limit, say nothing
            elif mode in ("L", "LA", "RGB", "RGBA") and im.tag_v2.get(262) in (1, 2):
                route = "tiff"  # plain samples: tifffile reads them as Pillow would
            else:
                raise DataError(
                    f"{path}: a {width}x{height} {mode} TIFF is above Pillow's own "
                    f"decompression-bomb limit (2 x PIL.Image.MAX_IMAGE_PIXELS = "
                    f"{2 * pil_limit:,} pixels), which img2img does not change for the "
                    "process; convert it to PNG"
                )
        try:
            raw = None
            if route == "cv2-jpeg":
                raw = _decode_cv2_jpeg(path)
                if raw is not None and orientation != 1:
                    raw = np.ascontiguousarray(apply_orientation(raw, orientation))
            if raw is not None:
                pass
            elif route in ("pil", "cv2-jpeg"):
                with warnings.catch_warnings() if quiet else contextlib.nullcontext():
                    if quiet:
                        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    if orientation != 1:
                        ImageOps.exif_transpose(im, in_place=True)
                    raw = _pil_array(im, has_alpha)
            else:
                raw = _decode_cv2_png16(path) if route == "cv2" else _decode_tiff(path, limit)
                if raw.ndim == 3 and raw.shape[2] in (2, 4):
                    has_alpha = True
                colour = raw.ndim == 3 and raw.shape[2] >= 3
                if png_colour_type is not None:  # OpenCV expands grey(+alpha) to BGR(A)
                    colour = png_colour_type in (2, 3, 6)
                raw = apply_orientation(raw, orientation)
        except DataError:
            raise
        except Exception as err:  # decoders raise many types on bad data
            raise DataError(f"{path}: truncated or corrupt image data ({err})") from None
    finally:
        im.close()
    _check_finite(path, raw)
    channels = (3 if colour else 1) + (1 if has_alpha else 0)
    height, width = raw.shape[:2]
    info = ImageInfo(
        path=str(path),
        format=fmt,
        mode=mode,
        size=(int(width), int(height)),
        channels=channels,
        bit_depth=bit_depth,
        has_alpha=has_alpha,
        orientation=orientation,
    )
    if raw.dtype == np.uint8 and raw.ndim == 3 and raw.shape[2] == 3:
        return np.ascontiguousarray(raw), info
    if raw.dtype == np.uint8 and raw.ndim == 2:
        return np.repeat(raw[..., None], 3, axis=2), info
    if raw.dtype == np.uint8 and alpha == "drop":
        colour_part = raw[..., :3] if raw.shape[2] >= 3 else raw[..., :1]
        if colour_part.shape[2] == 1:
            colour_part = np.repeat(colour_part, 3, axis=2)
        return np.ascontiguousarray(colour_part), info
    return _to_rgb01(raw, alpha, path), info


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
    array = _as_hwc(image)
    if array.dtype == np.uint8 and bit_depth == 8:
        pixels = array
    elif array.dtype == np.uint16 and bit_depth == 16:
        pixels = array
    else:
        peak = 255.0 if bit_depth == 8 else 65535.0
        values = np.clip(np.nan_to_num(array.astype(np.float64), nan=0.0), 0.0, 1.0)
        pixels = np.rint(values * peak).astype(np.uint8 if bit_depth == 8 else np.uint16)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
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
            fmt = "PNG" if suffix in (".png", "") else None
            if fmt is None:
                fmt = Image.registered_extensions().get(suffix)
                if fmt is None:
                    raise ValueError(f"unknown image suffix {suffix!r} for {path}")
            pil = Image.fromarray(pixels)
            if fmt == "JPEG" and pil.mode == "RGBA":
                pil = pil.convert("RGB")
            pil.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


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


# --------------------------------------------------------------------------- checking

#: What the integrity check does, per file (documented in datasets/README.md):
#: - always: the file exists and is not empty; its header is one of the supported formats
#:   (:data:`PIL_FORMATS`); the pixel limit holds (header size, before any decoding), and
#:   for TIFF the byte limit and 1 to 4 samples per pixel; EXIF orientation gives the size;
#: - float pixels (TIFF, PFM) must be finite: they are decoded, so a NaN is found;
#: - PNG: ``verify()`` walks every chunk to IEND checking CRCs (catches truncation and
#:   corruption without decoding pixels);
#: - JPEG: the data must end with the EOI marker (catches truncation); a file that does
#:   not is fully decoded to decide;
#: - other formats (BMP, TIFF, WebP, PPM), and every file when ``full_decode`` is set
#:   (as ``img2img data check`` does): a full decode through :func:`load_image`.
#: A JPEG whose entropy-coded data is corrupt but complete passes the fast check; when it
#: is decoded in a DataLoader worker the error is a DataError naming the file.


def _jpeg_complete(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 4096))
        tail = f.read().rstrip(b"\x00\r\n\t ")
    return tail.endswith(b"\xff\xd9")


def inspect_image(
    path: Path, max_pixels: int | None = None, full_decode: bool = False
) -> tuple[tuple[int, int] | None, str | None]:
    """``((width, height), None)`` for a good file, ``(None, reason)`` for a bad one."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    try:
        if full_decode:
            _, info = load_image(path, max_pixels=limit)
            return info.size, None
        try:
            im = _open(path, limit)
        except DataError as err:
            if "not an image file" in str(err) and _is_tiff(path):  # tifffile decodes it
                return load_image(path, max_pixels=limit)[1].size, None
            raise
        try:
            fmt = im.format
            if fmt == "PNG":
                # Pillow's getexif() on a PNG decodes the pixels unless the eXIf chunk came
                # before the image data; the chunk walk finds it wherever it is.
                problem, exif = _png_walk(path)
                if problem:
                    raise DataError(f"{path}: {problem}")
                return _oriented_size(im.size, _exif_orientation(exif)), None
            size = _oriented_size(im.size, _orientation(im))
            if fmt in ("JPEG", "MPO") and _jpeg_complete(path):
                return size, None
        finally:
            im.close()
        _, info = load_image(path, max_pixels=limit)
        return info.size, None
    except DataError as err:
        message = str(err)
        prefix = f"{path}: "
        return None, message[len(prefix):] if message.startswith(prefix) else message


def inspect_files(
    paths: Sequence[Path], max_pixels: int | None = None, full_decode: bool = False
) -> tuple[dict[Path, tuple[int, int]], list[tuple[Path, str]]]:
    """Check many files (threads: decoding and CRCs release the GIL).

    Returns ``(sizes of the good files, [(bad file, reason), ...])`` in input order.
    """
    paths = list(paths)

    def one(p: Path) -> tuple[tuple[int, int] | None, str | None]:
        return inspect_image(p, max_pixels, full_decode)

    if len(paths) <= 8:
        results = [one(p) for p in paths]
    else:
        workers = min(8, 2 * (os.cpu_count() or 2))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, paths, chunksize=16))
    sizes: dict[Path, tuple[int, int]] = {}
    bad: list[tuple[Path, str]] = []
    for p, (size, reason) in zip(paths, results):
        if reason is None and size is not None:
            sizes[p] = size
        else:
            bad.append((p, reason or "unreadable"))
    return sizes, bad


def format_problems(problems: Sequence[tuple[Path | str, str]], limit: int | None = None) -> str:
    shown = problems if limit is None else problems[:limit]
    lines = [f"  {path}: {reason}" for path, reason in shown]
    if limit is not None and len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


#: The last line of the on_error=raise error, for training.
TRAIN_HINT = "Fix or remove them, or set data.on_error=skip to train without them."


def apply_on_error(
    problems: Sequence[tuple[Path | str, str]], on_error: str, where: str = "the data",
    hint: str = TRAIN_HINT,
) -> None:
    """``raise``: one DataError listing every problem, ending with ``hint`` (what to do);
    ``skip``: one warning with the count."""
    if not problems:
        return
    if on_error == "raise":
        raise DataError(f"{len(problems)} bad file(s) in {where}:\n{format_problems(problems)}\n{hint}")
    if on_error != "skip":
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    for path, reason in problems:
        log.debug("skipping %s: %s", path, reason)
    log.warning(
        "skipping %d bad file(s) in %s (data.on_error=skip), e.g. %s: %s; "
        "'img2img data check CONFIG' lists them all",
        len(problems),
        where,
        problems[0][0],
        problems[0][1],
    )


def check_files(
    paths: Sequence[str | os.PathLike],
    max_pixels: int | None = None,
    on_error: str = "raise",
    *,
    full_decode: bool = False,
) -> list[Path]:
    """The files of ``paths`` that pass the integrity check (see above), in order.

    ``on_error="raise"``: one DataError listing every bad file with its reason.
    ``on_error="skip"``: bad files are dropped with one warning that counts them.
    """
    paths = [Path(p) for p in paths]
    sizes, bad = inspect_files(paths, max_pixels, full_decode)
    apply_on_error(bad, on_error)
    return [p for p in paths if p in sizes]
