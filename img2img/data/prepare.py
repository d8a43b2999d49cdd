"""Download, verify and lay out the standard data sets.

    img2img data prepare NAME --out DIR [--archive FILE_OR_FOLDER]
    img2img data prepare list        (or any NAME with --list)

Steps, each safe to interrupt and re-run:

1. download each archive to ``DIR/.downloads/FILE`` through ``FILE.part``, resuming a
   partial ``.part`` with an HTTP Range request (a server that ignores Range restarts the
   file); or take the archive given with ``--archive`` (a file, or a folder that holds
   the archive files by name);
2. verify its size and checksum (sha256 or md5, see :data:`REGISTRY`); a mismatch is a
   DataError and nothing is extracted (a bad download is deleted, a given archive is left
   alone). Checksums can be skipped with ``img2img data prepare NAME --no-verify``
   (the computed sha256 is printed instead);
3. extract into a temporary folder ``DIR/.tmp-NAME-PID``, refusing the whole archive if
   any member is an absolute path, climbs out with ``..``, or is a link or device, is
   encrypted or compressed with a method Python cannot extract, or if the archive would
   expand beyond the limits (:data:`MAX_EXTRACT_BYTES` in all, :data:`MAX_MEMBERS`
   members, :data:`MAX_RATIO` times its compressed size; a sparse tar member counts at
   its full size), all checked on the table of contents before anything is written and
   again while writing;
4. for the SR benchmarks, make ``LRbicx2/``, ``LRbicx3/``, ``LRbicx4/`` from ``HR/`` with
   the MATLAB-compatible :func:`~img2img.data.matlab_imresize.imresize` (HR mod-cropped to the
   scale, LR rounded to 8 bits, same file names);
5. rename the temporary folder to ``DIR/NAME`` and write ``DIR/NAME/.complete``.

``.complete`` is written before the rename, so ``DIR/NAME`` appears whole or not at all:
one with it is left alone (reported as prepared), and a non-empty ``DIR/NAME`` without it
is not img2img's and is refused, never overwritten. Archives stay in ``DIR/.downloads`` (delete them when done; the four SR
benchmarks share one archive).

One run at a time per data set and ``DIR``: a run holds an exclusive lock on
``DIR/.prepare-NAME.lock`` (``fcntl.flock``) and a second one stops with a message. A
temporary folder left by a run that was killed is removed by the next run only when it
holds img2img's marker (:data:`TMP_MARKER`) and the process that made it is gone. Folders
that a failed run created (``DIR``, ``DIR/.downloads``) are removed again when empty.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from img2img.errors import DataError
from img2img.log import get_logger

log = get_logger(__name__)

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
#: The file in a temporary folder that proves ``data prepare`` made it (JSON: pid, name).
TMP_MARKER = ".img2img-prepare-tmp"

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


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A data set: its archives, which archive folders go where, and what comes after.

    ``members`` maps (archive index, folder inside the archive, folder in the output);
    every mapping must match at least one file. ``lr_scales`` makes ``LRbicx{s}/`` from
    ``HR/`` after extraction.
    """

    name: str
    kind: str
    description: str
    archives: tuple[Archive, ...]
    members: tuple[tuple[int, str, str], ...]
    lr_scales: tuple[int, ...] = ()
    usage: str = ""


_PIX2PIX = "https://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
_CYCLEGAN = "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
_DIV2K = "https://data.vision.ee.ethz.ch/cvl/DIV2K"
_EDSR_BENCHMARK = Archive(
    url="https://cv.snu.ac.kr/research/EDSR/benchmark.tar",
    filename="benchmark.tar",
    md5="4ace41d33c2384b97e6b320cd0afd6ba",
    checksum_source="md5 used by the torchSR loaders (Coloquinte/torchSR) for EDSR's archive",
)
_PIX2PIX_SOURCE = (
    "md5 recorded by a third-party pix2pix loader; the authors publish no checksums"
)
_CYCLEGAN_SOURCE = (
    "sha256 and size from TensorFlow Datasets' url_checksums/cycle_gan.txt (recorded for "
    "the same file at people.eecs.berkeley.edu/~taesung_park/CycleGAN/datasets/)"
)
_DIV2K_SOURCE = "sha256 and size from TensorFlow Datasets' url_checksums/div2k.txt"


