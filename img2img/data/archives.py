"""Archives of the standard data sets: their checksums, and extracting them safely.

:func:`verify_archive` checks an archive's size and its published sha256 or md5.
:func:`extract` refuses the whole archive, before anything is written, if any member is an
absolute path, climbs out with ``..``, or is a link or device, is encrypted or compressed
with a method Python cannot extract, or if the archive would expand beyond the limits
(:data:`MAX_EXTRACT_BYTES` in all, :data:`MAX_MEMBERS` members, :data:`MAX_RATIO` times
its compressed size; a sparse tar member counts at its full size), all checked on the
table of contents, and the byte limit again while writing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from img2img.errors import DataError
from img2img.files import first_line

CHUNK = 1 << 20

# Limits on what an archive may expand to. The largest known data set (DIV2K's 3.5 GB of
# PNGs, edges2shoes' ~50,000 files) is far below each; they stop an archive given with
# --no-verify (or a different version of one) from filling the disk or memory.
#: Bytes extracted from one archive, in all.
MAX_EXTRACT_BYTES = 64 << 30
#: Members of one archive (each costs memory while the table of contents is read).
MAX_MEMBERS = 500_000
#: Uncompressed / compressed size, of a zip member or of a whole archive, once the
#: uncompressed size is above :data:`RATIO_FLOOR`. Image data sets compress ~1:1.
MAX_RATIO = 100
RATIO_FLOOR = 64 << 20

_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
for _module, _method, _name in (("bz2", zipfile.ZIP_BZIP2, "bzip2"), ("lzma", zipfile.ZIP_LZMA, "lzma")):
    try:
        __import__(_module)
        _ZIP_METHODS[_method] = _name
    except ImportError:  # a Python built without it cannot extract such members
        pass


@dataclasses.dataclass(frozen=True)
class Archive:
    """One downloadable file and what it must hash to."""

    url: str
    filename: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    checksum_source: str = ""


# --------------------------------------------------------------------------- verify


def file_hashes(path: str | os.PathLike) -> dict[str, str]:
    """sha256 and md5 of a file, in one pass."""
    sha256, md5 = hashlib.sha256(), hashlib.md5()  # noqa: S324 (md5 is what is published)
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            sha256.update(chunk)
            md5.update(chunk)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


def verify_archive(path: Path, archive: Archive) -> dict[str, str]:
    """Check size and checksum; DataError on a mismatch. Returns the computed hashes."""
    size = path.stat().st_size
    if archive.size is not None and size != archive.size:
        raise DataError(
            f"{path}: {size:,} bytes, expected {archive.size:,} for {archive.url}; "
            "the file is incomplete or a different version"
        )
    hashes = file_hashes(path)
    for kind in ("sha256", "md5"):
        expected = getattr(archive, kind)
        if expected and hashes[kind] != expected.lower():
            raise DataError(
                f"{path}: {kind} is {hashes[kind]}, expected {expected} for {archive.url}; "
                "the file is corrupt or a different version (--no-verify skips this "
                "check if you trust the file)"
            )
    if not (archive.sha256 or archive.md5):
        raise DataError(
            f"{path}: no published checksum is known for {archive.url} (sha256 of this file: "
            f"{hashes['sha256']}); pass --no-verify to use it unverified"
        )
    return hashes


# --------------------------------------------------------------------------- extract


def safe_member_path(name: str) -> PurePosixPath:
    """An archive member name as a relative path; DataError if it could leave the target
    (absolute, a drive letter, a backslash path, or a ``..`` part)."""
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise DataError(f"unsafe archive member {name!r}: absolute path")
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise DataError(f"unsafe archive member {name!r}: '..' would leave the target folder")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _is_junk(path: PurePosixPath) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in path.parts) or path.name in (
        "Thumbs.db",
        "desktop.ini",
    )


class _Budget:
    """Counts an archive's members and expanded bytes against the limits."""

    def __init__(self, archive_path: Path) -> None:
        self.archive = archive_path
        self.packed = max(1, archive_path.stat().st_size)
        self.members = 0
        self.total = 0

    def _refuse(self, what: str) -> DataError:
        return DataError(
            f"{self.archive}: {what}; no data set img2img knows comes near that, so the file "
            "is not the expected archive: check it (and its checksum), or extract it "
            "yourself if you trust it"
        )

    def member(self) -> None:
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise self._refuse(f"more than {MAX_MEMBERS:,} members (the limit)")

    def add(self, size: int, packed: int | None = None, name: str = "") -> None:
        """A member of ``size`` bytes once extracted (``packed`` in the archive, for zip)."""
        self.total += size
        if self.total > MAX_EXTRACT_BYTES:
            raise self._refuse(
                f"expands to more than {MAX_EXTRACT_BYTES:,} bytes (the limit for one archive)")
        if packed is not None and size > RATIO_FLOOR and size > MAX_RATIO * max(1, packed):
            raise self._refuse(
                f"member {name!r} expands {size // max(1, packed):,} times ({size:,} bytes from "
                f"{packed:,}), above the limit of {MAX_RATIO} times")
        if self.total > RATIO_FLOOR and self.total > MAX_RATIO * self.packed:
            raise self._refuse(
                f"expands to {self.total:,} bytes or more from {self.packed:,}, above the limit of "
                f"{MAX_RATIO} times its size")


