"""The image files ``img2img predict`` reads: a file, a folder (recursively; earlier
prediction folders inside it are left out) or a glob pattern (``~`` expanded), the folder
their output names are relative to, and the check that ``--out`` is not where they come
from."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from img2img.errors import UserError
from img2img.log import get_logger

log = get_logger(__name__)


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def input_files(spec: str, path: Path, out_dir: Path) -> tuple[list[Path], Path, Path | None]:
    """The files ``spec`` names, the folder their output names are relative to, and the
    input folder (None for a single file)."""
    from img2img.data.io import scan_images

    if path.is_dir():
        files = scan_images(path, exclude=[out_dir] if out_dir.exists() else [])
        return _without_earlier_predictions(files, path), path, path
    if path.is_file():
        return [path], path.parent, None
    if glob.has_magic(spec):
        pattern = os.path.expanduser(spec)  # ~/photos/*.jpg: the base is the expanded folder
        base = _glob_base(pattern)
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
        files = [p for p in files if p.is_file() and not p.name.startswith(".")]
        if not files:
            raise UserError(f"no files match {spec}")
        return files, base, base
    raise UserError(f"input not found: {spec} is not a file, a folder or a glob pattern")


def _without_earlier_predictions(files: list[Path], root: Path) -> list[Path]:
    """``files`` less those inside an earlier ``predict --out`` folder under ``root`` (it
    carries img2img's predictions manifest): a folder of inputs with last run's outputs
    in it is not asked to translate them again."""
    from img2img.ownership import proof

    verdict: dict[Path, bool] = {}

    def predicted(folder: Path) -> bool:
        if folder == root or folder in verdict:
            return verdict.get(folder, False)
        found = proof(folder)
        verdict[folder] = (found is not None and found.kind == "predictions") or predicted(folder.parent)
        return verdict[folder]

    kept = [f for f in files if not predicted(f.parent)]
    skipped = sorted({str(d.relative_to(root)) for d, is_out in verdict.items() if is_out and not predicted(d.parent)})
    if skipped:
        log.warning("skipped %d image(s) in earlier prediction folders under %s: %s", len(files) - len(kept),
                    root, ", ".join(skipped))
    return kept


def check_out_dir(out_dir: Path, reads_from: Path, input_dir: Path | None) -> None:
    """``--out`` is neither the folder the inputs come from nor a folder around it."""
    out_resolved = out_dir.resolve()
    if out_resolved == reads_from.resolve():
        raise UserError(
            f"--out {out_dir} is the input folder; choose another output folder "
            "(predict never writes into the folder it reads from)"
        )
    if input_dir is not None and input_dir.resolve().is_relative_to(out_resolved):
        raise UserError(
            f"--out {out_dir} contains the input folder {input_dir}; choose an output folder "
            "outside it (one inside the input folder is fine)"
        )


def relative_to_base(path: Path, base: Path) -> Path:
    try:
        return path.relative_to(base)
    except ValueError:  # a glob that climbs out of its base (../)
        return Path(path.name)
