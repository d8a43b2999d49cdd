"""``img2img demo [KIND]``: a small model trained on the sample data.

A demo is a recipe, ``configs/demo/<KIND>.yaml``: its task, networks and schedule, and in
``data.root`` the sample data set it trains on (``sample_data/<set>``, read from
``--data`` instead). The demo builds the sample data if it is missing, trains the recipe
on the CPU in about two minutes, evaluates the model on the held-out images beside the
task's trivial baseline, and prints where everything is. A new demo is a new recipe.
"""

from __future__ import annotations

import time
from pathlib import Path

from img2img.config import METRICS, load_config
from img2img.errors import UserError
from img2img.log import get_logger

log = get_logger(__name__)

DEMO_RECIPES = Path(__file__).resolve().parents[1] / "configs" / "demo"


def kinds() -> list[str]:
    """The demos there are: the recipes in ``configs/demo``."""
    return sorted(p.stem for p in DEMO_RECIPES.glob("*.yaml"))


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
) -> dict:
    from img2img.data.sample import build_sample_data
    from img2img.engine import Trainer

    recipe = recipe_path(kind)
    data_root = build_sample_data(Path(data))
    run_dir = Path(out) / kind
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
        f"  samples       : {run_dir / 'samples'}",
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
        for key in METRICS:
            if key in model:
                b = base.get(key)
                diff = f"  ({model[key] - b:+.4f})" if b is not None else ""
                b_txt = f"{b:.4f}" if b is not None else "n/a"
                lines.append(f"  {key:7s} model {model[key]:.4f}   baseline {b_txt}{diff}")
    elif summary.get("metrics") == "distribution":
        lines.append("  (no paired targets: this task is scored by FID/KID, which need "
                     "eval.fid_weights; see the samples)")
    lines.append(f"  predict with  : img2img predict {run_dir} IMAGE_OR_FOLDER --out predictions")
    print("\n".join(lines))


def cli_demo(args) -> int:
    summary = run_demo(args.kind, args.out, args.data, args.steps, args.overrides)
    _report(args.kind, summary)
    return 0
