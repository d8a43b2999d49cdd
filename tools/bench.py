#!/usr/bin/env python
"""img2img benchmarks: one script, CPU or GPU, a table on stdout and JSON on disk.

    python tools/bench.py [train|data|metrics|predict|all] [--quick] [--device cpu|cuda]
                          [--sizes 256 512] [--steps N] [--json bench.json]

Each section lives in ``tools/bench_<section>.py`` and exposes
``run(opts) -> list[dict]``: one dict per row of its table. ``opts`` is the parsed
argparse namespace (``quick``, ``device``, ``sizes``, ``steps``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

SECTIONS = ("train", "data", "metrics", "predict")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def environment(device: str) -> dict:
    import torch

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "device": device,
    }
    if device == "cuda" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    return env


def run_case_subprocess(script: str, case: dict) -> dict:
    """Run ``script --case JSON`` in a fresh Python process (so that its peak memory is its
    own) and return the row it prints last as JSON; a failed case gives ``{"note": ...}``."""
    import os
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.setdefault("WANDB_MODE", "disabled")
    env.setdefault("HF_HUB_OFFLINE", "1")
    proc = subprocess.run(
        [sys.executable, str(Path(script).resolve()), "--case", json.dumps(case)],
        capture_output=True, text=True, env=env,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"note": f"failed (exit {proc.returncode}): {tail[0][:200]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
        return "" if value is None else str(value)

    widths = {c: max(len(c), *(len(cell(r.get(c))) for r in rows)) for c in columns}
    print(f"\n## {title}")
    print("| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |")
    print("|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|")
    for row in rows:
        print("| " + " | ".join(cell(row.get(c)).ljust(widths[c]) for c in columns) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", nargs="?", default="all", choices=SECTIONS + ("all",))
    parser.add_argument("--quick", action="store_true", help="small sizes and few steps (CPU, minutes)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--sizes", type=int, nargs="+", help="image sizes in pixels")
    parser.add_argument("--steps", type=int, help="timed repetitions per case")
    parser.add_argument("--json", default="bench.json", help="where to write the results")
    opts = parser.parse_args(argv)
    if opts.device == "auto":
        import torch

        opts.device = "cuda" if torch.cuda.is_available() else "cpu"

    results = {"environment": environment(opts.device), "quick": opts.quick, "sections": {}}
    sections = SECTIONS if opts.section == "all" else (opts.section,)
    for name in sections:
        module = importlib.import_module(f"bench_{name}")
        start = time.perf_counter()
        rows = module.run(opts)
        results["sections"][name] = {"rows": rows, "seconds": time.perf_counter() - start}
        print_table(name, rows)
    Path(opts.json).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {opts.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