def _pix2pix(name: str, md5: str, description: str, usage: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        kind="paired (A|B aligned)",
        description=description,
        archives=(Archive(f"{_PIX2PIX}/{name}.tar.gz", f"{name}.tar.gz", md5=md5,
                          checksum_source=_PIX2PIX_SOURCE),),
        members=((0, f"{name}/", ""),),
        usage=usage,
    )


def _cyclegan(name: str, sha256: str, size: int, description: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        kind="unpaired",
        description=description,
        archives=(Archive(f"{_CYCLEGAN}/{name}.zip", f"{name}.zip", sha256=sha256, size=size,
                          checksum_source=_CYCLEGAN_SOURCE),),
        members=((0, f"{name}/", ""),),
        usage=f"task=cyclegan data.root=DIR/{name}  (val falls back to testA/testB)",
    )


def _benchmark(name: str, folder: str, description: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        kind="SR benchmark (HR + LRbicx2/3/4)",
        description=description,
        archives=(_EDSR_BENCHMARK,),
        members=((0, f"benchmark/{folder}/HR/", "HR/"),),
        lr_scales=(2, 3, 4),
        usage=f"img2img eval MODEL --data DIR/{name}/HR --lr-dir DIR/{name}/LRbicx4",
    )


#: Every data set ``img2img data prepare`` knows, by name.
REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _pix2pix("facades", "e2e25dd517e9d15828416ab329da2854",
                 "CMP Facades: photo | label map, 400 train, 100 val, 106 test",
                 "task=pix2pix data.root=DIR/facades data.direction=BtoA"),
        _pix2pix("maps", "e5f65d26eb288457f5ac056deb94d154",
                 "aerial photo | Google map, 1096 train, 1098 val",
                 "task=pix2pix data.root=DIR/maps"),
        _pix2pix("edges2shoes", "71da478b54fedde126e234a2a050bc15",
                 "edges | shoe photo, 49825 train, 200 val",
                 "task=pix2pix data.root=DIR/edges2shoes data.preprocess=none"),
        _pix2pix("cityscapes", "32569df708076e427e9cd02abbca7748",
                 "photo | semantic labels, 2975 train, 500 val",
                 "task=pix2pix data.root=DIR/cityscapes data.direction=BtoA"),
        _cyclegan("horse2zebra", "a74d9d392eecca9966b51287a76ca126af473d9de4f3e8fc0e9cda08fa1730a1",
                  116867962, "horses | zebras (ImageNet), 1067 + 1334 train"),
        _cyclegan("summer2winter_yosemite",
                  "167fe1726807a9d22bd106b4a6c0bd7953b688af924ac1bf967439c4961e49f9",
                  132640856, "Yosemite in summer | winter (Flickr), 1231 + 962 train"),
        _cyclegan("monet2photo", "88f91b00fc228f97c9411fbf1880ec1d119c98f1722e4cfcfaa2fb35fac05b04",
                  305231073, "Monet paintings | photos, 1072 + 6287 train"),
        DatasetSpec(
            name="DIV2K",
            kind="SR training (HR)",
            description="DIV2K 2K-resolution HR images: 800 train, 100 valid",
            archives=(
                Archive(f"{_DIV2K}/DIV2K_train_HR.zip", "DIV2K_train_HR.zip",
                        sha256="9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",
                        size=3530603713, checksum_source=_DIV2K_SOURCE),
                Archive(f"{_DIV2K}/DIV2K_valid_HR.zip", "DIV2K_valid_HR.zip",
                        sha256="20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",
                        size=448993893, checksum_source=_DIV2K_SOURCE),
            ),
            members=((0, "DIV2K_train_HR/", "train/"), (1, "DIV2K_valid_HR/", "val/")),
            usage="task=srgan data.root=DIR/DIV2K  (LR made on the fly)",
        ),
        _benchmark("Set5", "Set5", "Set5 (Bevilacqua et al. 2012), 5 images"),
        _benchmark("Set14", "Set14", "Set14 (Zeyde et al. 2010), 14 images"),
        _benchmark("BSD100", "B100", "BSD100 (Martin et al. 2001), 100 images"),
        _benchmark("Urban100", "Urban100", "Urban100 (Huang et al. 2015), 100 images"),
    )
}


