"""``img2img predict MODEL INPUT --out DIR``: translate a file, a folder (recursively) or a
glob, writing PNGs (16-bit where the input had more than 8 bits).

The order is: the options, the inputs and their output names, what ``--out`` may hold, the
model; only then is anything written. So a mistyped model (or input, or option) leaves
nothing behind, and a run that writes no output (every input failed, or an error stopped
it first) removes the folders it made for them again.

Files img2img names itself in ``--out`` replace only what an earlier predict wrote there
(listed in its ``.img2img.json``); a file named with ``--out`` (one input file, ``--out
result.png``) is the user's request.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from img2img.errors import UserError
from img2img.inference.find_inputs import check_out_dir, input_files, relative_to_base
from img2img.inference.input_files import input_value
from img2img.inference.tiling import check_tiling
from img2img.inference.translator import Translator, load

#: What a predictions folder is called in its manifest (see :mod:`img2img.ownership`).
KIND = "predictions"
HINT = "choose another --out, or remove them yourself"


@dataclass
class PredictItem:
    """One input file and where its output goes, relative to ``--out``."""

    path: Path
    relative: Path
    renamed: bool = False  # its output name keeps the source extension (a clash)
    #: Its inputs beyond the image (the model's ``inference_inputs``: ``--to``, ``--mask``).
    inputs: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- the inputs


def _name_outputs(items: list[PredictItem], out_dir: Path) -> None:
    """Each item's output name, ``name.png`` at its relative place; inputs that would
    share one keep their extension (``a.jpg.png``); a clash that remains is a UserError."""
    by_output: dict[Path, list[PredictItem]] = {}
    for item in items:
        by_output.setdefault(item.relative.with_suffix(".png"), []).append(item)
    for target, group in by_output.items():
        for item in group:
            item.renamed = len(group) > 1
            item.relative = item.relative.with_name(item.relative.name + ".png") if item.renamed else target
    first: dict[Path, PredictItem] = {}
    for item in items:
        other = first.setdefault(item.relative, item)
        if other is not item:
            raise UserError(
                f"{other.path} and {item.path} would both be written to {out_dir / item.relative}; "
                "rename one of them, or predict them into separate --out folders"
            )


def collect_inputs(spec: str, out_dir: Path, exclude: Path | None = None) -> tuple[list[PredictItem], Path | None]:
    """The input files named by ``spec`` (a file, a folder scanned recursively, or a glob)
    with their output paths (``name.png`` at the same relative place), and the input folder
    (the folder given, or the fixed part of the glob; None for a single file).

    Files under ``out_dir`` are never taken from a folder or glob (an output folder inside
    the input folder is allowed), nor under ``exclude`` (the ``--mask`` folder or file: masks
    kept among the photos are not photos to translate). Two inputs that would give the same
    output name (``a.jpg``, ``a.png``) are written as ``a.jpg.png`` and ``a.png.png`` (``renamed``); a clash that
    remains (an input ``a.jpg.png`` beside them) is a UserError naming both inputs.
    """
    path = Path(spec).expanduser()
    files, base, input_dir = input_files(spec, path, out_dir)
    check_out_dir(out_dir, input_dir or path.parent, input_dir)
    if input_dir is not None:
        out_resolved = out_dir.resolve()
        files = [p for p in files if not p.resolve().is_relative_to(out_resolved)]
        if exclude is not None:
            files = [p for p in files if not p.resolve().is_relative_to(exclude.expanduser().resolve())]
    if not files:
        raise UserError(f"no input images in {spec} (outside the output folder {out_dir}"
                        + (f" and the --mask {exclude}" if exclude is not None else "") + ")")
    items = [PredictItem(p, relative_to_base(p, base)) for p in files]
    _name_outputs(items, out_dir)
    return items, input_dir


def check_outputs(items: list[PredictItem], out_dir: Path) -> None:
    """Refuse to write over any input file (writing into the input folder itself is
    refused by :func:`collect_inputs`)."""
    inputs = {item.path.resolve() for item in items}
    for item in items:
        target = (out_dir / item.relative).resolve()
        if target in inputs:
            raise UserError(
                f"--out {out_dir}: writing {out_dir / item.relative} would overwrite the input "
                f"{item.path}; choose another output folder"
            )


def _single_output_file(spec: str, out: Path) -> Path | None:
    """``out`` itself when one input file is translated to a file name given with an
    image suffix (``--out result.png``), else None (``out`` is a folder)."""
    from img2img.data.io import IMAGE_EXTENSIONS

    if Path(spec).expanduser().is_file() and out.suffix.lower() in IMAGE_EXTENSIONS and not out.is_dir():
        return out
    return None


def _plan(args: Any) -> tuple[list[PredictItem], Path, Path | None]:
    """The inputs and their outputs, the output folder, and the output file when one
    was named: everything checked, nothing written."""
    check_tiling(args.tile, args.tile_overlap, args.batch_size)
    if not args.out.strip():
        raise UserError("--out is empty; give the output folder (or, for one input file, the output file)")
    out_dir = Path(args.out).expanduser()
    target_file = _single_output_file(args.input, out_dir)
    if target_file is not None:  # predict photo.jpg --out result.png
        out_dir = target_file.parent
        items = [PredictItem(Path(args.input).expanduser(), Path(target_file.name))]
    else:
        mask = getattr(args, "mask", None)
        items, _ = collect_inputs(args.input, out_dir, Path(mask) if mask else None)
    check_outputs(items, out_dir)
    return items, out_dir, target_file


def _say_renamed(items: list[PredictItem]) -> None:
    renamed = [item for item in items if item.renamed]
    if renamed:
        shown = ", ".join(f"{item.path.name} -> {item.relative.name}" for item in renamed[:3])
        print(f"img2img: {len(renamed)} inputs differ from another only in their extension, so "
              f"their outputs keep it in the name: {shown}{', ...' if len(renamed) > 3 else ''}",
              file=sys.stderr)


# --------------------------------------------------------------------------- the outputs


class NewFolders:
    """The folders a run creates (``--out``, its missing parents, the subfolders of its
    outputs), so that a run that wrote nothing leaves none of them behind. Only empty
    folders are ever removed, and the predictions manifest only from an ``--out`` this
    run created."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.made: list[Path] = []

    def note(self, folder: Path) -> None:
        """Remember which of ``folder`` and its parents do not exist yet (call it just
        before they are created)."""
        for path in (folder, *folder.parents):
            if path.exists() or path.is_symlink():
                break
            if path not in self.made:
                self.made.append(path)

    def make(self, folder: Path) -> None:
        """Create ``folder`` (and its parents) as ``--out``: one UserError when it cannot."""
        from img2img.outputs import make_folder

        self.note(folder)
        make_folder(folder)

    def remove_empty(self) -> None:
        """Remove what this run made and left empty (``--out`` holding only the manifest
        this run wrote counts as empty), deepest first."""
        from img2img.ownership import MARKER

        for folder in sorted(self.made, key=lambda p: len(p.parts), reverse=True):
            if folder == self.out_dir and folder.is_dir() and [p.name for p in folder.iterdir()] == [MARKER]:
                (folder / MARKER).unlink()  # this run's manifest, listing nothing written
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone): not ours to remove
                pass


