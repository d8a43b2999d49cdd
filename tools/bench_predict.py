#!/usr/bin/env python
"""Prediction benchmark: speed and peak memory of ``Translator``, whole images vs tiles.

    python tools/bench.py predict [--quick] [--device cpu|cuda] [--sizes 512 2048]
    python tools/bench_predict.py --case '{"net": "srresnet_x4", "size": 4096, "tile": 256}'

Every case runs in a fresh Python process, so its peak resident memory (``ru_maxrss``)
is its own: ``peak_rss_mb`` is the whole process (torch itself is a few hundred MB),
``rss_before_mb`` the same process after building the network and a warm-up call, and
``added_mb`` the difference, i.e. what translating the image needed (the uint8 output
array included). On CUDA ``cuda_peak_mb`` is ``torch.cuda.max_memory_allocated``.

Cases (real, full-size networks with their default init; speed does not depend on the
weights): SRResNet x4 (MSRResNet, 64 features, 16 blocks) and the pix2pix ``unet_256``
(ngf 64, batch norm), at 512 and 2048 px (``--sizes``), whole and tiled, plus a 4096x4096
x4 SR case tiled (not with ``--quick``). Untiled cases whose activations would not fit
in memory are listed as skipped with the estimate. ``--quick`` uses 128 px for SR and
256/512 px for the U-Net. Inputs are uint8 HxWx3 arrays, outputs uint8.
``OMP_NUM_THREADS`` (or the default torch thread count) sets the CPU threads.

Measured on the 2-core AMD EPYC dev machine, CPU, 1 thread, ``nice -n 19`` beside other
jobs (so times are noisy; memory is not), randomly initialised full-size networks:

| case                             | seconds | in Mpx/s | peak RSS MB | added MB | output MB |
|----------------------------------|---------|----------|-------------|----------|-----------|
| SRResNet x4, 512, whole          | 57.9    | 0.0045   | 3713        | 3150     | 12        |
| SRResNet x4, 512, tile 256/16    | 57.0    | 0.0046   | 1507        | 943      | 12        |
| SRResNet x4, 2048, whole         | skipped: ~64 GiB of activations                         |
| SRResNet x4, 2048, tile 256/16   | 467.7   | 0.0090   | 1710        | 1113     | 192       |
| SRResNet x4, 4096, tile 256/16   | 2101.6  | 0.0080   | 2382        | 1772     | 768       |
| unet_256, 512, whole             | 0.99    | 0.27     | 943         | 155      | 0.75      |
| unet_256, 2048, whole            | 15.5    | 0.27     | 3290        | 2489     | 12        |
| unet_256, 2048, tile 512/64      | 21.5    | 0.20     | 1028        | 188      | 12        |

Tiled SR memory minus the output array stays at ~0.93-1.0 GB from 512 to 4096 px (the
rest is the output and the one-tile-row float32 band, which grows with the width only).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

NETS = {
    "srresnet_x4": ["task=srgan", "model.generator.name=srresnet", "data.scale=4"],
    "unet_256": ["task=pix2pix", "model.generator.name=unet_256"],
    # for quick memory-scaling checks (--case only): 16 features, 2 blocks
    "srresnet_x4_small": ["task=srgan", "model.generator.name=srresnet", "data.scale=4",
                          "model.generator.ngf=16", "model.generator.n_blocks=2"],
}
SR_TILE, SR_OVERLAP = 256, 16
UNET_TILE, UNET_OVERLAP = 512, 64


def _estimate_untiled_bytes(net: str, size: int) -> int:
    """Rough peak activation bytes for a whole ``size`` x ``size`` image (float32)."""
    if net == "srresnet_x4":
        # 256-channel conv at 2x and 64-channel maps at 4x: ~4 live 64 x (4 size)^2 maps
        return 4 * 64 * (4 * size) ** 2 * 4
    # the U-Net's widest maps: 128 channels at half size, a few alive at once
    return 4 * 128 * (size // 2) ** 2 * 4


def _total_ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # pragma: no cover
        return 8 << 30


def cases(opts) -> list[dict]:
    device = getattr(opts, "device", "cpu") or "cpu"
    quick = bool(getattr(opts, "quick", False))
    sizes = getattr(opts, "sizes", None)
    out = []
    if quick:
        sr_sizes, unet_sizes = sizes or [128], sizes or [256, 512]
        sr_tile, unet_tile = 64, 256
    else:
        sr_sizes = unet_sizes = sizes or [512, 2048]
        sr_tile, unet_tile = SR_TILE, UNET_TILE
    for size in sr_sizes:
        for tile in (0, sr_tile):
            out.append({"net": "srresnet_x4", "size": size, "tile": tile,
                        "overlap": SR_OVERLAP, "device": device})
    for size in unet_sizes:
        for tile in (0, unet_tile):
            out.append({"net": "unet_256", "size": size, "tile": tile,
                        "overlap": UNET_OVERLAP, "device": device})
    if not quick:
        out.append({"net": "srresnet_x4", "size": 4096, "tile": SR_TILE, "overlap": SR_OVERLAP,
                    "device": device})
    return out


def run(opts) -> list[dict]:
    rows = []
    ram = _total_ram()
    for case in cases(opts):
        row = {"net": case["net"], "size": case["size"], "tile": case["tile"] or "whole",
               "device": case["device"]}
        need = _estimate_untiled_bytes(case["net"], case["size"])
        if not case["tile"] and case["device"] == "cpu" and need > 0.6 * ram:
            row["note"] = f"skipped: whole image needs ~{need / 2**30:.0f} GiB of activations"
            rows.append(row)
            continue
        rows.append({**row, **run_case_subprocess(case)})
    return rows


def run_case_subprocess(case: dict) -> dict:
    from bench import run_case_subprocess as run_script_case

    return run_script_case(__file__, case)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_case(case: dict) -> dict:
    """One case in this process (the child side of :func:`run_case_subprocess`)."""
    import resource
    import time

    import numpy as np
    import torch

    from img2img.config import load_config
    from img2img.inference import Translator
    from img2img.tasks import build_generators

    torch.manual_seed(0)
    config = load_config(None, NETS[case["net"]])
    translator = Translator(
        config, build_generators(config), device=case.get("device", "cpu"),
        tile=case.get("tile", 0), tile_overlap=case.get("overlap", 16),
        batch_size=case.get("batch_size", 1),
    )
    size = case["size"]
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (size // 32 + 1, size // 32 + 1, 3), dtype=np.uint8)
    image = np.repeat(np.repeat(coarse, 32, axis=0), 32, axis=1)[:size, :size]
    image = np.ascontiguousarray(image)
    translator(image[:32, :32])  # warm-up: kernels, the minimum-size probe
    cuda = translator.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = _rss_mb()
    start = time.perf_counter()
    out = translator(image)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    in_mp = size * size / 1e6
    row = {
        "scale": translator.scale,
        "overlap": case.get("overlap") if case.get("tile") else None,
        "seconds": seconds,
        "in_mpix_per_s": in_mp / seconds,
        "out_mpix_per_s": in_mp * translator.scale**2 / seconds,
        "peak_rss_mb": peak,
        "rss_before_mb": before,
        "added_mb": peak - before,
        "output_mb": out.nbytes / 2**20,
        "threads": torch.get_num_threads(),
    }
    if cuda:
        row["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", required=True, help="one case as JSON (see cases())")
    args = parser.parse_args(argv)
    print(json.dumps(run_case(json.loads(args.case))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
