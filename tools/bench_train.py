#!/usr/bin/env python
"""Training-step benchmark: the engine's real step (``Trainer.train_step``) per task.

    python tools/bench.py train [--quick] [--device cpu|cuda] [--sizes 256] [--steps N]
    python tools/bench_train.py [--quick] [--only pix2pix:1 cyclegan:1] [--modes fp32 fast]
    python tools/bench_train.py --loss-check [--steps 50] [--sizes 64]
    python tools/bench_train.py --case '{"task": "pix2pix", "batch": 1, "size": 256, "mode": "fp32"}'

Cases (full-size networks with their default init; speed does not depend on the weights):

- ``pix2pix``: ``unet_256`` + 70x70 PatchGAN (batch norm, vanilla GAN + 100 x L1),
  batch 1 and 16, 256 px.
- ``cyclegan``: ``resnet_9blocks`` + PatchGAN (instance norm, LSGAN, cycle 10, identity
  0.5, image pools of 50), batch 1 and 8, 256 px.
- ``srgan``: SRResNet x4 (MSRResNet) + PatchGAN + VGG19 conv5_4 perceptual loss
  (``vgg_weights: none``, so nothing is downloaded), L1 0.01, GAN 0.005, batch 16 of
  128 px HR patches (32 px LR).
- ``colorization``: ``unet_256`` from L (1 channel) to ab (2 channels) + PatchGAN, batch 1
  and 16, 256 px.
- ``cut``, ``fastcut``: CUT's recipe (``resnet_9blocks_aa`` + ``patchgan_aa``, LSGAN,
  PatchNCE on 5 layers x 256 patches with the projection head; CUT with the identity
  term), batch 1, 256 px; ``cut_strided``: CUT with strided convolutions instead of
  blur-pool (``antialias: false``, ``patchgan``). Each row also gives its step time and
  step memory over CycleGAN's at the same batch, size and mode (``vs_cyclegan_ms``,
  ``vs_cyclegan_mem``).
- ``realesrgan``: Real-ESRGAN x4plus's GAN stage: RRDBNet x4 + ``unet_sn`` + VGG19
  pre-activation perceptual loss (``vgg_weights: none``), batch 12 of 256 px HR crops cut
  from 400 px ones after the on-device degradation made their LR (inside the step).
- ``realesrnet_compact``: the compact network of realesr-general-x4v3 (64 features, 32
  convs), L1 only, on the same degradation: the step where the degradation weighs most.

Every row also times the task's ``prepare`` alone on the same batches (``prepare_ms``,
``prepare_cpu_ms``) and its part of the step (``prepare_share``, ``prepare_cpu_share``):
a copy to the device for most tasks, the whole real-world degradation for realesrgan.

Modes (``--modes``; all keep the task's losses and its order of updates):

- ``fp32``: the classic reference's settings: float32, NCHW, PyTorch's default Adam (per parameter
  on the CPU, for-each on CUDA), no TF32,
  no compile.
- ``fast``: bf16 autocast, fused Adam, and on CUDA also channels_last and TF32.
- ``fast+compile``: ``fast`` with ``train.compile=true`` (not run by ``--quick``: on a
  2-core CPU compiling takes a minute or more per case).
- ``classic``: the classic reference's training step written out as a plain loop (its
  order of passes: pix2pix's D step then G step re-scoring the fake, CycleGAN's G step
  then D_A and D_B with a per-image Python image pool; default Adam, float32) on the same
  networks and batches, without the engine. Timed beside ``fp32`` on the same machine at
  the same time, it is the fair version of the ``ref_ms`` comparison (pix2pix,
  colorization and CycleGAN only).
- ``fp32+fused``, ``bf16``, ``fast+cl`` (``fast`` with channels_last on any device): for
  ablations. On the CPU channels_last does not pay: PyTorch's CPU kernels for reflection
  padding (its backward), instance norm, convolution backward and the fused Adam make
  contiguous copies of channels_last tensors; measured, the CycleGAN step is ~10% slower
  with it (6.8 s vs 6.1 s) and the pix2pix step unchanged within noise.

Every case runs in a fresh Python process (so its peak memory is its own): a ``Trainer``
is built from a config on a temporary folder of generated images, two batches are loaded
once and then reused, so data loading is not part of the step (``bench.py data`` measures
it). ``warmup`` steps are run first (1; 2 with compile), then up to ``--steps`` timed
steps (default 5; 2 with ``--quick``; without ``--steps`` a case stops after ~120 s of
timed steps, at least 2). Reported: the median ``ms_per_step`` (and the fastest step,
``min_ms_per_step``: on a shared machine the least disturbed one), ``steps_per_s``,
``images_per_s``, ``cpu_ms_per_step`` (CPU time of the process: on a shared machine a
better guide than wall time), ``peak_rss_mb`` (``ru_maxrss`` at the end: the whole
process, torch included), ``added_mb`` (peak minus the resident size after the trainer
was built and the batches loaded, i.e. what the steps needed), on CUDA ``cuda_peak_mb``
(``torch.cuda.max_memory_allocated``), and ``load1`` (the 1-minute load average when the
case started). CUDA steps are synchronised before the clock is read.

``ref_ms`` and ``vs_ref`` compare with the classic reference implementation on the same
machine type, from ``/work/shared/DESIGN.md`` ("Facts of the machines": a pix2pix step,
unet_256 + PatchGAN, 256 px, batch 1, float32, takes about 0.83 s in the classic reference
code on the 2-core AMD EPYC machines, a CycleGAN step about 11.4 s). They are filled in
only for CPU rows at exactly those settings (batch 1, 256 px), in both modes: ``vs_ref``
is the reference's time over ours (above 1: we are faster).

``--quick`` (for CPU): 64 px images, batch 1 (SRGAN: 2, 64 px HR), the ``fp32`` and
``fast`` modes. ``--sizes`` replaces the image size of every case (the SR HR size); below
256 px the U-Nets get ``num_downs = log2(size)`` (``unet_256`` needs 256 px).
``IMG2IMG_BENCH_TRAIN`` (``pix2pix:1,srgan``: task or task:batch) and
``IMG2IMG_BENCH_TRAIN_MODES`` (``fp32,fast``) select cases from ``tools/bench.py``.

``--loss-check`` trains pix2pix at 64 px for ``--steps`` (default 50) steps three times on
the same data: float32 seed 0, float32 seed 1 (the run-to-run noise), and bf16 autocast
seed 0, and compares the G_L1 trajectories.

Modules: this one chooses the cases and runs each in its own process;
``bench_train_config.py`` holds the tasks, modes, generated data and config of a case,
``bench_train_run.py`` what runs inside a case's process (and the loss check), and
``bench_train_classic.py`` the classic reference's step.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from bench_train_config import CUT_CASES, MODES, TASKS

FULL_MODES = ("fp32", "fast", "fast+compile")
QUICK_MODES = ("fp32", "fast")
TIME_BUDGET_S = 120.0  # timed seconds per case when --steps is not given


# --------------------------------------------------------------------------- cases


def _selection(text: str | None) -> list[tuple[str, int | None]] | None:
    """``pix2pix:1,srgan`` -> [("pix2pix", 1), ("srgan", None)]."""
    if not text:
        return None
    out = []
    for item in text.replace(",", " ").split():
        task, _, batch = item.partition(":")
        if task not in TASKS:
            raise SystemExit(f"bench train: unknown task {task!r}; known: {', '.join(TASKS)}")
        out.append((task, int(batch) if batch else None))
    return out


def cases(opts) -> list[dict]:
    device = getattr(opts, "device", "cpu") or "cpu"
    quick = bool(getattr(opts, "quick", False))
    sizes = getattr(opts, "sizes", None)
    steps = getattr(opts, "steps", None)
    only = getattr(opts, "only", None) or _selection(os.environ.get("IMG2IMG_BENCH_TRAIN"))
    modes = getattr(opts, "modes", None) or [
        m for m in os.environ.get("IMG2IMG_BENCH_TRAIN_MODES", "").replace(",", " ").split() if m
    ] or list(QUICK_MODES if quick else FULL_MODES)
    for mode in modes:
        if mode not in MODES:
            raise SystemExit(f"bench train: unknown mode {mode!r}; known: {', '.join(MODES)}")
    out = []
    for task, spec in TASKS.items():
        batches = (spec["quick_batch"],) if quick else spec["batches"]
        if only is not None:
            wanted = [b for t, b in only if t == task]
            if not wanted:
                continue
            if None not in wanted:
                batches = tuple(wanted)
        for size in sizes or ([64] if quick else [spec["size"]]):
            for batch in batches:
                for mode in modes:
                    out.append({
                        "task": task, "batch": batch, "size": size, "mode": mode, "device": device,
                        "steps": steps or (2 if quick else 5),
                        "budget_s": None if steps else TIME_BUDGET_S,
                        "warmup": 2 if "compile" in mode else 1,
                    })
    return out


def run(opts) -> list[dict]:
    rows = []
    for case in cases(opts):
        row = {k: case[k] for k in ("task", "batch", "size", "mode", "device")}
        rows.append({**row, **run_case_subprocess(case)})
    return versus_cyclegan(rows)


def versus_cyclegan(rows: list[dict]) -> list[dict]:
    """Add to each CUT and FastCUT row its step time and step memory over CycleGAN's at the
    same batch, size, mode and device (``vs_cyclegan_ms``, ``vs_cyclegan_mem``: below 1
    is less). Step memory is ``cuda_peak_mb`` on CUDA, else ``added_mb`` (the process's
    peak over its size before the first step: activations, gradients, Adam's moments)."""
    def key(row):
        return tuple(row.get(k) for k in ("batch", "size", "mode", "device"))

    cyclegan = {key(r): r for r in rows if r["task"] == "cyclegan" and "ms_per_step" in r}
    for row in rows:
        ref = cyclegan.get(key(row))
        if row["task"] in CUT_CASES and ref and "ms_per_step" in row:
            mem = "cuda_peak_mb" if "cuda_peak_mb" in row else "added_mb"
            row["vs_cyclegan_ms"] = row["ms_per_step"] / ref["ms_per_step"]
            row["vs_cyclegan_mem"] = row[mem] / max(ref[mem], 1e-9)
    return rows


def run_case_subprocess(case: dict) -> dict:
    from bench import run_case_subprocess as run_script_case

    return run_script_case(__file__, case)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", help="run one case (JSON, see cases()) and print its row as JSON")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--only", nargs="+", help="task or task:batch, e.g. pix2pix:1 cyclegan:1")
    parser.add_argument("--modes", nargs="+", choices=tuple(MODES))
    parser.add_argument("--loss-check", action="store_true", help="bf16 vs fp32 loss trajectories")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    if args.case:
        from bench_train_run import run_case

        print(json.dumps(run_case(json.loads(args.case))))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import print_table

    if args.loss_check:
        from bench_train_run import loss_check

        rows = loss_check(args.steps or 50, (args.sizes or [64])[0], args.device)
        title = "train: bf16 vs fp32 loss (pix2pix)"
    else:
        args.only = _selection(" ".join(args.only)) if args.only else None
        rows = run(args)
        title = "train"
    print_table(title, rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
