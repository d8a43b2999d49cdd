"""Evaluation shared by training (every ``eval.every`` steps) and ``img2img eval``.

The task says what one evaluation sample is (:meth:`~img2img.tasks.base.Task.eval_batch`)
and turns it into ``pred``/``target``/``baseline`` (paired tasks: PSNR/SSIM on RGB and on
Y) or ``fake``/``baseline`` (unpaired tasks: FID/KID against the task's reference images,
:meth:`~img2img.tasks.base.Task.eval_references`, when a feature network is given). The
baseline is the trivial answer a model must beat, as the task defines it (its
:attr:`~img2img.tasks.base.Task.baseline` names it).

Work is sharded: process ``r`` of ``W`` takes images ``r, r + W, ...``; per-image results
(and FID features) are gathered so every process computes the same means, exactly the
ones a single process computes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from img2img.config import METRICS
from img2img.errors import UserError
from img2img.log import get_logger
from img2img.metrics import SSIM_WINDOW, FidKid, ImageMetrics

log = get_logger(__name__)

Gather = Callable[[Any], list[Any]]


def _single(obj: Any) -> list[Any]:
    return [obj]


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)


class _PairedScores:
    """PSNR/SSIM (and LPIPS when ``lpips_net`` is given) of the model's predictions and of
    the baseline against the targets. LPIPS sees whole images at uint8 levels (as BasicSR's
    ``calculate_lpips.py`` scores saved images; no ``crop_border``)."""

    def __init__(self, crop_border: int, lpips_net: torch.nn.Module | None = None) -> None:
        self.crop_border = crop_border
        self.model = ImageMetrics(crop_border=crop_border)
        self.baseline = ImageMetrics(crop_border=crop_border)
        self.too_small: list[str] = []
        self.lpips_net = lpips_net
        self.lpips: dict[str, dict[str, float]] = {"model": {}, "baseline": {}}
        #: Per-image scores the task computed itself (``result["scores"]``), by image name.
        self.extra: dict[str, dict[str, dict[str, float]]] = {"model": {}, "baseline": {}}

    def _lpips(self, result: dict[str, torch.Tensor], name: str) -> None:
        for which, key in (("model", "pred"), ("baseline", "baseline")):
            if key in result:
                pred = (result[key].float() * 255).round() / 255
                self.lpips[which][name] = float(self.lpips_net(pred, result["target"].float())[0])

    def update(self, result: dict[str, torch.Tensor], name: str) -> None:
        h, w = result["target"].shape[-2:]
        if min(h, w) - 2 * self.crop_border < SSIM_WINDOW:
            self.too_small.append(f"{name} ({w}x{h})")
            return
        # float64 metrics: the numbers equal the numpy reference path to 1e-6
        target = result["target"].double()
        self.model.update(result["pred"].double(), target, names=[name])
        if "baseline" in result:
            self.baseline.update(result["baseline"].double(), target, names=[name])
        if self.lpips_net is not None:
            self._lpips(result, name)
        for which, scores in result.get("scores", {}).items():
            self.extra[which][name] = dict(scores)

    def result(self, gather: Gather) -> dict[str, Any]:
        """Means over every process's images (each process gets the same numbers)."""
        states = gather((self.model.state(), self.baseline.state(), self.too_small, self.lpips, self.extra))
        small = [entry for s in states for entry in s[2]]
        if small:
            raise UserError(
                f"{len(small)} evaluation image(s) are smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} "
                f"SSIM window after cutting crop_border={self.crop_border} from each edge: "
                + ", ".join(small[:5]) + (" ..." if len(small) > 5 else "")
            )
        out: dict[str, Any] = {"model": {}, "baseline": {}, "per_image": []}
        model_all = ImageMetrics(crop_border=self.crop_border).merge(s[0] for s in states)
        base_all = ImageMetrics(crop_border=self.crop_border).merge(s[1] for s in states)
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
        for which in ("model", "baseline"):
            out[which].pop("images", None)
        if self.lpips_net is not None:
            _add_lpips(out, [s[3] for s in states])
        _add_task_scores(out, [s[4] for s in states])
        return out


def _add_lpips(out: dict[str, Any], gathered: list[dict[str, dict[str, float]]]) -> None:
    """Every process's per-image LPIPS (an image counted once) into the means and rows."""
    for which in ("model", "baseline"):
        values = {name: v for part in gathered for name, v in part[which].items()}
        if values and out[which]:
            out[which]["lpips"] = math.fsum(values.values()) / len(values)
        for row in out["per_image"]:
            if row["name"] in values:
                (row if which == "model" else row.setdefault("baseline", {}))["lpips"] = values[row["name"]]


