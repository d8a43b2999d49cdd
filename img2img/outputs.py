"""Where the CLI writes: output folders and files made up front, with one clear error
(naming the option and the path given) when that cannot be done."""

from __future__ import annotations

import os
from pathlib import Path

from img2img.errors import UserError


def make_folder(folder: Path, option: str = "--out", given: Path | None = None) -> Path:
    """``folder`` created with its parents; a file in the way or an impossible path is
    one UserError naming ``option`` and ``given`` (default: the folder)."""
    name = given if given is not None else folder
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {name}: {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{option} {name}: cannot create the folder {folder} ({err.strerror or err})") from None
    return folder


def writable_parent(path: str | Path, option: str = "--out") -> Path:
    """``path``, a file about to be written, once its folder exists. A folder (one that
    exists, or text ending in a slash, which ``Path`` would drop) is a UserError."""
    text, path = str(path), Path(path).expanduser()
    if path.is_dir() or text.endswith(("/", os.sep)):
        raise UserError(f"{option} {text} is a folder; give a file name")
    make_folder(path.parent, option, given=path)
    return path
