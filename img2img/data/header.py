"""Opening an image file safely: what is checked on its header, before any pixel is decoded.

- Only the formats of :data:`PIL_FORMATS` are opened, whatever the file's name says: the
  file is handed to those Pillow decoders directly (Pillow's own sniffing would pass an
  EPS file to Ghostscript), and anything else is refused naming the format found.
- The pixel limit (``max_pixels``, the config's ``data.max_pixels``, width x height) and
  the byte limit derived from it (:data:`BYTES_PER_PIXEL` x ``max_pixels``: width x height
  x samples per pixel x bytes per sample) hold before decoding. A TIFF's layout (samples
  per pixel, bytes) is checked before Pillow parses it.
- The EXIF orientation tag is read here (decoding applies it).

Pillow's process-wide ``Image.MAX_IMAGE_PIXELS`` is read, never changed: the size check
here is the one that speaks.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

from PIL import Image

from img2img.errors import DataError

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

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

_PLUGINS_READY = False


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


def _try_format(path: Path, name: str, prefix: bytes) -> Image.Image | None:
    """The file opened by the decoder of format ``name``, or None when it is not one."""
    entry = Image.OPEN.get(name)
    if entry is None:
        return None
    factory, accept = entry
    if accept is not None:
        result = accept(prefix)
        if not result or isinstance(result, str):
            return None
    try:
        return factory(str(path), str(path))
    except (SyntaxError, IndexError, TypeError, struct.error):
        return None  # not this format after all (as Image.open goes on to the next)
    except Image.DecompressionBombError:  # WebP checks its size while opening
        raise DataError(
            f"{path}: the {name} image is above Pillow's own decompression-bomb limit "
            f"(2 x PIL.Image.MAX_IMAGE_PIXELS = {2 * (Image.MAX_IMAGE_PIXELS or 0):,} "
            "pixels), which img2img does not change for the process; convert it to PNG"
        ) from None
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: cannot open the image ({err})") from None


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
    if prefix[:4] in TIFF_MAGIC:
        precheck_tiff(path, max_pixels)
    for name in PIL_FORMATS:
        im = _try_format(path, name, prefix)
        if im is not None:
            return im
    found = _sniff_format(prefix)
    if found is not None:
        raise DataError(
            f"{path}: {found} format, which img2img does not open (it reads PNG, JPEG, BMP, "
            "TIFF, WebP and PPM, whatever the file name says); convert it to PNG"
        )
    raise DataError(f"{path}: not an image file (or a format Pillow cannot read)")


def open_header(path: Path, max_pixels: int) -> Image.Image:
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
        check_pixels(path, *im.size, max_pixels)
    except DataError:
        im.close()
        raise
    return im


# --------------------------------------------------------------------------- limits


def check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    """The pixel limit (and at least one pixel)."""
    if width * height > max_pixels:
        raise DataError(
            f"{path}: {width}x{height} = {width * height:,} pixels is above the limit of "
            f"{max_pixels:,} (the pixel limit, data.max_pixels); raise data.max_pixels if the "
            "file is trusted"
        )
    if width < 1 or height < 1:
        raise DataError(f"{path}: image has no pixels ({width}x{height})")


def check_bytes(
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


# --------------------------------------------------------------------------- TIFF


def is_tiff(path: Path) -> bool:
    """Whether ``path`` is a regular file that starts like a TIFF (a folder is not)."""
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) in TIFF_MAGIC


def check_tiff_layout(path: Path, page: Any, max_pixels: int) -> None:
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
    check_bytes(path, width, height, per_pixel, sample_bytes, max_pixels)
    if per_pixel > 4:
        raise DataError(
            f"{path}: unsupported TIFF layout ({per_pixel:,} samples per pixel, axes {axes}); "
            "img2img reads 1 to 4 (grey, grey + alpha, RGB, RGBA): convert the file"
        )


def precheck_tiff(path: Path, max_pixels: int) -> None:
    """:func:`check_tiff_layout` on the first page's header, before Pillow sees the file
    (Pillow's TIFF plugin logs its own error for many samples per pixel). A header tifffile
    cannot parse is left to the decoders, which say what is wrong with it."""
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception:
        return
    with tif:
        try:
            check_tiff_layout(path, tif.pages[0], max_pixels)
        except DataError:
            raise
        except Exception:
            return


def tiff_bits(im: Image.Image) -> tuple[int, bool]:
    """(largest bits per sample, float samples) of a TIFF from its tags."""
    tags = getattr(im, "tag_v2", {})
    bits = tags.get(258, 8)
    bits = max(bits) if isinstance(bits, tuple) else int(bits)
    sample_format = tags.get(339, 1)
    sample_format = sample_format[0] if isinstance(sample_format, tuple) else sample_format
    return bits, sample_format == 3


def tiff_size_and_orientation(path: Path) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) of a TIFF's first page, from tifffile's reading
    of its header (for the TIFFs Pillow cannot open: float RGB, BigTIFF, ...)."""
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
    return width, height, orientation


# --------------------------------------------------------------------------- orientation


def image_orientation(im: Image.Image) -> int:
    """The EXIF orientation (1-8) of an open image; 1 when there is none or it is broken."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not make the image unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def exif_orientation(raw: bytes | None) -> int:
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


def oriented_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """(width, height) as a viewer shows the image once ``orientation`` is applied."""
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size
