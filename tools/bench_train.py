#!/usr/bin/env python
"""Training-step benchmark: the engine's real step (``Trainer._train_step``) per task.

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
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: The classic reference implementation's CPU float32 step on these machines, in seconds,
#: at (task, batch, size). Source: /work/shared/DESIGN.md, "Facts of the machines".
REFERENCE_STEP_S = {("pix2pix", 1, 256): 0.83, ("cyclegan", 1, 256): 11.4}

TASKS = {
    "pix2pix": {
        "overrides": [
            "task=pix2pix", "model.generator.name=unet_256", "model.generator.norm=batch",
            "model.generator.dropout=true", "model.discriminator.name=patchgan",
            "model.discriminator.n_layers=3", "model.discriminator.norm=batch",
            "loss.gan_mode=vanilla", "loss.pixel_weight=100", "loss.d_loss_scale=0.5",
        ],
        "batches": (1, 16), "size": 256, "quick_batch": 1,
    },
    "cyclegan": {
        "overrides": [
            "task=cyclegan", "model.generator.name=resnet_9blocks", "model.generator.norm=instance",
            "model.generator.dropout=false", "model.discriminator.name=patchgan",
            "model.discriminator.n_layers=3", "model.discriminator.norm=instance",
            "loss.gan_mode=lsgan", "loss.cycle_weight=10", "loss.identity_weight=0.5",
            "loss.pool_size=50", "loss.d_loss_scale=0.5", "eval.metric=fid",
        ],
        "batches": (1, 8), "size": 256, "quick_batch": 1,
    },
    "srgan": {
        "overrides": [
            "task=srgan", "model.generator.name=srresnet", "data.scale=4",
            "model.discriminator.name=patchgan", "model.discriminator.n_layers=3",
            "model.discriminator.norm=batch", "loss.pixel=l1", "loss.pixel_weight=0.01",
            "loss.perceptual_weight=1", "loss.vgg_weights=none", "loss.gan_mode=vanilla",
            "loss.gan_weight=0.005", "loss.d_loss_scale=1", "train.betas=[0.9,0.99]",
            "eval.metric=psnr_y",
        ],
        "batches": (16,), "size": 128, "quick_batch": 2,
    },
    "colorization": {
        "overrides": [
            "task=colorization", "model.generator.name=unet_256", "model.generator.norm=batch",
            "model.generator.dropout=true", "model.discriminator.name=patchgan",
            "model.discriminator.n_layers=3", "model.discriminator.norm=batch",
            "loss.gan_mode=vanilla", "loss.pixel_weight=100",
        ],
        "batches": (1, 16), "size": 256, "quick_batch": 1,
    },
}

MODES = {
    "fp32": ["mixed_precision=no", "train.channels_last=false", "train.fused_adam=false",
             "train.tf32=false", "train.compile=false"],
    "fp32+fused": ["mixed_precision=no", "train.channels_last=false", "train.fused_adam=true",
                   "train.tf32=false", "train.compile=false"],
    "bf16": ["mixed_precision=bf16", "train.channels_last=false", "train.fused_adam=false",
             "train.tf32=false", "train.compile=false"],
    # channels_last is added on CUDA only (see mode_overrides)
    "fast": ["mixed_precision=bf16", "train.fused_adam=true", "train.tf32=true", "train.compile=false"],
    "fast+cl": ["mixed_precision=bf16", "train.channels_last=true", "train.fused_adam=true",
                "train.tf32=true", "train.compile=false"],
    "fast+compile": ["mixed_precision=bf16", "train.fused_adam=true", "train.tf32=true",
                     "train.compile=true"],
}
MODES["classic"] = MODES["fp32"]  # the same settings; the step is classic_step()
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
    return rows


def run_case_subprocess(case: dict) -> dict:
    from bench import run_case_subprocess as run_script_case

    return run_script_case(__file__, case)


# --------------------------------------------------------------------------- one case


def _smooth_image(rng, h: int, w: int):
    """A smooth random colour image (uint8 HxWx3)."""
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        a, b, phase = rng.uniform(-0.2, 0.2, 3)
        img[..., c] = 0.5 + 0.4 * np.sin(a * yy + b * xx + 10 * phase)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def make_data(root: Path, task: str, size: int, count: int = 2) -> Path:
    """``count`` generated training images of ``size`` px in the layout ``task`` reads."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        img = _smooth_image(rng, size, size)
        if task == "pix2pix":
            files = {f"train/{i}.png": np.concatenate([255 - img, img], axis=1)}
        elif task == "cyclegan":
            files = {f"trainA/{i}.png": img, f"trainB/{i}.png": np.ascontiguousarray(img[..., ::-1])}
        else:
            files = {f"train/{i}.png": img}
        for name, array in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path)
    return root