def _read_for_predict(path: Path) -> tuple[np.ndarray, int]:
    """The image as uint8 (8-bit files) or uint16 (deeper files), and the PNG bit depth
    its output gets: 16 when the input had more than 8 bits, else 8."""
    from img2img.data.io import load_image

    array, info = load_image(path)
    if info.bit_depth > 8:
        if array.dtype != np.uint16:
            array = np.rint(np.clip(array, 0, 1) * 65535).astype(np.uint16)
        return array, 16
    return array, 8


def _read_chunk(chunk: list[PredictItem], bar: Any) -> tuple[list[PredictItem], list[np.ndarray], list[int]]:
    """The items of ``chunk`` that could be read, their images and bit depths; each one
    that could not is skipped with one line naming it."""
    from img2img.errors import DataError

    ready, arrays, depths = [], [], []
    for item in chunk:
        try:
            array, depth = _read_for_predict(item.path)
        except (DataError, OSError, ValueError) as err:
            reason = str(err)
            if str(item.path) not in reason:
                reason = f"{item.path}: {reason}"
            bar.write(f"img2img: skipped {reason}", file=sys.stderr)
            bar.update(1)
            continue
        ready.append(item)
        arrays.append(array)
        depths.append(depth)
    return ready, arrays, depths


def _write(target: Path, output: np.ndarray, depth: int, done: int, total: int) -> None:
    from img2img.data.io import write_image

    if depth == 16 and target.suffix.lower() not in (".png", ".tif", ".tiff"):
        depth = 8  # e.g. --out result.jpg: 8-bit formats only
    try:
        write_image(target, output, bit_depth=depth)
    except OSError as err:  # out of disk, permissions: stop, naming the file
        raise UserError(
            f"cannot write {target}: {err.strerror or err}; {done} of "
            f"{total} images were written before it"
        ) from None


