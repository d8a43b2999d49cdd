"""What a run reports: ``metrics.jsonl``, the trackers (W&B, TensorBoard) and the W&B run
id, sample grids, the progress bar, and the collapse guard's signal
(:mod:`img2img.engine.collapse`).

Files and trackers are written by the main process only. The loss terms are summed here
between two log lines and averaged over every process when logged, so
:meth:`Tracking.log_scalars` is a collective: every process calls it at the same steps.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from pathlib import Path
from typing import Any

import torch

from img2img.config import Config
from img2img.engine.setup import flat_config
from img2img.files import write_text_atomic
from img2img.log import get_logger

log = get_logger(__name__)


class Tracking:
    """The reporting of one run, for the training loop to feed."""

    def __init__(self, config: Config, output_dir: Path, accelerator, task=None) -> None:
        from img2img.engine.collapse import CollapseGuard

        self.config = config
        self.output_dir = output_dir
        self.accelerator = accelerator
        self.is_main = accelerator.is_main_process
        #: Loss terms summed over the optimizer steps since the last log line (per process).
        self.losses: dict[str, torch.Tensor] = {}
        #: Optimizer steps since the last log line.
        self.steps = 0
        #: The learning rates the last step used.
        self.lr: dict[str, float] = {}
        #: The last micro-batch that trained and the task's outputs for it: the sample grid.
        self.sample: tuple[Any, Any] | None = None
        self.warned: set[str] = set()
        #: Sample grids this process was asked for (a short run still ends with one).
        self.grids = 0
        self._last_log_time = time.perf_counter()
        #: The collapse guard, when the task watches its outputs and the threshold is not 0.
        self.guard: CollapseGuard | None = None
        if task is not None and guarded(task) and config.log.collapse_threshold > 0:
            warmup = config.log.collapse_warmup
            warmup = min(1000, config.train.max_steps // 4) if warmup is None else warmup
            self.guard = CollapseGuard(task.collapse_pairs, config.log.collapse_threshold, warmup,
                                       task.collapse_hint)

    # ------------------------------------------------------------------ set-up
    def start(self, step: int, resumed: bool) -> None:
        """Trim ``metrics.jsonl`` to ``step`` and start the trackers (every process)."""
        if self.is_main:
            self._trim_metrics_log(step)
        self._init_trackers(resumed)

    def _trim_metrics_log(self, step: int) -> None:
        """Drop log lines past the step this run starts from: after a resume, what a killed
        run wrote past its checkpoint; for a fresh run, everything a run killed before its
        first checkpoint wrote (and a last line it left half-written)."""
        path = self.output_dir / "metrics.jsonl"
        if not path.exists():
            return

        def step_of(line: str) -> float:
            try:
                return json.loads(line).get("step", 0)
            except ValueError:
                return math.inf

        kept = [line for line in path.read_text().splitlines() if line.strip() and step_of(line) <= step]
        write_text_atomic(path, "".join(line + "\n" for line in kept))

    def _init_trackers(self, resumed: bool) -> None:
        c = self.config
        if c.log.wandb == "off" and not c.log.tensorboard:
            return
        init_kwargs = {}
        if c.log.wandb != "off":
            init_kwargs["wandb"] = {
                "dir": str(self.output_dir),
                "name": c.log.run_name or self.output_dir.name,
                "mode": c.log.wandb,
                "id": self._wandb_run_id(resumed),
                "resume": "allow",
                **quiet_wandb(),
            }
        self.accelerator.init_trackers(c.log.project, config=flat_config(c), init_kwargs=init_kwargs)
        if c.log.wandb != "off" and self.is_main:
            wandb_dir = self.output_dir / "wandb"
            how = (f"upload later with: wandb sync {wandb_dir}/offline-run-*" if c.log.wandb == "offline"
                   else "W&B's own lines are off; WANDB_SILENT=false shows them")
            log.info("W&B (%s): the run is logged in %s (%s)", c.log.wandb, wandb_dir, how)

    def _wandb_run_id(self, resumed: bool) -> str:
        """One W&B run id per run directory (kept in ``wandb_run_id``): a resumed run logs
        into the same W&B run (offline runs are merged by ``wandb sync``); a fresh run in
        the directory gets a new one."""
        path = self.output_dir / "wandb_run_id"
        if resumed and path.is_file():
            return path.read_text().strip()
        run_id = secrets.token_hex(4)
        if self.is_main:
            path.write_text(run_id + "\n")
        return run_id

    def progress(self, step: int):
        """The progress bar (main process, when ``log.progress``), starting at ``step``."""
        from tqdm.auto import tqdm

        return tqdm(
            total=self.config.train.max_steps,
            initial=step,
            disable=not (self.is_main and self.config.log.progress),
            dynamic_ncols=True,
            unit="step",
            desc=self.config.task,
        )

    def warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning(message)

    # ------------------------------------------------------------------ each step
    def add_losses(self, names: list[str], values: torch.Tensor) -> None:
        """Add one phase's loss terms (detached, on the device: no host sync here)."""
        for name, value in zip(names, values):
            self.losses[name] = self.losses.get(name, 0) + value

    def observe(self, batch, out) -> None:
        """Feed the collapse guard one trained micro-batch and the task's outputs for it."""
        if self.guard is not None:
            self.guard.observe(batch, out)

    def end_step(self, lr: dict[str, float]) -> None:
        """One optimizer step is done; ``lr`` holds the learning rates it used."""
        self.steps += 1
        self.lr = lr

    def log_scalars(self, step: int, extra: dict[str, float], progress) -> None:
        """The mean loss terms since the last log line over every process, the speed, the
        learning rates and ``extra``; then start summing afresh (a collective)."""
        c = self.config
        names = sorted(self.losses)
        scalars: dict[str, float] = {}
        if names:
            device = self.accelerator.device
            values = torch.stack([torch.as_tensor(self.losses[n], device=device).float() for n in names])
            micro_batches = max(self.steps * c.train.grad_accum, 1)
            values = self.accelerator.reduce(values, reduction="mean") / micro_batches
            scalars = {f"loss/{n}": float(v) for n, v in zip(names, values.tolist())}
        scalars.update(self._collapse(step))
        now = time.perf_counter()
        images = self.steps * c.train.batch_size * c.train.grad_accum * self.accelerator.num_processes
        images *= c.train.d_steps_per_g_step
        scalars["images_per_s"] = images / max(now - self._last_log_time, 1e-9)
        scalars.update(self.lr)
        scalars.update(extra)
        self.losses, self.steps, self._last_log_time = {}, 0, now
        self.record(step, scalars)
        progress.set_postfix(
            {k.split("/")[-1]: f"{v:.3g}" for k, v in scalars.items() if k.startswith("loss/")}
            | {"img/s": f"{scalars['images_per_s']:.1f}"},
            refresh=False,
        )

    def _collapse(self, step: int) -> dict[str, float]:
        """The collapse guard's ratios over every process, and its one warning (a collective)."""
        ratios = self.guard.ratios() if self.guard is not None else {}
        if not ratios:
            return {}
        values = self.accelerator.reduce(torch.stack(list(ratios.values())), reduction="mean")
        logged = dict(zip(ratios, values.tolist()))
        warning = self.guard.check(step, logged)
        if warning and self.is_main:
            log.warning(warning)
        return logged

    def record(self, step: int, scalars: dict[str, float]) -> None:
        """Log scalars to the trackers and append them to metrics.jsonl (main process)."""
        if not self.is_main:
            return
        self.accelerator.log(scalars, step=step)
        line = json.dumps({"step": step, **scalars})
        with open(self.output_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def log_samples(self, step: int, task) -> None:
        """Write the grid of the task's visuals of the last micro-batch (up to four rows)
        to ``samples/step-NNNNNN.png`` and to the trackers (main process)."""
        self.grids += 1
        if not self.is_main or self.sample is None:
            return
        from torchvision.utils import make_grid

        from img2img.data import write_image

        columns = [col.detach().float().clamp(-1, 1)[:4] for col in task.visuals(*self.sample)]
        n = columns[0].shape[0]
        rows = [torch.cat([col[i:i + 1].cpu() for col in columns], dim=0) for i in range(n)]
        grid = make_grid(torch.cat(rows), nrow=len(columns), padding=2, value_range=(-1, 1), normalize=True)
        image = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        if len(task.visual_labels) == len(columns):
            image = with_column_labels(image, task.visual_labels, columns[0].shape[-1] + 2)
        write_image(self.output_dir / "samples" / f"step-{step:06d}.png", image)
        for tracker in self.accelerator.trackers:
            if tracker.name == "wandb":
                tracker.log_images({"samples": [image]}, step=step)
            elif tracker.name == "tensorboard":
                tracker.log_images({"samples": image[None]}, step=step, dataformats="NHWC")


def quiet_wandb() -> dict[str, Any]:
    """W&B's ``init`` settings that keep its banner and end-of-run summary (about 30
    lines) off the terminal, unless the user asks for them (``WANDB_SILENT=false``, or
    ``img2img -v``); the run's data is logged all the same."""
    import logging
    import os

    asked = os.environ.get("WANDB_SILENT", "").strip().lower() in ("false", "0", "no")
    if asked or logging.getLogger("img2img").isEnabledFor(logging.DEBUG):
        return {}
    import wandb

    return {"settings": wandb.Settings(silent=True)}


def guarded(task) -> bool:
    """Whether ``task`` has its outputs watched for collapse (by default: when unpaired)."""
    return task.collapse_guard if task.collapse_guard is not None else not task.paired


#: Height of the title band above a sample grid, in pixels.
LABEL_BAND = 14


def with_column_labels(image, labels, cell_width: int):
    """A uint8 HxWx3 grid with a band on top naming each column (Pillow's built-in font,
    cut to fit the column)."""
    import numpy as np
    from PIL import Image, ImageDraw

    band = Image.new("RGB", (image.shape[1], LABEL_BAND))
    draw = ImageDraw.Draw(band)
    for i, label in enumerate(labels):
        text = str(label)
        while text and draw.textlength(text) > cell_width - 4:
            text = text[:-1]
        draw.text((2 + i * cell_width + 2, 2), text, fill=(255, 255, 255))
    return np.concatenate([np.asarray(band), image], axis=0)

