"""The report of ``img2img data check``: every file of a config's splits, checked.

Every file of the train split (and of the val split when it exists) is fully decoded, so
truncated and corrupt files are found (the check made when a dataset is built is faster
and shallower, see :mod:`img2img.data.integrity`). Pairing problems are reported too:
unmatched names and size mismatches of paired folders, LR files that do not match their
HR, images smaller than the training crop. Which files a config reads is its task's business: the
caller passes the task's finder (``collect(split, full_decode)``).
"""

from __future__ import annotations

from collections.abc import Callable

from img2img.data.splits import SplitFiles

Collect = Callable[[str, bool], "SplitFiles | None"]


def report(collect: Collect, out: Callable[[str], object] = print) -> int:
    """Print the image count of each folder, the usable samples and one line per problem
    of the train and val splits; returns the number of problems."""
    problems = 0
    for split in ("train", "val"):
        found = collect(split, True)
        if found is None:
            out(f"{split}: no {split} split (optional)")
            continue
        for folder, count in found.folders.items():
            out(f"{split}: {count:7d} images in {folder}")
        out(f"{split}: {found.usable:7d} usable {found.unit}")
        for path, reason in found.problems:
            out(f"  BAD {path}: {reason}")
        problems += len(found.problems)
    return problems
