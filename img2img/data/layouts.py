"""What a data folder looks like, for the checks a finder makes before it reads a split:
a folder in another layout than the one asked for is refused with what was found and
what to pass, never trained on as it is (single photos cut into fake A|B halves, or the
validation images of an unpaired set trained on with the rest).

The layouts (see :mod:`img2img.data.splits`): A|B images side by side (about twice as
wide as high), ``A/`` and ``B/`` folders matched by name, one folder per domain
(``trainA/``, ``trainB/``, ...), and any images. Nothing here knows the methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from img2img.errors import DataError
from img2img.log import get_logger

log = get_logger(__name__)

#: Folders of the one-folder-per-domain layout.
DOMAIN_FOLDERS = ("trainA", "trainB", "valA", "valB", "testA", "testB")
#: Split folders other than the configured ones.
SPLIT_FOLDERS = ("train", "val", "test")
#: An A|B image is at least this many times as wide as high (two square halves: 2); the
#: default of ``data.min_pair_ratio``.
MIN_PAIR_RATIO = 1.4


def _subfolders(root: Path) -> list[str]:
    try:
        return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def describe(root: Path) -> str:
    """What ``root`` holds, in a few words (for messages)."""
    names = _subfolders(root)
    domains = [n for n in names if n in DOMAIN_FOLDERS]
    if domains:
        return f"{', '.join(f'{n}/' for n in domains)}: one folder per domain (unpaired data)"
    if "A" in names and "B" in names:
        return "A/ and B/: pairs matched by file name (data.layout=folders)"
    if names:
        shown = ", ".join(f"{n}/" for n in names[:6]) + (", ..." if len(names) > 6 else "")
        return f"the folders {shown}"
    return "images only"


def check_fallback(root: Path, split_name: str, val_name: str, pairs: bool = False) -> None:
    """``root`` has no ``split_name/`` folder, so its own images would be the training
    set: refused when it holds another layout's split folders (their images, held-out
    ones included, would all be trained on). ``pairs``: the images are to be A|B pairs,
    so one domain's folder of single photos is no fix to offer."""
    names = _subfolders(root)
    others = [n for n in names if (n in DOMAIN_FOLDERS or n in SPLIT_FOLDERS) and n != val_name]
    if not others:
        return
    found = ", ".join(f"{n}/" for n in others)
    if any(n in DOMAIN_FOLDERS for n in others):
        fix = ("it is unpaired data (one folder per domain): train an unpaired recipe on it "
               "('img2img recipes'), or " + (
                   "give paired data: A|B images side by side, or A/ and B/ folders matched "
                   "by name (data.layout=folders)" if pairs else
                   f"point data.root at one folder of images, e.g. data.root={root / others[0]}"))
    else:
        fix = (f"point data.root at a folder holding {split_name}/ (and {val_name}/), or set "
               f"data.train_split (and data.val_split) to the folder names it has")
    raise DataError(
        f"data.root {root} has no {split_name}/ folder but holds {found}; its images would all be "
        f"trained on, held-out ones included. {fix[0].upper()}{fix[1:]}")


def check_pairs_side_by_side(folder: str, sizes: dict[Path, tuple[int, int]],
                             paths: Sequence[Path], min_ratio: float = MIN_PAIR_RATIO) -> None:
    """A|B images are about twice as wide as high; a folder where most are narrower than
    ``min_ratio`` times their height holds something else (single photos), named with what
    to pass (``data.min_pair_ratio``; 0 turns the check off)."""
    narrow = [p for p in paths if p in sizes and sizes[p][0] < min_ratio * sizes[p][1]]
    if not paths or len(narrow) * 2 <= len(paths):
        return
    w, h = sizes[narrow[0]]
    held = describe(Path(folder))
    unpaired = "per domain" in held
    looks = f"it holds {held}" if unpaired else "this looks like a folder of single photos"
    suits = ("unpaired data suits an unpaired method" if unpaired
             else "single photos suit a method that reads one image per sample")
    raise DataError(
        f"{folder}: {len(narrow)} of {len(paths)} images are not A|B pairs side by side (about "
        f"twice as wide as high), e.g. {narrow[0]} is {w}x{h}: {looks}. Paired data is one A|B "
        "image per pair (data.layout=aligned) or A/ and B/ folders matched by name "
        f"(data.layout=folders); {suits} ('img2img recipes' lists the recipes). If these are A|B "
        f"pairs whose halves are portrait, lower data.min_pair_ratio (now {min_ratio:g}; 0 turns "
        "this check off)")


def eval_split(data_dir: Path, val_name: str) -> str:
    """The folder of ``data_dir`` that ``img2img eval`` scores: its ``val_name/`` split when
    it has one (a data root), else ``test/`` when it holds a training split too, else
    ``data_dir`` itself ("."). A data root with a training split and no held-out one is
    refused: its training images would be scored."""
    names = _subfolders(data_dir)
    if val_name in names:
        chosen = val_name
    elif "train" in names and "test" in names:
        chosen = "test"
    elif "train" in names:
        raise DataError(
            f"--data {data_dir} holds a train/ split but no {val_name}/ or test/: pass the folder "
            "of held-out images (e.g. --data DIR/val), not the data root")
    else:
        return "."
    others = [n for n in (val_name, "test") if n in names and n != chosen]
    log.info("evaluating the %s split: %s%s", chosen, data_dir / chosen,
             f" (pass --data {data_dir / others[0]} for the other)" if others else "")
    return chosen
