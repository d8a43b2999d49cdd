"""``img2img demo [KIND]``: a small model trained on the sample data.

A demo is a recipe, ``configs/demo/<KIND>.yaml``: its task, networks and schedule, and in
``data.root`` the sample data set it trains on (``sample_data/<set>``, read from
``--data`` instead). The demo builds the sample data if it is missing, trains the recipe
on the CPU in about two minutes, evaluates the model on the held-out images beside the
task's trivial baseline, and prints where everything is. A new demo is a new recipe.

A demo may be trained by several methods: ``configs/demo/<KIND>_<NAME>.yaml`` is KIND
with another recipe (``img2img demo unpaired --method NAME``, its task's name; the plain
recipe is its own task's). ``--method a,b`` (or ``all``) trains each in turn, in its own
run directory (the recipe's name), and reports their metrics side by side.
"""

from __future__ import annotations

import time
from pathlib import Path

from img2img.config import METRICS, load_config
from img2img.config.recipes import recipe_dir
from img2img.errors import UserError
from img2img.log import get_logger

log = get_logger(__name__)

DEMO_RECIPES = recipe_dir() / "demo"  # the shipped recipes (configs/demo in a checkout)


def kinds() -> list[str]:
    """The demos there are: the recipes in ``configs/demo`` but another method's variant."""
    stems = {p.stem for p in DEMO_RECIPES.glob("*.yaml")}
    return sorted(s for s in stems if not any(s.startswith(k + "_") for k in stems - {s}))


def methods(kind: str) -> dict[str, Path]:
    """The methods demo ``kind`` can be trained by: task name -> recipe (the plain recipe
    first, then each ``<kind>_<task>.yaml``)."""
    import yaml

    recipe = recipe_path(kind)
    found = {}
    for path in [recipe, *sorted(DEMO_RECIPES.glob(f"{kind}_*.yaml"))]:
        task = (yaml.safe_load(path.read_text()) or {}).get("task")
        found.setdefault(str(task) if task else path.stem, path)
    return found


def chosen_methods(kind: str, asked: str | None) -> list[str]:
    """``--method``: one name, several separated by commas, or ``all`` (None: the plain one)."""
    known = methods(kind)
    if not asked:
        return [next(iter(known))]
    wanted = list(known) if asked.strip() == "all" else [m.strip() for m in asked.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in known]
    if unknown or not wanted:
        raise UserError(f"--method {asked}: demo {kind!r} is trained by {', '.join(known)} (or all)")
    return list(dict.fromkeys(wanted))


def recipe_path(kind: str) -> Path:
    path = DEMO_RECIPES / f"{kind}.yaml"
    if not path.is_file():
        if kinds():
            raise UserError(f"no demo {kind!r}; the demos are {', '.join(kinds())}")
        raise UserError(
            f"demo recipe {path} not found: the demo recipes ship with the source checkout "
            "(git clone, then make demo)"
        )
    return path


def _fresh_run_dir(path: Path) -> None:
    """The demo replaces its own previous run; it never deletes a folder it did not make
    (a run directory holding anything img2img did not write is refused, see
    :mod:`img2img.ownership`)."""
    from img2img import ownership

    hint = "pass another --out, or remove it yourself"
    ownership.check_replaceable(path, "run", hint)
    if path.is_dir() and any(path.iterdir()):
        log.info("replacing the previous demo run in %s", path)
        ownership.remove(path, "run", hint)


def run_demo(
    kind: str = "colorize",
    out: str | Path = "runs/demo",
    data: str | Path = "sample_data",
    steps: int | None = None,
    overrides: list[str] | None = None,
    method: str | None = None,
) -> dict:
    from img2img.data.sample import build_sample_data
    from img2img.engine import Trainer

    recipe = methods(kind)[method] if method else recipe_path(kind)
    data_root = build_sample_data(Path(data))
    run_dir = Path(out) / recipe.stem
    subset = Path(load_config(recipe).data.root).name  # sample_data/<set> in the recipe
    settings = [f"data.root={data_root / subset}", f"output_dir={run_dir}"]
    if steps is not None:
        settings.append(f"train.max_steps={steps}")
    config = load_config(recipe, settings + list(overrides or []))
    _fresh_run_dir(run_dir)
    start = time.perf_counter()
    trainer = Trainer(config)
    summary = trainer.fit()
    summary["seconds"] = time.perf_counter() - start
    summary["run_dir"] = str(run_dir)
    summary["eval"] = trainer.last_eval
    summary["metrics"] = "paired" if trainer.task.paired else "distribution"
    task = trainer.task  # its inputs beyond the image, with their choices (a domain's names)
    summary["inputs"] = {name: task.input_choices(name) for name in task.inference_inputs}
    summary["val_dir"] = str(Path(config.data.root) / config.data.val_split)
    summary["columns"] = list(task.visual_labels)
    return summary


