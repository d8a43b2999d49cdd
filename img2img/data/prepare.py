"""The command that downloads, verifies and lays out the standard data sets.

    img2img data prepare NAME --out DIR [--archive FILE_OR_FOLDER]
    img2img data prepare list        (or any NAME with --list)

Steps, each safe to interrupt and re-run:

1. download each archive to ``DIR/.downloads/FILE`` through ``FILE.part``, resuming a
   partial ``.part`` with an HTTP Range request (a server that ignores Range restarts the
   file; :mod:`img2img.data.download`); or take the archive given with ``--archive`` (a
   file, or a folder that holds the archive files by name);
2. verify its size and checksum (sha256 or md5, see
   :data:`~img2img.data.catalog.REGISTRY`); a mismatch is a DataError and nothing is
   extracted (a bad download is deleted, a given archive is left alone). Checksums can be
   skipped with ``img2img data prepare NAME --no-verify`` (the computed sha256 is printed
   instead);
3. extract into a temporary folder ``DIR/.tmp-NAME-PID`` with the checks and limits of
   :mod:`img2img.data.archives` (no absolute paths, ``..``, links, devices, encrypted or
   unsupported members; bounded bytes, members and expansion ratio), all checked on the
   table of contents before anything is written and again while writing;
4. for the SR benchmarks, make ``LRbicx2/``, ``LRbicx3/``, ``LRbicx4/`` from ``HR/`` with
   the MATLAB-compatible :func:`~img2img.data.matlab_imresize.imresize` (HR mod-cropped to
   the scale, LR rounded to 8 bits, same file names);
5. rename the temporary folder to ``DIR/NAME`` and write ``DIR/NAME/.complete``.

``.complete`` is written before the rename, so ``DIR/NAME`` appears whole or not at all:
one with it is left alone (reported as prepared), and a non-empty ``DIR/NAME`` without it
is not img2img's and is refused, never overwritten. Archives stay in ``DIR/.downloads``
(delete them when done; the four SR benchmarks share one archive).

One run at a time per data set and ``DIR``: a run holds an exclusive lock on
``DIR/.prepare-NAME.lock`` (``fcntl.flock``) and a second one stops with a message. A
temporary folder left by a run that was killed is removed by the next run only when it
carries img2img's proof (:mod:`img2img.ownership`, kind ``prepare-tmp``) and the process
that made it is gone. Folders
that a failed run created (``DIR``, ``DIR/.downloads``) are removed again when empty.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from img2img import ownership
from img2img.data.archives import extract, file_hashes, verify_archive
from img2img.data.catalog import DatasetSpec, find_spec, list_datasets
from img2img.data.download import download
from img2img.errors import DataError
from img2img.log import get_logger

log = get_logger(__name__)

#: The ownership kind that marks a temporary folder of ``data prepare`` as its own
#: (:func:`img2img.ownership.mark`).
TMP_KIND = "prepare-tmp"


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


# --------------------------------------------------------------------------- archives


def _given_archive(spec: DatasetSpec, given: Path, filename: str) -> Path:
    """The archive ``filename`` of ``spec`` from ``--archive`` (a file, or a folder)."""
    names = ", ".join(a.filename for a in spec.archives)
    if given.is_dir():
        candidate = given / filename
        if candidate.is_file():
            return candidate
        raise DataError(
            f"--archive: {given} has no {filename}; {spec.name} needs "
            f"{names} (put them all in that folder)")
    if len(spec.archives) == 1 or given.name == filename:
        return given
    raise DataError(
        f"--archive: {spec.name} needs {len(spec.archives)} archives ({names}); "
        f"pass the folder that holds them all, not the file {given}")


def _archive_paths(
    spec: DatasetSpec, out: Path, given: Path | None, progress: bool
) -> list[tuple[Path, bool]]:
    """``(path, downloaded)`` per archive of ``spec``: from ``given`` (a file, or a folder
    holding the archives by name) when there is one, else from ``out/.downloads``
    (downloaded when missing). ``downloaded`` is True for files of ``.downloads`` that the
    user did not name, the only ones a failed check may delete."""
    if given is not None and not given.exists():
        raise DataError(f"--archive: not found: {given}")
    paths = []
    for archive in spec.archives:
        if given is not None:
            paths.append((_given_archive(spec, given, archive.filename), False))
            continue
        local = out / ".downloads" / archive.filename
        if not local.is_file():
            print(f"downloading {archive.url}")
            download(archive.url, local, expected_size=archive.size, progress=progress)
        paths.append((local, True))
    return paths


def _check_archives(
    spec: DatasetSpec, found: list[tuple[Path, bool]], verify: bool
) -> list[dict[str, str]]:
    """The hashes of each archive, verified against ``spec`` unless ``verify`` is off (then
    printed). A download that fails the check is deleted; a given file is kept."""
    hashes = []
    for (path, downloaded), entry in zip(found, spec.archives):
        if not verify:
            computed = file_hashes(path)
            hashes.append(computed)
            print(f"not verified ({path}): sha256 {computed['sha256']}")
            continue
        try:
            hashes.append(verify_archive(path, entry))
        except DataError:
            if downloaded:
                path.unlink()  # a bad download must not be reused; a given file is kept
            raise
    return hashes


# --------------------------------------------------------------------------- one run at a time


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
    found = ownership.proof(folder)
    if not ((found is not None and found.kind == TMP_KIND) or (folder / ".complete").is_file()):
        return False
    return int(pid) == os.getpid() or _process_gone(int(pid))


def _remove_stale_tmp(out: Path, name: str) -> None:
    for stale in out.glob(f".tmp-{name}-*"):
        if _stale_tmp(stale, name):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            log.debug("leaving %s alone: not provably a stale folder of data prepare", stale)


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


# --------------------------------------------------------------------------- prepare


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


def _lay_out(spec: DatasetSpec, paths: list[Path], hashes: list[dict[str, str]], tmp: Path) -> None:
    """Extract every archive into ``tmp``, make the LR folders, and write ``.complete``."""
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
    hashes = _check_archives(spec, found, verify)
    _remove_stale_tmp(out, spec.name)
    tmp = out / f".tmp-{spec.name}-{os.getpid()}"
    try:
        tmp.mkdir()
        ownership.mark(tmp, TMP_KIND, [], ["*"])
        _lay_out(spec, [path for path, _ in found], hashes, tmp)
        (tmp / ownership.MARKER).unlink()
        if target.is_dir():  # empty (checked above)
            target.rmdir()
        os.replace(tmp, target)  # the folder appears whole, .complete included
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


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
