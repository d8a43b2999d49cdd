"""``img2img data check CONFIG [overrides]``: scan the data of a config and report.

Every file of the train split (and of the val split when it exists) is fully decoded, so
truncated and corrupt files are found (the check made when a dataset is built is faster
and shallower, see :mod:`img2img.data.io`). Pairing problems are reported too: unmatched
names and size mismatches for ``data.layout=folders``, LR files that do not match their HR
for ``data.lr_root``, SR images smaller than ``data.gt_size``.

Prints the image count of each folder and one line per problem; exit 0 when clean, 2
(a DataError) otherwise.
"""

from __future__ import annotations

from typing import Any

from img2img.errors import DataError


def check_config_data(config: Any, out=print) -> int:
    """Print the report for ``config``; returns the number of problems."""
    from img2img.data.datasets import check_data_settings, collect_split

    check_data_settings(config)
    out(f"task {config.task}, data.root {config.data.root}")
    problems = 0
    for split in ("train", "val"):
        found = collect_split(config, split, full_decode=True)
        if found is None:
            out(f"{split}: no {split} split (optional)")
            continue
        for folder, count in found.folders.items():
            out(f"{split}: {count:7d} images in {folder}")
        usable = len(found.items[0]) if config.task == "cyclegan" else len(found.items)
        out(f"{split}: {usable:7d} usable {'A images' if config.task == 'cyclegan' else 'samples'}")
        for path, reason in found.problems:
            out(f"  BAD {path}: {reason}")
        problems += len(found.problems)
    return problems


def cli_check(args: Any) -> int:
    problems = check_config_data(args.cfg)
    if problems:
        raise DataError(
            f"{problems} problem(s) in the data (listed above); fix or remove those files, "
            "or set data.on_error=skip to train without them"
        )
    print("all files are readable")
    return 0
