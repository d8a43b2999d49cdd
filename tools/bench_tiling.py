"""How close tiled predictions come to whole-image ones (PSNR, peak 1), and what they cost.

    python tools/bench_tiling.py resnet [--ngf 64] [--size 1024] [--tile 256] [--overlap 32]
    python tools/bench_tiling.py model RUN_OR_MODEL_DIR [--tile 256] [--overlap 32]

``resnet``: a ResNet-9 generator with instance norm (CycleGAN's, ``ngf`` wide, seeded
random weights: no trained CycleGAN weights can be downloaded here) on a mosaic of the
photos that ship with scikit-image at their own resolution; tiled with each tile's own
normalisation statistics (what tiling did before) and with the whole image's (the
default now), each against the untiled result. ``model``: a trained model on a 600x400
image (the edges of scikit-image's coffee photo, what the paired demo's U-Net takes) at
the old default overlap (32) and at the overlap derived from its receptive field. Run
with an older img2img on ``PYTHONPATH`` to measure what it did (options it lacks are
skipped). Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

if "img2img" not in sys.modules and not any((Path(p) / "img2img").is_dir() for p in sys.path[1:] if p):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def mosaic(size: int) -> np.ndarray:
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.rocket(), data.chelsea()]
    out = np.zeros((size, size, 3), np.float32)
    for k, (y, x) in enumerate((y, x) for y in range(0, size, 128) for x in range(0, size, 128)):
        im = photos[k % len(photos)]
        oy, ox = (k * 37) % (im.shape[0] - 128), (k * 53) % (im.shape[1] - 128)
        out[y : y + 128, x : x + 128] = im[oy : oy + 128, ox : ox + 128][: size - y, : size - x] / 255
    return out


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def measure(t, x: np.ndarray, whole: np.ndarray, label: str, **options) -> dict:
    caught = Warnings()
    logging.getLogger("img2img").addHandler(caught)
    start = time.perf_counter()
    tiled = t(x, **options)
    seconds = time.perf_counter() - start
    logging.getLogger("img2img").removeHandler(caught)
    row = {"case": label, **options, "psnr_db": round(psnr(tiled, whole), 2), "seconds": round(seconds, 1),
           "warned": caught.messages[0] if caught.messages else None}
    print(json.dumps(row), flush=True)
    return row


def bench_resnet(args: argparse.Namespace) -> None:
    from img2img.config import load_config
    from img2img.inference import Translator
    from img2img.tasks import build_generators

    torch.manual_seed(0)
    config = load_config(None, ["task=cyclegan", "model.generator.name=resnet_9blocks",
                                f"model.generator.ngf={args.ngf}", "model.generator.norm=instance"])
    t = Translator(config, build_generators(config), device="cpu")
    x = mosaic(args.size)
    start = time.perf_counter()
    whole = t(x)
    print(json.dumps({"case": f"ResNet-9 instance norm ngf {args.ngf}, {args.size} px, whole image",
                      "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    options = {"tile": args.tile, "tile_overlap": args.overlap}
    if hasattr(t, "consistent_norm"):
        t.consistent_norm = False
        measure(t, x, whole, "each tile's own statistics", **options)
        t.consistent_norm = True
        measure(t, x, whole, "whole-image statistics (default)", **options)
    else:
        measure(t, x, whole, "default tiling of this img2img", **options)


def bench_model(args: argparse.Namespace) -> None:
    import img2img
    from img2img.data.sample import edges_image

    t = img2img.load(args.model, device="cpu")
    from skimage import data

    photo = data.coffee().astype(np.float32) / 255
    x = edges_image(photo).astype(np.float32) if args.edges else photo
    whole = t(x)
    measure(t, x, whole, f"{args.model}, 600x400, overlap {args.overlap}", tile=args.tile, tile_overlap=args.overlap)
    try:
        measure(t, x, whole, f"{args.model}, 600x400, default overlap", tile=args.tile)
    except TypeError:  # an img2img whose overlap has no default from the network
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("resnet")
    r.add_argument("--ngf", type=int, default=64)
    r.add_argument("--size", type=int, default=1024)
    m = sub.add_parser("model")
    m.add_argument("model")
    m.add_argument("--photo", dest="edges", action="store_false", help="the photo itself, not its edges")
    for p in (r, m):
        p.add_argument("--tile", type=int, default=256)
        p.add_argument("--overlap", type=int, default=32)
    args = parser.parse_args()
    bench_resnet(args) if args.what == "resnet" else bench_model(args)


if __name__ == "__main__":
    main()