def translate_all(translator: Translator, items: list[PredictItem], out_dir: Path, batch_size: int,
                  folders: NewFolders) -> list[str]:
    """Translate ``items`` ``batch_size`` at a time into ``out_dir``, with a progress bar;
    returns the outputs written (relative POSIX paths), in order."""
    from tqdm.auto import tqdm

    written: list[str] = []
    bar = tqdm(total=len(items), unit="img", desc="predict", dynamic_ncols=True, file=sys.stderr)
    try:
        for start in range(0, len(items), batch_size):
            ready, arrays, depths = _read_chunk(items[start : start + batch_size], bar)
            if not ready:
                continue
            inputs = {name: [input_value(item.inputs[name], name, item.path, array)
                             for item, array in zip(ready, arrays)]
                      for name in ready[0].inputs}
            for item, output, depth in zip(ready, translator(arrays, **inputs), depths):
                target = out_dir / item.relative
                folders.note(target.parent)
                _write(target, output, depth, bar.n, len(items))
                written.append(item.relative.as_posix())
                bar.update(1)
    finally:
        bar.close()
    return written


def item_inputs(args: Any, task: Any, items: list[PredictItem], target_file: Path | None) -> list[PredictItem]:
    """Each item's inputs beyond the image, from the options, checked before anything is
    written: ``--to DOMAIN`` (a name or an index) for every item, or ``--to all``: every
    item once per domain, written to a subfolder of ``--out`` named after it (a new list)."""
    from img2img.inference.extras import check_names
    from img2img.inference.input_files import file_inputs

    declared = getattr(task, "inference_inputs", {}) or {}
    given: dict[str, Any] = {}
    if args.to is not None:
        if "domain" not in declared:
            raise UserError(f"--to: a {task.name} model translates into no chosen domain; leave --to out")
        given["domain"] = args.to
    files = file_inputs(args, declared, items)
    check_names(task, {**given, **dict.fromkeys(files, True)})
    for name, paths in files.items():
        for item, path in zip(items, paths):
            item.inputs[name] = path
    if given.get("domain") == "all":
        if target_file is not None:
            raise UserError("--to all writes one output per domain: give a folder as --out, not a file")
        return [replace(item, relative=Path(choice) / item.relative, inputs={**item.inputs, "domain": choice})
                for choice in task.input_choices("domain") for item in items]
    for name, value in given.items():
        task.encode_input(name, value)  # a UserError listing the known values
        for item in items:
            item.inputs[name] = value
    return items


def _report(items: list[PredictItem], written: int, out_dir: Path, target_file: Path | None) -> int:
    failed = len(items) - written
    if target_file is not None and written:
        print(f"wrote {target_file}", file=sys.stderr)
    else:
        print(f"wrote {written} image{'s' * (written != 1)} to {out_dir}", file=sys.stderr)
    if failed:
        print(f"img2img: {failed} of {len(items)} inputs failed (see the messages above)",
              file=sys.stderr)
        return 1
    return 0


def cli_predict(args: Any) -> int:
    """``img2img predict MODEL INPUT --out DIR``: see ``img2img predict --help``."""
    from img2img import ownership

    items, out_dir, target_file = _plan(args)
    targets = [item.relative.as_posix() for item in items]
    entries = [] if target_file is not None else ownership.check_files(out_dir, KIND, targets, HINT)
    _say_renamed(items)
    # The model is found and read before anything is written.
    translator = load(args.model, device=args.device, direction=args.direction, tile=args.tile,
                      tile_overlap=args.tile_overlap, batch_size=args.batch_size)
    expanded = item_inputs(args, translator.task, items, target_file)
    if expanded is not items:  # one output per domain: check the new names too
        items = expanded
        targets = [item.relative.as_posix() for item in items]
        entries = ownership.check_files(out_dir, KIND, targets, HINT)
    if translator.external:
        print(f"img2img: {args.model}: {translator.external.describe()}, loaded through spandrel",
              file=sys.stderr)
    folders = NewFolders(out_dir)
    written: list[str] = []
    try:
        folders.make(out_dir)
        if target_file is None:  # listed before writing: a crash leaves them still img2img's
            ownership.mark(out_dir, KIND, [*entries, *targets])
        written = translate_all(translator, items, out_dir, args.batch_size, folders)
    except BaseException:
        folders.remove_empty()
        raise
    if target_file is None:  # what is there now: earlier outputs still present, and these
        kept = [e for e in entries if (out_dir / e).exists() or (out_dir / e).is_symlink()]
        ownership.mark(out_dir, KIND, [*kept, *written])
    if not written:  # every input failed
        folders.remove_empty()
    return _report(items, len(written), out_dir, target_file)