def network_overrides(task: str, size: int) -> tuple[list[str], str]:
    """Overrides that fit the task's generator to ``size`` px, and the generator's label."""
    if task in ("pix2pix", "colorization"):
        if size >= 256:
            return [], "unet_256"
        downs = max(1, min(8, int(math.log2(size))))
        return ["model.generator.name=unet", f"model.generator.num_downs={downs}"], f"unet({downs} downs)"
    if task == "cyclegan":
        return [], "resnet_9blocks"
    return [f"data.gt_size={size}"], "srresnet_x4"


def mode_overrides(mode: str, device: str) -> list[str]:
    """The config overrides of a mode: ``fast`` and ``fast+compile`` use channels_last on
    CUDA only (on the CPU it measured slower, see the module docstring)."""
    overrides = list(MODES[mode])
    if mode in ("fast", "fast+compile"):
        overrides.append(f"train.channels_last={'true' if device == 'cuda' else 'false'}")
    return overrides


def build_config(task: str, batch: int, size: int, mode: str, device: str, root: Path,
                 output_dir: Path, *extra: str):
    from img2img.config import load_config

    net, _ = network_overrides(task, size)
    overrides = [
        *TASKS[task]["overrides"], *net, *mode_overrides(mode, device),
        f"device={device}", f"data.root={root}", f"output_dir={output_dir}",
        f"train.batch_size={batch}", "train.max_steps=1000000", "train.ema=0",
        "data.num_workers=0", "data.preprocess=crop", f"data.load_size={size}",
        f"data.crop_size={size}", "data.flip=false", "log.wandb=off", "log.progress=false",
        "log.images_every=0", "eval.every=0", "seed=0", *extra,
    ]
    return load_config(None, overrides)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_case(case: dict) -> dict:
    """One case in this process (the child side of :func:`run_case_subprocess`)."""
    import itertools
    import resource

    import torch

    from img2img.trainer import Trainer

    task, batch, size, mode = case["task"], case["batch"], case["size"], case["mode"]
    load1 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="img2img-bench-train-") as tmp:
        root = make_data(Path(tmp) / "data", task, size)
        config = build_config(task, batch, size, mode, case.get("device", "cpu"), root, Path(tmp) / "run")
        trainer = Trainer(config)
        source = trainer._batches()
        preloaded = [next(source) for _ in range(2)]
        batches = itertools.cycle(preloaded)
        cuda = trainer.device.type == "cuda"
        if mode == "classic":
            prepared = itertools.cycle([trainer.task.prepare(b, trainer.device) for b in preloaded])
            step_fn = classic_step(trainer, task)

            def train_step(_batches):
                step_fn(next(prepared))
        else:
            train_step = trainer._train_step

        def sync():
            if cuda:
                torch.cuda.synchronize()

        rss_before = _rss_mb()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        warm = time.perf_counter()
        for _ in range(case.get("warmup", 1)):
            train_step(batches)
        sync()
        warmup_s = time.perf_counter() - warm
        times, cpu = [], 0.0
        budget = case.get("budget_s")
        for _ in range(case["steps"]):
            c0, t0 = time.process_time(), time.perf_counter()
            train_step(batches)
            sync()
            times.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
            if budget and len(times) >= 2 and sum(times) > budget:
                break
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        ms = 1000 * statistics.median(times)
        row = {
            "network": network_overrides(task, size)[1],
            "threads": torch.get_num_threads(),
            "steps": len(times),
            "ms_per_step": ms,
            "min_ms_per_step": 1000 * min(times),
            "steps_per_s": 1000 / ms,
            "images_per_s": 1000 * batch / ms,
            "cpu_ms_per_step": 1000 * cpu / len(times),
            "warmup_s": warmup_s,
            "peak_rss_mb": peak,
            "added_mb": peak - rss_before,
        }
        if cuda:
            row["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        ref = REFERENCE_STEP_S.get((task, batch, size)) if not cuda else None
        row["ref_ms"] = 1000 * ref if ref else None
        row["vs_ref"] = 1000 * ref / ms if ref else None
        row["load1"] = load1
    return row


def classic_step(trainer, task: str):
    """A training step as the classic reference code writes it, on ``trainer``'s networks
    and optimizers' settings but with none of the engine (no Accelerate, no loss
    bookkeeping, no finiteness checks). Returns ``step(batch)``."""
    import random

    import torch
    import torch.nn.functional as F

    if task not in ("pix2pix", "colorization", "cyclegan"):
        raise SystemExit(f"bench train: the classic step is written for pix2pix, colorization "
                         f"and cyclegan, not {task}")
    G, D = trainer.G, trainer.D
    t = trainer.config.train
    opt_G = torch.optim.Adam([p for n in G.values() for p in n.parameters()], lr=t.lr_g, betas=tuple(t.betas))
    opt_D = torch.optim.Adam([p for n in D.values() for p in n.parameters()], lr=t.lr_d, betas=tuple(t.betas))

    def grad(nets, on):
        for net in nets:
            for p in net.parameters():
                p.requires_grad = on

    def bce(pred, real):
        return F.binary_cross_entropy_with_logits(pred, torch.full_like(pred, float(real)))

    def mse(pred, real):
        return F.mse_loss(pred, torch.full_like(pred, float(real)))

    if task != "cyclegan":
        g, d = G["G"], D["D"]

        def step(batch):
            A, B = batch["A"], batch["B"]
            fake = g(A)
            grad([d], True)
            opt_D.zero_grad()
            fake_AB = torch.cat([A, fake], 1)
            loss_D = 0.5 * (bce(d(fake_AB.detach()), 0) + bce(d(torch.cat([A, B], 1)), 1))
            loss_D.backward()
            opt_D.step()
            grad([d], False)
            opt_G.zero_grad()
            loss_G = bce(d(fake_AB), 1) + 100 * F.l1_loss(fake, B)
            loss_G.backward()
            opt_G.step()

        return step

    ga, gb, da, db = G["G_A"], G["G_B"], D["D_A"], D["D_B"]
    pools: dict[str, list] = {"A": [], "B": []}
    rng = random.Random(0)

    def query(pool, images):  # one image at a time, as the reference's pool
        out = []
        for image in images:
            image = image.detach().unsqueeze(0)
            if len(pool) < 50:
                pool.append(image)
                out.append(image)
            elif rng.random() > 0.5:
                i = rng.randrange(50)
                out.append(pool[i].clone())
                pool[i] = image
            else:
                out.append(image)
        return torch.cat(out, 0)

    def step(batch):
        A, B = batch["A"], batch["B"]
        fake_B = ga(A)
        rec_A = gb(fake_B)
        fake_A = gb(B)
        rec_B = ga(fake_A)
        grad([da, db], False)
        opt_G.zero_grad()
        idt_A, idt_B = ga(B), gb(A)
        loss_G = (mse(da(fake_B), 1) + mse(db(fake_A), 1)
                  + 10 * F.l1_loss(rec_A, A) + 10 * F.l1_loss(rec_B, B)
                  + 5 * F.l1_loss(idt_A, B) + 5 * F.l1_loss(idt_B, A))
        loss_G.backward()
        opt_G.step()
        grad([da, db], True)
        opt_D.zero_grad()
        for d, real, fake, pool in ((da, B, fake_B, pools["A"]), (db, A, fake_A, pools["B"])):
            fake = query(pool, fake)
            (0.5 * (mse(d(real), 1) + mse(d(fake.detach()), 0))).backward()
        opt_D.step()

    return step


# --------------------------------------------------------------------------- bf16 vs fp32


def loss_trajectory(mode: str, seed: int, steps: int, size: int, device: str) -> list[dict[str, float]]:
    """Per-step loss terms of a short pix2pix run (same data for every call)."""
    import itertools

    from img2img.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="img2img-bench-loss-") as tmp:
        root = make_data(Path(tmp) / "data", "pix2pix", size, count=8)
        config = build_config("pix2pix", 1, size, mode, device, root, Path(tmp) / "run",
                              f"seed={seed}", "data.flip=true")
        trainer = Trainer(config)
        source = trainer._batches()
        # The same 8 batches, in the same order, for every run (the data order is seeded).
        batches = itertools.cycle([next(source) for _ in range(8)])
        out = []
        for _ in range(steps):
            trainer._train_step(batches)
            out.append({k: float(v) for k, v in trainer._pending.items()})
            trainer._pending = {}
    return out


