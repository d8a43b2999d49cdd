#!/usr/bin/env python
"""Size and speed of the SR generators at their reference sizes (x4, 3 channels).

    python tools/bench_sr_nets.py [--size 64] [--repeats 3] [--device cpu|cuda] [--json]

For each network: its parameters (as ``img2img summary`` counts them), and the median
seconds of ``repeats`` forward passes on a ``size`` x ``size`` LR input (eval mode, no
gradients, after one warm-up pass), with the output megapixels per second. Randomly
initialised networks (speed does not depend on the weights). ``OMP_NUM_THREADS`` (or
torch's default) sets the CPU threads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

NETS = {  # name: (generator config, what it is)
    "rrdbnet": ({"name": "rrdbnet"}, "ESRGAN RRDBNet, 64 features, 23 blocks"),
    "srvgg_compact_16": ({"name": "srvgg_compact", "n_blocks": 16}, "Real-ESRGAN compact, 16 convs"),
    "srvgg_compact_32": ({"name": "srvgg_compact", "n_blocks": 32}, "compact, 32 convs (general-x4v3)"),
    "span": ({"name": "span", "ngf": 48}, "SPAN, 48 features (eval: merged convs)"),
    "srresnet": ({"name": "srresnet"}, "MSRResNet, 64 features, 16 blocks"),
}


def measure(name: str, size: int, repeats: int, device: str) -> dict:
    from img2img.config import GeneratorConfig
    from img2img.nets import build_generator
    from img2img.summary import count_parameters

    settings, what = NETS[name]
    net = build_generator(GeneratorConfig(**settings), 3, 3, scale=4).to(device).eval()
    x = torch.rand(1, 3, size, size, device=device) * 2 - 1
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            net(x)
            if device == "cuda":
                torch.cuda.synchronize()
            if i:  # the first pass is a warm-up
                times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"net": name, "what": what, "parameters": count_parameters(net), "lr_size": size,
            "seconds": round(seconds, 4), "out_mpx_per_s": round((4 * size) ** 2 / seconds / 1e6, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(name, args.size, args.repeats, args.device) for name in NETS]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'net':18} {'parameters':>12} {'seconds':>9} {'out Mpx/s':>10}  ({args.size}x{args.size} LR, x4, {args.device})")
    for r in rows:
        print(f"{r['net']:18} {r['parameters']:>12,} {r['seconds']:>9.3f} {r['out_mpx_per_s']:>10.3f}  {r['what']}")


if __name__ == "__main__":
    main()