def _add_task_scores(out: dict[str, Any], gathered: list[dict[str, dict[str, dict[str, float]]]]) -> None:
    """Every process's per-image task scores (``result["scores"]``: an image counted once)
    into the means (each over the images that have it) and the per-image rows."""
    for which in ("model", "baseline"):
        rows = {name: scores for part in gathered for name, scores in part[which].items()}
        keys = list(dict.fromkeys(k for scores in rows.values() for k in scores))
        for key in keys:
            values = [scores[key] for scores in rows.values() if key in scores]
            if out[which] or which == "model":
                out[which][key] = math.fsum(values) / len(values)
        for row in out["per_image"]:
            if row["name"] in rows:
                (row if which == "model" else row.setdefault("baseline", {})).update(rows[row["name"]])


class _DistributionScores:
    """FID/KID of the model's outputs and of the baseline against the task's reference
    images."""

    def __init__(self, feature_net: torch.nn.Module) -> None:
        self.model = FidKid(feature_net)
        self.baseline = FidKid(feature_net)
        self.references = 0

    def update(self, result: dict[str, torch.Tensor], index: int) -> None:
        """Add sample ``index``'s output and baseline rows (the index orders the Inception Score's
        splits; every row of the sample gets it)."""
        self.model.update(fake=result["fake"], order=torch.full((len(result["fake"]),), index))
        self.baseline.update(fake=result["baseline"], order=torch.full((len(result["baseline"]),), index))

    def add_references(self, task, dataset, device, rank: int, world_size: int, progress: bool) -> None:
        """Feed the task's reference images (each once, sharded; its features computed
        once) to both metrics."""
        count, image = task.eval_references(dataset)
        for j in _progress(range(rank, count, world_size), progress, "eval references"):
            real = ((image(j)[None].to(device) + 1) / 2).clamp_(0, 1)
            features = self.model.features(real)
            self.model.update_real_features(features)
            self.baseline.update_real_features(features)
        self.references = count

    def result(self, out: dict[str, Any]) -> None:
        """Add fid/kid/kid_std (and is/is_std, the Inception Score of the outputs) to
        ``out["model"]`` and ``out["baseline"]``; torchmetrics gathers the statistics of
        every process inside ``compute()``."""
        for which, metric in (("model", self.model), ("baseline", self.baseline)):
            result = metric.compute()
            out[which].update({k: result[k] for k in ("fid", "kid", "kid_std", "is", "is_std") if k in result})


@contextmanager
def _eval_mode(G: dict[str, torch.nn.Module]):
    """The generators in eval mode inside the block, each back in its own mode after."""
    was_training = {name: net.training for name, net in G.items()}
    for net in G.values():
        net.eval()
    try:
        yield
    finally:
        for name, net in G.items():
            net.train(was_training[name])


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
    lpips_net: torch.nn.Module | None = None,
    keep: Callable[[str, dict[str, torch.Tensor]], None] | None = None,
) -> dict[str, Any]:
    """Evaluate generators ``G`` (in eval mode) on ``dataset`` (whole images, one at a time).

    Returns ``{"model": {metric: mean}, "baseline": {metric: mean}, "per_image": [...],
    "images": n}``. A paired task reports PSNR/SSIM; an unpaired one ``fid``/``kid``
    (only when ``feature_net`` is given; with the FID Inception also ``is``/``is_std``) between its outputs and its reference images,
    and a paired one ``lpips`` too when ``lpips_net`` (:mod:`img2img.metrics.lpips`) is given,
    each used once (``images`` is then ``{"A": inputs, "B": references}``). An image too
    small for SSIM after ``crop_border`` is a UserError on every process. ``keep(name,
    images)``, when given, sees each sample's result and its input (``input``: the task's
    :meth:`~img2img.tasks.base.Task.eval_input`), as the evaluation report keeps them.
    """
    count = task.eval_count(dataset)
    count = min(max_images, count) if max_images else count
    paired = _PairedScores(crop_border, lpips_net)
    distribution = None
    if feature_net is not None and task.eval_references(dataset) is not None:
        groups = task.eval_reference_groups(dataset)  # per-group FID/KID (a multi-domain model's targets)
        if groups is None:
            distribution = _DistributionScores(feature_net)
        else:
            from img2img.evaluate_groups import GroupedScores

            distribution = GroupedScores(feature_net, groups, gather)
    with _eval_mode(G):
        for i in _progress(range(rank, count, world_size), progress, "eval"):
            batch, name = task.eval_batch(dataset, i, device)
            result = task.evaluate_batch(G, batch)
            if keep is not None:
                keep(name, {**result, "input": task.eval_input(batch)})
            if "target" in result:
                paired.update(result, name)
            if distribution is not None and "fake" in result:
                distribution.update(result, i)
        if distribution is not None:
            distribution.add_references(task, dataset, device, rank, world_size, progress)
    out = paired.result(gather)
    out["images"] = count
    if distribution is not None:
        distribution.result(out)
        out["images"] = {"A": count, "B": distribution.references}
    return out