def _check_zip_member(archive_path: Path, info: zipfile.ZipInfo) -> None:
    if info.flag_bits & 0x1:
        raise DataError(
            f"{archive_path}: member {info.filename!r} is encrypted (password-protected), "
            "which img2img does not extract; extract the archive yourself")
    if info.compress_type not in _ZIP_METHODS:
        names = getattr(zipfile, "compressor_names", {})
        method = names.get(info.compress_type, "unknown")
        raise DataError(
            f"{archive_path}: member {info.filename!r} is compressed with method "
            f"{info.compress_type} ({method}), which Python's zipfile cannot extract; "
            "extract the archive yourself")


def _zip_members(archive_path: Path, budget: _Budget) -> Iterator[tuple[PurePosixPath, Any]]:
    with zipfile.ZipFile(archive_path) as zf:
        files = []
        for info in zf.infolist():
            budget.member()
            rel = safe_member_path(info.filename)
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:
                raise DataError(f"unsafe archive member {info.filename!r}: a symbolic link")
            if not info.is_dir():
                _check_zip_member(archive_path, info)
                budget.add(info.file_size, info.compress_size, info.filename)
                files.append((rel, info))
        for rel, info in files:
            yield rel, (lambda info=info: zf.open(info))


def _open_tar(archive_path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive_path)
    except (tarfile.TarError, OSError) as err:
        with open(archive_path, "rb") as f:
            magic = f.read(4)
        if magic == b"PK\x03\x04":
            raise DataError(
                f"{archive_path}: truncated or corrupt zip archive (its table of contents "
                "at the end is missing or damaged); download it again") from None
        reason = first_line(err)
        raise DataError(f"{archive_path}: not a zip or tar archive ({reason})") from None


def _tar_members(archive_path: Path, budget: _Budget) -> Iterator[tuple[PurePosixPath, Any]]:
    with _open_tar(archive_path) as tf:
        members = []
        while True:  # member by member (not getmembers()), so the limits stop it early
            member = tf.next()
            if member is None:
                break
            budget.member()
            if member.isfile():  # a sparse member's size is its full, expanded size
                budget.add(member.size)
            members.append(member)
        files = []
        for member in members:
            rel = safe_member_path(member.name)
            if member.issym() or member.islnk():
                raise DataError(f"unsafe archive member {member.name!r}: a link")
            if member.isdev() or member.isfifo():
                raise DataError(f"unsafe archive member {member.name!r}: a device or pipe")
            if member.isfile():
                files.append((rel, member))
        for rel, member in files:
            yield rel, (lambda member=member: tf.extractfile(member))


def _members(archive_path: Path) -> Iterator[tuple[PurePosixPath, Any]]:
    """(safe relative path, opener) of every regular file; all members are checked first
    (names, types, encryption, compression, and the size limits)."""
    budget = _Budget(archive_path)
    if zipfile.is_zipfile(archive_path):
        yield from _zip_members(archive_path, budget)
    else:
        yield from _tar_members(archive_path, budget)


class _TooLarge(Exception):
    """More bytes came out of an archive than the limit allows."""


def _copy_limited(source: IO[bytes], sink: IO[bytes], limit: int) -> int:
    """Copy at most ``limit`` bytes (raising :class:`_TooLarge` past them); returns the count."""
    written = 0
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            return written
        written += len(chunk)
        if written > limit:
            raise _TooLarge
        sink.write(chunk)


def _extract(archive_path: Path, target: Path, mapping: list[tuple[str, str]]) -> dict[str, int]:
    counts = {src: 0 for src, _ in mapping}
    root = target.resolve()
    total = 0
    for rel, opener in _members(archive_path):
        if _is_junk(rel):
            continue
        text = rel.as_posix()
        for src, dst in mapping:
            if src and not text.startswith(src):
                continue
            out = (target / dst / text[len(src):]).resolve()
            if root != out and root not in out.parents:
                raise DataError(f"unsafe archive member {text!r}: leaves {target}")
            out.parent.mkdir(parents=True, exist_ok=True)
            source: IO[bytes] | None = opener()
            if source is None:
                continue
            with source, open(out, "wb") as sink:
                written = _copy_limited(source, sink, MAX_EXTRACT_BYTES - total)
            total += written
            counts[src] += 1
            break
    return counts


def extract(archive_path: Path, target: Path, mapping: list[tuple[str, str]]) -> dict[str, int]:
    """Extract the files under each archive folder of ``mapping`` (source prefix ->
    destination prefix, relative to ``target``). Returns the file count per source
    prefix. Every member name is checked before anything is written; every problem of
    the archive is one DataError naming it."""
    try:
        return _extract(archive_path, target, mapping)
    except DataError as err:
        if str(err).startswith(str(archive_path)):
            raise
        raise DataError(f"{archive_path}: {err}") from None
    except _TooLarge:
        raise DataError(
            f"{archive_path}: expands to more than {MAX_EXTRACT_BYTES:,} bytes (the limit for "
            "one archive) while extracting; check the file, or extract it yourself if you "
            "trust it") from None
    except (RuntimeError, NotImplementedError) as err:
        # zipfile's refusals (encryption, compression) are checked up front; were one to
        # slip through, it is still the archive's problem. Any other error is a bug.
        text = str(err).lower()
        if not any(word in text for word in ("encrypt", "password", "compression")):
            raise
        raise DataError(f"{archive_path}: cannot extract it ({err}); extract it yourself") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        if isinstance(err, OSError) and err.errno in (28, 13, 122):
            raise
        raise DataError(f"{archive_path}: corrupt archive ({err})") from None
