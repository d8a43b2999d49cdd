"""Evaluation shared by training (every ``eval.every`` steps) and ``img2img eval``.

A task turns a batch of whole validation images into ``pred``/``target``/``baseline``
(paired tasks: PSNR/SSIM on RGB and on Y) or ``fake``/``real``/``baseline`` (unpaired:
FID/KID when a feature network is given). The baseline is the trivial answer a model
must beat (bicubic for SR, the grey image for colorization, the identity for paired
translation, the untranslated A for unpaired).

Work is sharded: process ``r`` of ``W`` takes images ``r, r + W, ...``; per-image results
(and FID features) are gathered so every process computes the same means, exactly the
ones a single process computes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset

from img2img.errors import UserError
from img2img.log import get_logger
from img2img.metrics import ImageMetrics

log = get_logger(__name__)

Gather = Callable[[Any], list[Any]]


def _single(obj: Any) -> list[Any]:
    return [obj]


def default_crop_border(config) -> int:
    if config.eval.crop_border is not None:
        return config.eval.crop_border
    return config.data.scale if config.task == "srgan" else 0


def _collate_one(sample: dict) -> dict:
    return {k: (v.unsqueeze(0) if isinstance(v, torch.Tensor) else [v]) for k, v in sample.items()}


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)


@torch.inference_mode()
def evaluate(
    task,
    G: dict[str, torch.nn.Module],
    dataset: Dataset,
    device: torch.device,
    *,
    crop_border: int = 0,
    rank: int = 0,
    world_size: int = 1,
    gather: Gather = _single,
    max_images: int = 0,
    feature_net: torch.nn.Module | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate generators ``G`` (in eval mode) on ``dataset`` (whole images, one at a time).

    Returns ``{"model": {metric: mean}, "baseline": {metric: mean}, "per_image": [...],
    "images": n}``. Unpaired tasks report ``fid``/``kid`` (only when ``feature_net`` is
    given) between the translations of every A image and every B image, each used once.
    An image too small for SSIM after ``crop_border`` is a UserError on every process.
    """
    from img2img.metrics import SSIM_WINDOW

    unpaired = getattr(task, "unpaired", False)
    count = len(dataset) if not max_images else min(max_images, len(dataset))
    model_metrics = ImageMetrics(crop_border=crop_border)
    base_metrics = ImageMetrics(crop_border=crop_border)
    too_small: list[str] = []
    fid = None
    if feature_net is not None:
        from img2img.metrics import FidKid

        fid = {"model": FidKid(feature_net), "baseline": FidKid(feature_net)}
    was_training = {name: net.training for name, net in G.items()}
    for net in G.values():
        net.eval()
    try:
        for i in _progress(range(rank, count, world_size), progress, "eval"):
            if unpaired:
                image, name = dataset.domain_image("A", i)
                result = task.evaluate_batch(G, task.prepare({"A": image[None]}, device))
                if fid is not None:
                    fid["model"].update(fake=result["fake"])
                    fid["baseline"].update(fake=result["baseline"])
                continue
            sample = dataset[i]
            result = task.evaluate_batch(G, task.prepare(_collate_one(sample), device))
            name = str(sample.get("B_path", sample.get("A_path", i)))
            h, w = result["target"].shape[-2:]
            if min(h, w) - 2 * crop_border < SSIM_WINDOW:
                too_small.append(f"{name} ({w}x{h})")
                continue
            # float64 metrics: the numbers equal the numpy reference path to 1e-6
            target = result["target"].double()
            model_metrics.update(result["pred"].double(), target, names=[name])
            if "baseline" in result:
                base_metrics.update(result["baseline"].double(), target, names=[name])
        if unpaired and fid is not None:
            for j in _progress(range(rank, len(dataset.paths_b), world_size), progress, "eval B"):
                image, _ = dataset.domain_image("B", j)
                real = ((image[None].to(device) + 1) / 2).clamp_(0, 1)
                fid["model"].update(real=real)
                fid["baseline"].update(real=real)
    finally:
        for name, net in G.items():
            net.train(was_training[name])

    out: dict[str, Any] = {"model": {}, "baseline": {}, "per_image": [], "images": count}
    states = gather((model_metrics.state(), base_metrics.state(), too_small))
    small = [entry for s in states for entry in s[2]]
    if small:
        raise UserError(
            f"{len(small)} evaluation image(s) are smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} "
            f"SSIM window after cutting crop_border={crop_border} from each edge: "
            + ", ".join(small[:5]) + (" ..." if len(small) > 5 else "")
        )
    model_all = ImageMetrics(crop_border=crop_border).merge(s[0] for s in states)
    base_all = ImageMetrics(crop_border=crop_border).merge(s[1] for s in states)
    if model_all.per_image():
        out["model"] = model_all.compute()
        out["per_image"] = model_all.per_image()
        if base_all.per_image():
            out["baseline"] = base_all.compute()
            baseline_rows = {row["name"]: row for row in base_all.per_image()}
            for row in out["per_image"]:
                base = baseline_rows.get(row["name"])
                if base is not None:
                    row["baseline"] = {k: v for k, v in base.items() if k != "name"}
    if fid is not None:
        # torchmetrics gathers the statistics of every process inside compute().
        for which in ("model", "baseline"):
            result = fid[which].compute()
            out[which].update({k: result[k] for k in ("fid", "kid", "kid_std") if k in result})
        out["images"] = {"A": count, "B": len(dataset.paths_b)}
    for which in ("model", "baseline"):
        out[which].pop("images", None)
    return out


