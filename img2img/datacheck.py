"""``img2img data check CONFIG [overrides]``: scan the data a config would train on.

Prints the image count of each folder and one line per problem (see
:func:`img2img.data.check.report`); exit 0 when clean, 2 (a DataError) otherwise. The
task says where its files are and how they pair.
"""

from __future__ import annotations

from typing import Any

from img2img.errors import DataError


def check_config_data(config: Any, out=print) -> int:
    """Print the report for ``config``; returns the number of problems."""
    from img2img.data.check import report
    from img2img.tasks import build_task

    task = build_task(config)
    out(f"task {config.task}, data.root {config.data.root}")
    return report(task.collect_split, out)


def cli_check(args: Any) -> int:
    problems = check_config_data(args.cfg)
    if problems:
        raise DataError(
            f"{problems} problem(s) in the data (listed above); fix or remove those files, "
            "or set data.on_error=skip to train without them"
        )
    print("all files are readable")
    return 0