def find_spec(name: str) -> DatasetSpec:
    for key, spec in REGISTRY.items():
        if key.lower() == name.lower():
            return spec
    known = ", ".join(REGISTRY)
    raise DataError(f"unknown data set {name!r}; known: {known} (img2img data prepare --list)")


# --------------------------------------------------------------------------- download


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    expected_size: int | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial ``.part``
    with an HTTP Range request. Returns ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    if expected_size is not None and start > expected_size:
        part.unlink()
        start = 0
    if expected_size is not None and start == expected_size:
        os.replace(part, dest)
        return dest
    headers = {"User-Agent": "img2img-data-prepare"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) URLs from the registry)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # nothing left to send: the .part may be complete
            os.replace(part, dest)
            return dest
        raise DataError(f"download failed: {url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DataError(
            f"cannot download {url} ({reason}). Without network, download it elsewhere "
            f"and pass it with --archive FILE"
        ) from None
    with response:
        resumed = bool(start) and response.status == 206
        if resumed:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {start}-"):
                resumed = False
        if not resumed:
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else expected_size
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=start, unit="B", unit_scale=True,
                       desc=dest.name, leave=False)
        try:
            with open(part, "ab" if resumed else "wb") as f:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except (OSError, urllib.error.URLError) as err:
            raise DataError(
                f"download of {url} interrupted ({err}); run the same command again to resume"
            ) from None
        finally:
            if bar is not None:
                bar.close()
    got = part.stat().st_size
    if total is not None and got < total:
        raise DataError(
            f"download of {url} stopped at {got:,} of {total:,} bytes; run again to resume"
        )
    os.replace(part, dest)
    return dest


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


def _members(archive_path: Path) -> Iterator[tuple[PurePosixPath, Any]]:
    """(safe relative path, opener) of every regular file; all members are checked first
    (names, types, encryption, compression, and the size limits)."""
    budget = _Budget(archive_path)
    if zipfile.is_zipfile(archive_path):
        with zipfile.ZipFile(archive_path) as zf:
            infos = zf.infolist()
            files = []
            for info in infos:
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
        return
    try:
        tf = tarfile.open(archive_path)
    except (tarfile.TarError, OSError) as err:
        with open(archive_path, "rb") as f:
            magic = f.read(4)
        if magic == b"PK\x03\x04":
            raise DataError(
                f"{archive_path}: truncated or corrupt zip archive (its table of contents "
                "at the end is missing or damaged); download it again") from None
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{archive_path}: not a zip or tar archive ({reason})") from None
    with tf:
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


def extract(
    archive_path: Path, target: Path, mapping: list[tuple[str, str]]
) -> dict[str, int]:
    """Extract the files under each archive folder of ``mapping`` (source prefix ->
    destination prefix, relative to ``target``). Returns the file count per source
    prefix. Every member name is checked before anything is written."""
    counts = {src: 0 for src, _ in mapping}
    root = target.resolve()
    total = 0
    try:
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
    return counts


# --------------------------------------------------------------------------- SR benchmarks


def make_lr_folders(hr_dir: Path, scales: tuple[int, ...]) -> dict[int, int]:
    """``LRbicx{s}/`` beside ``hr_dir``: each HR image mod-cropped to ``s`` and reduced with
    MATLAB-compatible bicubic, rounded to 8 bits, saved as PNG with the HR file's stem."""
    import numpy as np

    from img2img.data.io import read_image, scan_images, write_image
    from img2img.data.matlab_imresize import imresize

    counts = {s: 0 for s in scales}
    for path in scan_images(hr_dir):
        hr = read_image(path).astype(np.float64)
        rel = path.relative_to(hr_dir).with_suffix(".png")
        for s in scales:
            h, w = hr.shape[:2]
            cropped = hr[: h - h % s, : w - w % s]
            lr = imresize(cropped, 1.0 / s)
            write_image(hr_dir.parent / f"LRbicx{s}" / rel, lr)
            counts[s] += 1
    return counts


