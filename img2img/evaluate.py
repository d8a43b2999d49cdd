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
    "images": n}``. Unpaired tasks report ``fid``/``kid`` only when ``feature_net`` is given.
    """
    count = len(dataset) if not max_images else min(max_images, len(dataset))
    indices = range(rank, count, world_size)
    model_metrics = ImageMetrics(crop_border=crop_border)
    base_metrics = ImageMetrics(crop_border=crop_border)
    fid = None
    if feature_net is not None:
        from img2img.metrics import FidKid

        fid = {"model": FidKid(feature_net), "baseline": FidKid(feature_net)}
    was_training = {name: net.training for name, net in G.items()}
    for net in G.values():
        net.eval()
    iterator = indices
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(indices, desc="eval", leave=False, dynamic_ncols=True)
    try:
        for i in iterator:
            sample = dataset[i]
            batch = task.prepare(_collate_one(sample), device)
            result = task.evaluate_batch(G, batch)
            name = str(sample.get("B_path", sample.get("A_path", i)))
            if "pred" in result:
                model_metrics.update(result["pred"], result["target"], names=[name])
                if "baseline" in result:
                    base_metrics.update(result["baseline"], result["target"], names=[name])
            if fid is not None and "fake" in result:
                fid["model"].update(real=result["real"], fake=result["fake"])
                fid["baseline"].update(real=result["real"], fake=result["baseline"])
    finally:
        for name, net in G.items():
            net.train(was_training[name])

    out: dict[str, Any] = {"model": {}, "baseline": {}, "per_image": [], "images": count}
    states = gather((model_metrics.state(), base_metrics.state()))
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
    for which in ("model", "baseline"):
        out[which].pop("images", None)
    return out
