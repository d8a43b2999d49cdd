#!/usr/bin/env python
"""Fingerprints of the demo models' weights: the guard that a refactor changes no result.

    python tools/demo_weights.py [KIND ...] [--steps N] [--json FILE]

Trains each demo (``img2img demo KIND``, on the CPU, in a fresh temporary folder) for
``--steps`` steps (default: the demo's own length) and prints one SHA-256 per demo over
every tensor of its exported ``model/`` (names, dtypes, shapes and bytes, in name order).
The same config and seed on the same machine must give the same hashes before and after
any restructuring; ``tests/test_reference_weights.py`` checks short runs against
``tests/data/demo_weights.json``, which this script writes with ``--json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

#: The demos, by recipe name: ``KIND`` or ``KIND_METHOD`` (``unpaired_cut``: ``img2img demo
#: unpaired --method cut``).
KINDS = ("colorize", "sr", "paired", "unpaired", "realsr", "unpaired_cut", "multidomain", "inpaint")


def environment() -> dict[str, str]:
    """What bit-identity depends on beyond the code: the torch build and the CPU kernels it picks."""
    import torch

    return {"torch": torch.__version__.split("+")[0], "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def tensors_hash(path: Path) -> str:
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def demo_hash(kind: str, steps: int | None, workdir: Path) -> str:
    from img2img.demo import kinds, run_demo

    base, method = (kind, None) if kind in kinds() else kind.split("_", 1)
    overrides = ["device=cpu", "log.wandb=off", "log.progress=false"]
    summary = run_demo(base, out=workdir / "runs", data=workdir / "sample", steps=steps, overrides=overrides,
                       method=method)
    return tensors_hash(Path(summary["run_dir"]) / "model" / "model.safetensors")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kinds", nargs="*", metavar="KIND", help=f"demos to run (default: all of {', '.join(KINDS)})")
    parser.add_argument("--steps", type=int, default=None, help="steps per demo (default: the demo's own)")
    parser.add_argument("--json", type=Path, default=None, help="write {environment, steps, hashes} here")
    args = parser.parse_args(argv)
    args.kinds = args.kinds or list(KINDS)
    unknown = [k for k in args.kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown demo {unknown[0]!r}; choose from {', '.join(KINDS)}")
    os.environ.setdefault("WANDB_MODE", "disabled")
    import torch

    torch.set_num_threads(int(os.environ.get("IMG2IMG_THREADS", "1")))
    hashes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            hashes[kind] = demo_hash(kind, args.steps, Path(tmp))
            print(f"{kind:9s} {hashes[kind]}", flush=True)
    if args.json:
        record = {"environment": environment(), "threads": torch.get_num_threads(), "steps": args.steps,
                  "hashes": hashes}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