def loss_check(steps: int = 50, size: int = 64, device: str = "cpu") -> list[dict]:
    """fp32 (seeds 0 and 1) vs bf16 (seed 0): mean and final G_L1, and the mean absolute
    per-step gap of each run to fp32 seed 0."""
    runs = {
        "fp32 seed 0": loss_trajectory("fp32", 0, steps, size, device),
        "fp32 seed 1": loss_trajectory("fp32", 1, steps, size, device),
        "bf16 seed 0": loss_trajectory("bf16", 0, steps, size, device),
    }
    base = [r["G_L1"] for r in runs["fp32 seed 0"]]
    tail = max(1, steps // 5)
    rows = []
    for name, traj in runs.items():
        l1 = [r["G_L1"] for r in traj]
        gan = [r["G_GAN"] for r in traj]
        rows.append({
            "run": name, "steps": steps, "size": size,
            "G_L1_first": l1[0], f"G_L1_last{tail}_mean": statistics.fmean(l1[-tail:]),
            "G_L1_mean": statistics.fmean(l1),
            "gap_to_fp32_seed0": statistics.fmean(abs(a - b) for a, b in zip(l1, base)),
            "rel_gap": statistics.fmean(abs(a - b) / b for a, b in zip(l1, base)),
            "G_GAN_mean": statistics.fmean(gan),
            "finite": all(math.isfinite(v) for r in traj for v in r.values()),
        })
    return rows


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
        print(json.dumps(run_case(json.loads(args.case))))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import print_table

    if args.loss_check:
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