# --------------------------------------------------------------------------- prepare


def _archive_paths(
    spec: DatasetSpec, out: Path, given: Path | None, progress: bool
) -> list[tuple[Path, bool]]:
    """``(path, downloaded)`` per archive of ``spec``: from ``given`` (a file, or a folder
    holding the archives by name) when there is one, else from ``out/.downloads``
    (downloaded when missing). ``downloaded`` is True for files of ``.downloads`` that the
    user did not name, the only ones a failed check may delete."""
    if given is not None and not given.exists():
        raise DataError(f"--archive: not found: {given}")
    names = ", ".join(a.filename for a in spec.archives)
    paths = []
    for archive in spec.archives:
        if given is not None:
            if given.is_dir():
                candidate = given / archive.filename
                if candidate.is_file():
                    paths.append((candidate, False))
                    continue
                raise DataError(
                    f"--archive: {given} has no {archive.filename}; {spec.name} needs "
                    f"{names} (put them all in that folder)")
            if len(spec.archives) == 1 or given.name == archive.filename:
                paths.append((given, False))
                continue
            raise DataError(
                f"--archive: {spec.name} needs {len(spec.archives)} archives ({names}); "
                f"pass the folder that holds them all, not the file {given}")
        local = out / ".downloads" / archive.filename
        if not local.is_file():
            print(f"downloading {archive.url}")
            download(archive.url, local, expected_size=archive.size, progress=progress)
        paths.append((local, True))
    return paths


def _process_gone(pid: int) -> bool:
    """True only when no process ``pid`` exists (POSIX; elsewhere nothing is proven)."""
    if os.name != "posix":
        return False
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # it exists (another user's), or we cannot tell
        return False
    return False


def _stale_tmp(folder: Path, name: str) -> bool:
    """Whether ``folder`` is a temporary folder of ``data prepare NAME`` (its marker, or
    the ``.complete`` written just before the rename, proves it) whose process is gone
    (or is this one: the caller holds the data set's lock)."""
    pid = folder.name[len(f".tmp-{name}-"):]
    if not pid.isdigit() or folder.is_symlink() or not folder.is_dir():
        return False
    if not ((folder / TMP_MARKER).is_file() or (folder / ".complete").is_file()):
        return False
    return int(pid) == os.getpid() or _process_gone(int(pid))