def _report(kind: str, summary: dict) -> None:
    run_dir = Path(summary["run_dir"])
    if "stopped_at" in summary:
        print(f"\ndemo '{kind}' stopped by a signal at step {summary['stopped_at']} after "
              f"{summary['seconds']:.0f} s; its checkpoint is in {run_dir / 'checkpoints'} "
              f"(running the demo again starts it afresh)")
        return
    lines = [
        "",
        f"demo '{kind}' finished in {summary['seconds']:.0f} s ({summary['step']} steps)",
        f"  run directory : {run_dir}",
        f"  model         : {run_dir / 'model'}",
        f"  samples       : {run_dir / 'samples'}" + (
            f"  (step-NNNNNN.png, columns: {' | '.join(summary['columns'])})" if summary.get("columns") else ""),
        f"  metrics       : {run_dir / 'metrics.jsonl'}",
    ]
    wandb_dir = run_dir / "wandb"
    if wandb_dir.is_dir():
        lines.append(f"  W&B (offline) : {wandb_dir}  (upload later with: wandb sync {wandb_dir}/offline-run-*)")
    result = summary.get("eval")
    if result and result.get("model"):
        model, base = result["model"], result.get("baseline", {})
        images = result["images"]
        if isinstance(images, dict):
            images = f"{images['A']} (A), {images['B']} (B)"
        lines.append(f"  held-out images: {images}")
        width = max([7] + [len(k) for k in METRICS if k in model])
        for key in METRICS:
            if key in model:
                b = base.get(key)
                diff = f"  ({model[key] - b:+.4f})" if b is not None else ""
                b_txt = f"{b:.4f}" if b is not None else "n/a"
                lines.append(f"  {key:{width}s} model {model[key]:.4f}   baseline {b_txt}{diff}")
        lines += _group_lines(result)
    elif summary.get("metrics") == "distribution":
        lines.append(f"  (no paired targets: this task is scored by FID/KID, which need {fid_hint()}; "
                     "meanwhile see the samples)")
    lines += _predict_lines(run_dir, summary)
    print("\n".join(lines))


def _group_lines(result: dict) -> list[str]:
    """Each group's FID/KID (a multi-domain model's target domains), model vs baseline."""
    lines = []
    for group, scores in (result.get("groups") or {}).items():
        parts = [f"{key} model {scores['model'][key]:.4f} baseline {scores['baseline'][key]:.4f}"
                 for key in ("fid", "kid") if key in scores["model"] and key in scores["baseline"]]
        if parts:
            lines.append(f"    into {group:10s} " + "   ".join(parts))
    if lines:
        lines.insert(0, "  per target domain (the held-out images translated into it, against its real ones):")
    return lines


def _predict_lines(run_dir: Path, summary: dict) -> list[str]:
    """How to use the model: the predict command, with the options of the inputs it takes
    beyond the image (``--to`` for a domain, with its choices; ``--mask`` for a mask)."""
    from img2img.inference.extras import FLAGS

    inputs = summary.get("inputs") or {}
    domains = inputs.get("domain")
    flags = "".join(f" {FLAGS.get(name, '--' + name)}" for name, choices in inputs.items() if not choices)
    if not domains:
        return [f"  predict with  : img2img predict {run_dir} IMAGE_OR_FOLDER --out predictions{flags}"]
    return [f"  predict with  : img2img predict {run_dir} IMAGE_OR_FOLDER --out predictions --to {domains[-1]}",
            f"                  (--to is one of {', '.join(domains)}; --to all writes one subfolder per domain,",
            f"                  e.g. img2img predict {run_dir} {summary.get('val_dir', 'IMAGES')} "
            "--out predictions --to all)"]


def fid_hint() -> str:
    """Where FID weights come from and how the demo takes them."""
    from img2img.metrics.fid import FID_WEIGHTS_NAME, FID_WEIGHTS_URL

    return (f"the FID Inception weights: download {FID_WEIGHTS_NAME} (about 92 MB) from "
            f"{FID_WEIGHTS_URL} and add eval.fid_weights=PATH to the demo's command")


def _side_by_side(kind: str, summaries: dict[str, dict]) -> None:
    """The metrics of several methods of one demo, one row each, and the baseline's."""
    results = {m: s.get("eval") for m, s in summaries.items() if "stopped_at" not in s}
    scored = {m: r for m, r in results.items() if r and r.get("model")}
    if not scored:
        print(f"\n{', '.join(summaries)} side by side: no metrics; unpaired demos need {fid_hint()}")
        return
    keys = [k for k in METRICS if any(k in r["model"] for r in scored.values())]
    baseline = next(iter(scored.values())).get("baseline", {})
    rows = [(m, r["model"]) for m, r in scored.items()] + ([("baseline", baseline)] if baseline else [])
    print(f"\ndemo '{kind}' side by side (held-out images; " + ", ".join(
        f"{k} {'higher' if METRICS[k] else 'lower'} is better" for k in keys) + "):")
    print("  " + "method".ljust(10) + "".join(k.rjust(12) for k in keys))
    for name, values in rows:
        print("  " + name.ljust(10) + "".join(
            (f"{values[k]:.4f}" if k in values else "n/a").rjust(12) for k in keys))


def cli_demo(args) -> int:
    chosen = chosen_methods(args.kind, getattr(args, "method", None))
    summaries = {}
    for method in chosen:
        summaries[method] = run_demo(args.kind, args.out, args.data, args.steps, args.overrides, method)
        plain = method == next(iter(methods(args.kind)))
        _report(args.kind if plain else f"{args.kind} --method {method}", summaries[method])
        if "stopped_at" in summaries[method]:
            return 0
    if len(chosen) > 1:
        _side_by_side(args.kind, summaries)
    return 0