# --------------------------------------------------------------------------- img2img eval

METRIC_ORDER = ("psnr", "ssim", "psnr_y", "ssim_y", "fid", "kid", "kid_std")


def eval_config(config, data_dir: str, lr_dir: str | None = None):
    """The model's config pointed at an evaluation folder: for paired tasks and SR the
    folder itself holds the images (SR: the HR images); for unpaired data it holds ``A/``
    and ``B/`` (or ``valA/``, ``valB/`` or ``testA/``, ``testB/``). Images are scored at
    their own size (validation during training follows ``data.preprocess`` instead, as the
    reference's test mode does)."""
    import dataclasses
    from pathlib import Path

    split = "."
    if config.task == "cyclegan":
        root = Path(data_dir)
        split = "" if (root / "A").is_dir() and (root / "B").is_dir() else "val"
    data = dataclasses.replace(
        config.data,
        root=str(data_dir),
        val_split=split,
        preprocess="none",  # whole images at their own size; the model pads them
        lr_root=lr_dir,
        max_val_images=0,
    )
    return dataclasses.replace(config, data=data)


def format_table(result: dict, per_image: bool = False) -> str:
    model, base = result["model"], result["baseline"]
    keys = [k for k in METRIC_ORDER if k in model]
    lines = []
    if per_image and result["per_image"]:
        name_width = max(len("image"), *(len(r["name"]) for r in result["per_image"]))
        head = ["image".ljust(name_width)] + [f"{k:>10}" for k in keys if k in result["per_image"][0]]
        lines.append("  ".join(head))
        for row in result["per_image"]:
            cells = [row["name"].ljust(name_width)] + [
                f"{row[k]:10.4f}" for k in keys if k in row
            ]
            lines.append("  ".join(cells))
        lines.append("")
    images = result["images"]
    count = f"{images['A']} A / {images['B']} B" if isinstance(images, dict) else str(images)
    lines.append(f"{'mean over ' + count + ' images':28}" + "".join(f"{k:>10}" for k in keys))
    lines.append(f"{'model':28}" + "".join(f"{model[k]:10.4f}" for k in keys))
    if base:
        lines.append(
            f"{'baseline (' + result['baseline_name'] + ')':28}"
            + "".join(f"{base[k]:10.4f}" if k in base else f"{'':>10}" for k in keys)
        )
    return "\n".join(lines)


BASELINE_NAMES = {
    "srgan": "bicubic",
    "colorization": "grey",
    "pix2pix": "identity",
    "cyclegan": "identity",
}


def cli_eval(args) -> int:
    import json
    from pathlib import Path

    from img2img.data import build_dataset
    from img2img.inference import find_model, resolve_device
    from img2img.model_io import load_model
    from img2img.tasks import build_task

    if args.crop_border is not None and args.crop_border < 0:
        raise UserError(f"--crop-border must be 0 or more, got {args.crop_border}")
    from img2img.outputs import writable_parent

    out = writable_parent(Path(args.out).expanduser()) if args.out else None
    device = resolve_device(args.device)
    model_dir = find_model(args.model)
    config, generators = load_model(model_dir, device=str(device))
    data_dir = Path(args.data).expanduser()
    if not data_dir.is_dir():
        raise UserError(f"--data: folder not found: {data_dir}")
    if args.lr_dir and config.task != "srgan":
        raise UserError("--lr-dir is for super-resolution models only")
    config = eval_config(config, str(data_dir), args.lr_dir)
    dataset = build_dataset(config, "val", bad_files_hint="Fix or remove them, then evaluate again.")
    if dataset is None or len(dataset) == 0:
        if config.task == "cyclegan":
            raise UserError(
                f"--data {data_dir}: an unpaired model is evaluated on a folder that holds A/ "
                "and B/ (or valA/ and valB/, or testA/ and testB/)")
        raise UserError(f"--data {data_dir}: no evaluation images found")
    feature_net = None
    if config.task == "cyclegan":
        from img2img.fid import load_fid_inception

        weights = args.fid_weights or config.eval.fid_weights
        feature_net = load_fid_inception(weights, device=device)
    crop_border = args.crop_border if args.crop_border is not None else default_crop_border(config)
    result = evaluate(
        build_task(config),
        generators,
        dataset,
        device,
        crop_border=crop_border,
        feature_net=feature_net,
        progress=True,
    )
    for row in result["per_image"]:
        path = Path(row["name"])
        if path.is_relative_to(data_dir):
            row["name"] = path.relative_to(data_dir).as_posix()
    result.update(
        model_dir=str(model_dir),
        data=str(data_dir),
        task=config.task,
        crop_border=crop_border,
        baseline_name=BASELINE_NAMES[config.task],
    )
    if out is not None:
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            tmp.write_text(json.dumps(result, indent=2))
            tmp.replace(out)
        except OSError as err:
            raise UserError(f"--out {out}: cannot write the results ({err.strerror or err})") from None
        finally:
            if tmp.exists():
                tmp.unlink()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{config.task} model {model_dir} on {data_dir} (crop_border {crop_border})")
        print(format_table(result, args.per_image))
    return 0
