"""Downloading one file over HTTP(S), resumable.

:func:`download` writes ``DEST.part`` and renames it to ``DEST`` once complete. A partial
``.part`` left by an interrupted run is resumed with an HTTP Range request (a server that
ignores Range, or answers with another range, restarts the file). Only that ``.part`` is
ever touched, and only while this process holds it: it must be a regular file (a link or
a folder of that name is refused, never followed or deleted), it is locked
(``fcntl.flock``) for the whole download, so a second download of the same file at once
stops with a message instead of writing into it, and it is renamed only while the name
still holds the file written. An empty ``.part`` (nothing received) is removed again.
"""

from __future__ import annotations

import os
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from img2img.errors import DataError
from img2img.log import get_logger

log = get_logger(__name__)

CHUNK = 1 << 20


class _PartFile:
    """``DEST.part``, opened (created when missing) and locked for one download of ``dest``."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.path = dest.with_name(dest.name + ".part")
        self.file: Any = None

    def __enter__(self) -> _PartFile:
        for _ in range(10):  # another run may rename or remove it between open and lock
            self.file = self._open()
            if self._lock() and self._still_named():
                return self
            self.file.close()
        raise DataError(f"{self.path}: another process keeps replacing it; wait and try again")

    def __exit__(self, *exc: object) -> None:
        try:
            if self.size() == 0 and self._still_named():
                self.path.unlink()  # nothing received: no partial download to resume
        finally:
            self.file.close()  # releases the lock

    def _open(self) -> Any:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as err:
            raise DataError(
                f"{self.path}: cannot write the partial download ({err.strerror or err}); if it "
                "is not img2img's, move it away") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise DataError(f"{self.path}: not a regular file, so not img2img's partial download; "
                            "move it away")
        return os.fdopen(fd, "r+b")

    def _lock(self) -> bool:
        """Hold the lock; a DataError when another download holds it."""
        try:
            import fcntl
        except ImportError:  # not POSIX: downloads are not locked against each other
            return True
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise DataError(
                f"another process is downloading {self.dest} (it holds {self.path.name}); wait "
                "for it to finish, then run again") from None
        except OSError as err:  # a file system without locks: go on, unlocked
            log.warning("cannot lock %s (%s); make sure nothing else downloads it", self.path,
                        err.strerror or err)
        return True

    def _still_named(self) -> bool:
        """Whether ``self.path`` still names the open file (not renamed or replaced)."""
        try:
            here = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(self.file.fileno())
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def size(self) -> int:
        return os.fstat(self.file.fileno()).st_size

    def restart(self) -> None:
        self.file.seek(0)
        self.file.truncate()

    def finish(self) -> Path:
        """Rename the (complete) ``.part`` to ``dest``."""
        self.file.flush()
        if not self._still_named():
            raise DataError(f"{self.path} was replaced during the download; run again")
        os.replace(self.path, self.dest)
        return self.dest


def _open_url(url: str, start: int, timeout: float) -> Any:
    """The response to a GET of ``url`` from byte ``start``; None when the server says
    there is nothing left to send (HTTP 416 for a resumed request)."""
    headers = {"User-Agent": "img2img-data-prepare"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) URLs from the registry)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # nothing left to send: the .part may be complete
            return None
        raise DataError(f"download failed: {url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DataError(
            f"cannot download {url} ({reason}). Without network, download it elsewhere "
            f"and pass it with --archive FILE"
        ) from None


def _resumed_from(response: Any, start: int) -> int:
    """Where the response's bytes go: ``start`` when the server sent that range, else 0."""
    if not start or response.status != 206:
        return 0
    content_range = response.headers.get("Content-Range", "")
    return start if content_range.startswith(f"bytes {start}-") else 0


def _receive(response: Any, part: _PartFile, start: int, total: int | None, url: str,
             progress: bool) -> None:
    """Write the response's bytes into ``part`` from ``start`` (0: from scratch)."""
    if start:
        part.file.seek(start)
    else:
        part.restart()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, unit="B", unit_scale=True,
                   desc=part.dest.name, leave=False)
    try:
        while True:
            chunk = response.read(CHUNK)
            if not chunk:
                break
            part.file.write(chunk)
            if bar is not None:
                bar.update(len(chunk))
        part.file.flush()
    except (OSError, urllib.error.URLError) as err:
        raise DataError(
            f"download of {url} interrupted ({err}); run the same command again to resume"
        ) from None
    finally:
        if bar is not None:
            bar.close()


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    expected_size: int | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial ``.part``
    with an HTTP Range request (see the module docstring). Returns ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _PartFile(dest) as part:
        start = part.size()
        if expected_size is not None and start > expected_size:
            part.restart()
            start = 0
        if expected_size is not None and start == expected_size:
            return part.finish()
        response = _open_url(url, start, timeout)
        if response is None:
            return part.finish()
        with response:
            start = _resumed_from(response, start)
            length = response.headers.get("Content-Length")
            total = start + int(length) if length and length.isdigit() else expected_size
            _receive(response, part, start, total, url, progress)
        got = part.size()
        if total is not None and got < total:
            raise DataError(
                f"download of {url} stopped at {got:,} of {total:,} bytes; run again to resume"
            )
        return part.finish()
