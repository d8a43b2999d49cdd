"""What runs inside one benchmark process: a timed training-step case (``--case``) and the
bf16-vs-fp32 loss check. See ``tools/bench_train.py`` for the cases and what is reported.
"""

from __future__ import annotations

import itertools
import math
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_train_classic import classic_step
from bench_train_config import REFERENCE_STEP_S, build_config, make_data, network_overrides

from img2img.engine import Trainer


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_case(case: dict) -> dict:
    """One case in this process (the child side of ``bench_train.run_case_subprocess``)."""
    task, batch, size, mode = case["task"], case["batch"], case["size"], case["mode"]
    load1 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="img2img-bench-train-") as tmp:
        root = make_data(Path(tmp) / "data", task, size)
        config = build_config(task, batch, size, mode, case.get("device", "cpu"), root, Path(tmp) / "run")
        trainer = Trainer(config)
        train_step, batches = _step_and_batches(trainer, task, mode)
        cuda = trainer.device.type == "cuda"
        rss_before = _rss_mb()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times, cpu, warmup_s = _time_steps(train_step, batches, case, cuda)
        row = _row(case, times, cpu, warmup_s, rss_before, cuda)
        if mode != "classic":
            row.update(_time_prepare(trainer, batches, len(times), cuda, row))
        row["load1"] = load1
    return row


def _step_and_batches(trainer, task: str, mode: str):
    """The step to time (the engine's, or the classic loop's for ``classic``) and the
    batches it takes: two batches loaded once and reused, so data loading is not timed."""
    source = trainer.batches()
    preloaded = [next(source) for _ in range(2)]
    batches = itertools.cycle(preloaded)
    if mode != "classic":
        return trainer.train_step, batches
    prepared = itertools.cycle([trainer.task.prepare(b, trainer.device) for b in preloaded])
    step_fn = classic_step(trainer, task)

    def train_step(_batches):
        step_fn(next(prepared))

    return train_step, batches


def _time_steps(train_step, batches, case: dict, cuda: bool) -> tuple[list[float], float, float]:
    """``warmup`` steps, then up to ``steps`` timed ones (fewer once ``budget_s`` seconds
    are spent, at least 2): (wall seconds per step, CPU seconds in all, warm-up seconds)."""

    def sync():
        if cuda:
            torch.cuda.synchronize()

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
    return times, cpu, warmup_s


def _time_prepare(trainer, batches, count: int, cuda: bool, row: dict) -> dict:
    """The task's ``prepare`` alone on the same batches, ``count`` times: what the step
    spends making its batch on the device (a copy for most tasks; the real-world
    degradation that makes the LR for the realesrgan task). ``prepare_share`` is its part
    of the step (the step includes it), by wall and by CPU time."""
    times, cpu = [], 0.0
    channels_last = trainer.config.train.channels_last
    for _ in range(max(count, 2)):
        batch = next(batches)
        c0, t0 = time.process_time(), time.perf_counter()
        trainer.task.prepare(batch, trainer.device, channels_last)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        cpu += time.process_time() - c0
    ms, cpu_ms = 1000 * statistics.median(times), 1000 * cpu / len(times)
    return {"prepare_ms": ms, "prepare_cpu_ms": cpu_ms, "prepare_share": ms / row["ms_per_step"],
            "prepare_cpu_share": cpu_ms / max(row["cpu_ms_per_step"], 1e-9)}


def _row(case: dict, times: list[float], cpu: float, warmup_s: float, rss_before: float,
         cuda: bool) -> dict:
    """The reported numbers of a case (see ``tools/bench_train.py``)."""
    task, batch, size = case["task"], case["batch"], case["size"]
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
    return row


# --------------------------------------------------------------------------- bf16 vs fp32


def loss_trajectory(mode: str, seed: int, steps: int, size: int, device: str) -> list[dict[str, float]]:
    """Per-step loss terms of a short pix2pix run (same data for every call)."""
    with tempfile.TemporaryDirectory(prefix="img2img-bench-loss-") as tmp:
        root = make_data(Path(tmp) / "data", "pix2pix", size, count=8)
        config = build_config("pix2pix", 1, size, mode, device, root, Path(tmp) / "run",
                              f"seed={seed}", "data.flip=true")
        trainer = Trainer(config)
        source = trainer.batches()
        # The same 8 batches, in the same order, for every run (the data order is seeded).
        batches = itertools.cycle([next(source) for _ in range(8)])
        out = []
        for _ in range(steps):
            trainer.train_step(batches)
            out.append({k: float(v) for k, v in trainer.tracking.losses.items()})
            trainer.tracking.losses = {}
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
