"""The integrity check of a data set's image files: which files can be read, and what to
do about the others (``data.on_error``).

What is checked, per file (documented in datasets/README.md):

- always: the file exists and is not empty; its header is one of the supported formats
  (:data:`~img2img.data.header.PIL_FORMATS`); the pixel limit holds (header size, before
  any decoding), and for TIFF the byte limit and 1 to 4 samples per pixel; EXIF
  orientation gives the size;
- float pixels (TIFF, PFM) must be finite: they are decoded, so a NaN is found;
- PNG: the chunk walk checks every CRC to IEND (catches truncation and corruption without
  decoding pixels);
- JPEG: the data must end with the EOI marker (catches truncation); a file that does not
  is fully decoded to decide;
- other formats (BMP, TIFF, WebP, PPM), and every file when ``full_decode`` is set (as
  ``img2img data check`` does): a full decode through
  :func:`~img2img.data.io.load_image`.

A JPEG whose entropy-coded data is corrupt but complete passes the fast check; when it is
decoded in a DataLoader worker the error is a DataError naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from img2img.data.decode import jpeg_complete, png_walk
from img2img.data.header import (
    DEFAULT_MAX_PIXELS,
    exif_orientation,
    image_orientation,
    is_tiff,
    open_header,
    oriented_size,
)
from img2img.data.io import load_image
from img2img.errors import DataError
from img2img.log import get_logger

log = get_logger(__name__)

#: The last line of the on_error=raise error, for training.
TRAIN_HINT = "Fix or remove them, or set data.on_error=skip to train without them."


def _fast_size(path: Path, limit: int) -> tuple[int, int] | None:
    """The oriented size of a PNG or a complete JPEG from its header (and, for PNG, its
    intact chunks); None when the file must be decoded to be judged."""
    try:
        im = open_header(path, limit)
    except DataError as err:
        if "not an image file" in str(err) and is_tiff(path):  # tifffile decodes it
            return None
        raise
    try:
        fmt = im.format
        if fmt == "PNG":
            # Pillow's getexif() on a PNG decodes the pixels unless the eXIf chunk came
            # before the image data; the chunk walk finds it wherever it is.
            problem, exif = png_walk(path)
            if problem:
                raise DataError(f"{path}: {problem}")
            return oriented_size(im.size, exif_orientation(exif))
        size = oriented_size(im.size, image_orientation(im))
        if fmt in ("JPEG", "MPO") and jpeg_complete(path):
            return size
    finally:
        im.close()
    return None


def inspect_image(
    path: Path, max_pixels: int | None = None, full_decode: bool = False
) -> tuple[tuple[int, int] | None, str | None]:
    """``((width, height), None)`` for a good file, ``(None, reason)`` for a bad one."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    try:
        size = None if full_decode else _fast_size(path, limit)
        if size is None:
            size = load_image(path, max_pixels=limit)[1].size
        return size, None
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
    """One indented ``path: reason`` line per problem (the first ``limit``, then a count)."""
    shown = problems if limit is None else problems[:limit]
    lines = [f"  {path}: {reason}" for path, reason in shown]
    if limit is not None and len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


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