@contextlib.contextmanager
def _run_lock(out: Path, name: str) -> Iterator[None]:
    """Hold an exclusive lock on ``out/.prepare-NAME.lock`` for the run; a DataError when
    another run holds it. The file is removed at the end (a run that opened it in the
    meantime notices that its file is gone, and locks a new one)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: runs are not locked against each other
        yield
        return
    path = out / f".prepare-{name}.lock"
    while True:
        try:
            out.mkdir(parents=True, exist_ok=True)  # a failed run may just have removed it
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise DataError(f"cannot write in {out}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            who = f" (process {holder})" if holder.isdigit() else ""
            raise DataError(
                f"another 'img2img data prepare {name}' is running in {out}{who}; wait for it "
                "to finish, or use another --out") from None
        except OSError as err:  # a file system without locks: go on, unlocked
            log.warning("cannot lock %s (%s); make sure no other prepare of %s runs", path,
                        err.strerror or err, name)
            os.close(fd)
            yield
            return
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, innermost first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def prepare(
    name: str | DatasetSpec,
    out_dir: str | os.PathLike,
    archive: str | os.PathLike | None = None,
    *,
    verify: bool = True,
    progress: bool = True,
) -> Path:
    """Download (or take), verify and lay out a data set in ``out_dir/NAME``; returns it."""
    spec = name if isinstance(name, DatasetSpec) else find_spec(name)
    out = Path(out_dir).expanduser()
    target = out / spec.name
    if (target / ".complete").is_file():
        print(f"{spec.name} is already prepared in {target}")
        return target
    made = _missing_folders(out) + _missing_folders(out / ".downloads")[:1]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create {out}: {err.strerror or err}") from None
    try:
        with _run_lock(out, spec.name):
            return _prepare_locked(spec, out, target, archive, verify, progress)
    finally:
        for folder in sorted(made, key=lambda f: len(f.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty (a result, a partial download)
                folder.rmdir()


def _prepare_locked(
    spec: DatasetSpec, out: Path, target: Path, archive: str | os.PathLike | None,
    verify: bool, progress: bool,
) -> Path:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        # .complete is written inside the temporary folder before its rename, so an
        # img2img-made folder always has it: this one is the user's.
        raise DataError(
            f"{target} already exists and was not made by img2img data prepare (it has no "
            f".complete file); move it away or choose another --out")
    given = Path(archive).expanduser() if archive else None
    found = _archive_paths(spec, out, given, progress)
    paths = [path for path, _ in found]
    hashes = []
    for (path, downloaded), entry in zip(found, spec.archives):
        if verify:
            try:
                hashes.append(verify_archive(path, entry))
            except DataError:
                if downloaded:
                    path.unlink()  # a bad download must not be reused; a given file is kept
                raise
        else:
            computed = file_hashes(path)
            hashes.append(computed)
            print(f"not verified ({path}): sha256 {computed['sha256']}")
    for stale in out.glob(f".tmp-{spec.name}-*"):
        if _stale_tmp(stale, spec.name):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            log.debug("leaving %s alone: not provably a stale folder of data prepare", stale)
    tmp = out / f".tmp-{spec.name}-{os.getpid()}"
    try:
        tmp.mkdir()
        (tmp / TMP_MARKER).write_text(
            json.dumps({"pid": os.getpid(), "name": spec.name}) + "\n", encoding="utf-8")
        for index, path in enumerate(paths):
            mapping = [(src, dst) for i, src, dst in spec.members if i == index]
            counts = extract(path, tmp, mapping)
            for src, count in counts.items():
                if count == 0:
                    raise DataError(
                        f"{path}: no files under {src!r} in the archive; is it the right file "
                        f"for {spec.name}?"
                    )
        if spec.lr_scales:
            make_lr_folders(tmp / "HR", spec.lr_scales)
        record = {
            "name": spec.name,
            "archives": [
                {"url": a.url, "file": str(p), **h} for a, p, h in zip(spec.archives, paths, hashes)
            ],
        }
        (tmp / ".complete").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        (tmp / TMP_MARKER).unlink()
        if target.is_dir():  # empty (checked above)
            target.rmdir()
        os.replace(tmp, target)  # the folder appears whole, .complete included
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def list_datasets() -> str:
    rows = []
    for spec in REGISTRY.values():
        checks = sorted({("sha256" if a.sha256 else "md5" if a.md5 else "none") for a in spec.archives})
        rows.append((spec.name, spec.kind, "/".join(checks), spec.description))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{'name':<{widths[0]}}  {'kind':<{widths[1]}}  {'check':<{widths[2]}}  description"]
    for r in rows:
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    return "\n".join(lines)


def cli_prepare(args: Any) -> int:
    if args.list or not args.name or args.name.lower() == "list":
        print(list_datasets())
        return 0
    verify = not args.no_verify
    spec = find_spec(args.name)
    target = prepare(spec, args.out, args.archive, verify=verify)
    counts = {}
    for sub in sorted(p for p in target.iterdir() if p.is_dir()):
        counts[sub.name] = sum(1 for f in sub.rglob("*") if f.is_file())
    print(f"{spec.name} ready in {target}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if spec.usage:
        print(f"use it with: {spec.usage.replace('DIR', str(Path(args.out)))}")
    return 0