# --------------------------------------------------------------------------- img2img eval

METRIC_ORDER = (*METRICS, "kid_std", "is_std")


def format_table(result: dict, per_image: bool = False) -> str:
    """The text table of ``img2img eval``: the means of the model and the baseline (and,
    with ``per_image``, a row per image first)."""
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
    return "\n".join(lines + _group_rows(result))


def _group_rows(result: dict) -> list[str]:
    """One row per group of ``result["groups"]`` (a multi-domain model's target domains):
    each metric of the model beside the baseline's."""
    groups = result.get("groups") or {}
    keys = [k for k in METRIC_ORDER if any(k in g["model"] for g in groups.values())]
    if not keys:
        return []
    width = max(28, *(len(g) + 2 for g in groups))
    lines = ["", f"{'per target domain':{width}}" + "".join(f"{k:>10}{k + ' (base)':>16}" for k in keys)]
    for group, scores in groups.items():
        model, base = scores["model"], scores.get("baseline", {})
        lines.append(f"{group:{width}}" + "".join(
            (f"{model[k]:10.4f}" if k in model else f"{'':>10}") + (f"{base[k]:16.4f}" if k in base else f"{'':>16}")
            for k in keys))
    lines.append(f"(base): the baseline ({result.get('baseline_name', 'baseline')}) against the same domain's images")
    return lines


def _write_json(out: Path, result: dict) -> None:
    from img2img.files import write_text_atomic

    try:
        write_text_atomic(out, json.dumps(result, indent=2))
    except OSError as err:
        raise UserError(f"--out {out}: cannot write the results ({err.strerror or err})") from None


def _lpips_net(args, config, task, device) -> torch.nn.Module | None:
    """The LPIPS metric ``--lpips`` (else ``eval.lpips``) asks for, with its files."""
    kind = args.lpips or config.eval.lpips
    if kind == "off" or (not task.paired and not args.lpips):
        return None
    if not task.paired:
        raise UserError(f"--lpips: LPIPS compares predictions with targets; a {config.task} model "
                        "is evaluated with FID/KID")
    from img2img.metrics.lpips import load_lpips

    return load_lpips(kind, args.lpips_weights or config.eval.lpips_weights,
                      args.lpips_backbone or config.eval.lpips_backbone, device)


def cli_eval(args) -> int:
    from img2img.inference import find_model, resolve_device
    from img2img.model_io import load_model
    from img2img.outputs import writable_parent
    from img2img.tasks import build_task

    if args.crop_border is not None and args.crop_border < 0:
        raise UserError(f"--crop-border must be 0 or more, got {args.crop_border}")
    device = resolve_device(args.device)
    model_dir = find_model(args.model)
    config, generators = load_model(model_dir, device=str(device))
    data_dir = Path(args.data).expanduser()
    if not data_dir.is_dir():
        raise UserError(f"--data: folder not found: {data_dir}")
    task = build_task(build_task(config).eval_data(str(data_dir), args.lr_dir))
    dataset = task.build_dataset("val", bad_files_hint="Fix or remove them, then evaluate again.")
    if dataset is None or len(dataset) == 0:
        raise UserError(task.missing_eval_data(str(data_dir)))
    feature_net = None
    if not task.paired:
        from img2img.metrics import load_fid_inception

        feature_net = load_fid_inception(args.fid_weights or config.eval.fid_weights, device=device)
    crop_border = args.crop_border if args.crop_border is not None else task.crop_border()
    # the output folders are made once the model and the data are known good (a typo in
    # either leaves nothing behind), and before the evaluation's long work
    out = writable_parent(args.out) if args.out else None
    report = writable_parent(args.report, "--report") if getattr(args, "report", None) else None
    from img2img.report import ReportImages, write_eval_report

    images = ReportImages() if report is not None else None
    result = evaluate(task, generators, dataset, device, crop_border=crop_border,
                      feature_net=feature_net, progress=True, lpips_net=_lpips_net(args, config, task, device),
                      keep=images.add if images is not None else None)
    for row in result["per_image"]:
        path = Path(row["name"])
        if path.is_relative_to(data_dir):
            row["name"] = path.relative_to(data_dir).as_posix()
    result.update(model_dir=str(model_dir), data=str(data_dir), task=config.task,
                  crop_border=crop_border, baseline_name=task.baseline)
    if out is not None:
        _write_json(out, result)
    if report is not None:
        write_eval_report(report, result, images, task, data_dir)
        log.info("wrote the report %s (open it in a browser)", report)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{config.task} model {model_dir} on {data_dir} (crop_border {crop_border})")
        print(format_table(result, args.per_image))
    return 0
