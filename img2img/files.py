"""Files on disk, one way each: atomic writes, the safe reader and writer of weights,
and the first line of an error for one-line messages.

Everything here sits below every other room (it imports only :mod:`img2img.errors`), so
the networks, the data and the engine all use the same pieces.

- :func:`atomic_write` / :func:`write_text_atomic`: write under a temporary name beside
  the target, then rename over it: a reader (or a crash) never sees half a file. The
  temporary name is hidden (``.NAME.<pid>.<thread>.tmp``) and always removed on failure.
- :func:`read_weights_file`: what a ``.safetensors`` file, or a ``.pth``/``.pt``/``.bin``
  file read with ``torch.load(weights_only=True)``, holds. Nothing but tensors and plain
  containers is ever unpickled; every weights file img2img reads comes through here.
- :func:`save_tensors`: safetensors' ``save_file`` whose I/O failures are OSErrors
  naming the file, and whose file gets the usual permissions (0666 less the umask).
- :func:`first_line`: the first line of an exception's message (or its type's name).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def first_line(err: BaseException, default: str | None = None) -> str:
    """The first non-empty line of ``str(err)``; ``default`` (or the exception's type
    name) when the message is empty."""
    text = str(err).strip()
    if text:
        return text.splitlines()[0]
    return default if default is not None else type(err).__name__


def temp_name(path: Path) -> Path:
    """The hidden temporary name :func:`atomic_write` uses for ``path``: unique per
    process and thread, so concurrent writers never share one."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_write(path) as tmp:`` write ``tmp``; on success it is renamed to
    ``path`` (replacing it), on any failure it is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_weights_file(path: str | os.PathLike) -> object:
    """What a ``.safetensors`` file, or a ``.pth``/``.pt``/``.bin`` file read with
    ``torch.load(weights_only=True)``, holds; never unpickles anything but tensors and
    plain containers. A file that cannot be read so is a ValueError with a one-line
    reason (callers add what the file was for)."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:
            raise ValueError(f"not a valid safetensors file ({first_line(err)})") from None
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, refused globals, truncated zip: a bad file
        if isinstance(err, OSError):
            raise ValueError(err.strerror or str(err)) from None
        if "Unpickl" in type(err).__name__ or "weights_only" in str(err):
            raise ValueError(
                "not a PyTorch weights file, or one holding more than tensors (it is read "
                "with weights_only=True and nothing else is unpickled)") from None
        raise ValueError(f"not a PyTorch weights file, or a damaged one (torch.load: {first_line(err)})") from None


def save_tensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                 metadata: dict[str, str] | None = None) -> None:
    """safetensors' ``save_file``, with its I/O failures (out of disk, read-only file
    system) raised as the OSError they are, naming the file."""
    from safetensors.torch import save_file

    try:
        save_file(tensors, str(path), metadata=metadata)
    except Exception as err:
        code = re.search(r"os error (\d+)", str(err))
        if code is None:
            raise
        raise OSError(int(code[1]), os.strerror(int(code[1])), str(path)) from None
    # safetensors >= 0.8 creates its files readable by their owner only (0600); a model
    # file gets the permissions of any other file the user makes (0666 less the umask)
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    try:  # Linux says it without changing it
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
