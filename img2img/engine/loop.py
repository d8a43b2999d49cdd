"""The training loop: :class:`Trainer` builds a run (see :mod:`img2img.engine.setup`) and
:meth:`Trainer.fit` runs it; one step, its G and D phases, the optimizer step and what
happens to a non-finite loss are here.

One *step* is one optimizer update of G (and of D) over ``train.grad_accum`` micro-batches
of ``train.batch_size`` images on each process; with ``train.d_steps_per_g_step`` = k > 1
it is k updates of D, each on its own ``grad_accum`` micro-batches, the last of them
followed by the update of G on the same data (WGAN-GP's and StarGAN's n_critic). Every
count in steps (``max_steps``, schedules, ``save_every``, ``eval.every``, ``log.every``)
counts these G updates.

Run directory (``output_dir``)::

    config.yaml                 the resolved config
    metrics.jsonl               one JSON object per log / evaluation event
    samples/step-NNNNNN.png     sample grids (input | output | target)
    checkpoints/step-NNNNNN/    see :mod:`img2img.engine.checkpoint` (written atomically)
    model/                      the exported generator(s) at the end (config.json + safetensors)
    model_best/                 the generator(s) of the best evaluation so far
    wandb/, tensorboard/        tracker files
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from img2img import ownership
from img2img.config import Config, save_config
from img2img.engine.checkpoint import Checkpoints, init_from, list_checkpoints, resolve_resume
from img2img.engine.networks import set_requires_grad
from img2img.engine.setup import (
    build_data,
    build_extra_networks,
    build_pools,
    build_training,
    check_config,
    check_training_size,
    load_feature_net,
    load_lpips_net,
    make_accelerator,
    seed_everything,
)
from img2img.engine.signals import StopSignal, set_leaving
from img2img.engine.tracking import Tracking
from img2img.errors import NonFiniteLossError, UserError
from img2img.log import get_logger

log = get_logger(__name__)


def cli_train(args) -> int:
    Trainer(args.cfg, resume=args.resume).fit()
    return 0


class Trainer:
    """One training run of ``config`` (resumed from a checkpoint with ``resume``: a folder,
    or ``auto`` for the newest of ``output_dir``)."""

    def __init__(self, config: Config, resume: str | None = None) -> None:
        from img2img.tasks import build_task

        self.output_dir = Path(config.output_dir)
        self.task = build_task(config)  # the task checks its own settings first
        # What the task resolved at the start (a multi-domain task's domains, found in the
        # data) is part of the run's config: saved with it, and with the model.
        self.config = config = self.task.config
        check_config(config, self.output_dir)
        # Resolved first: model.init_from applies only when no checkpoint is resumed.
        self.resume_from = resolve_resume(resume, self.output_dir)
        if resume == "auto" and self.resume_from is None:
            log.info("--resume auto: no checkpoint in %s, starting fresh", self.output_dir)
        self.accelerator = make_accelerator(config, self.output_dir)
        self.device = self.accelerator.device
        self.rank = self.accelerator.process_index
        self.world_size = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process

        # Identical initial weights on every process; then per-process randomness (dropout).
        seed_everything(config.seed)
        G, D = self.task.build_generators(), self.task.build_discriminators()
        check_training_size(config, self.task, G, D)
        if config.model.init_from and self.resume_from is None:
            init_from(config.model.init_from, config, G)
        seed_everything((config.seed + 7919 * self.rank) % 2**64)

        # Every process checks the data at once: a bad file stops them all alike, each
        # with the same error (one process first, the others at a barrier, would leave
        # those waiting on a process that is gone).
        self.data = build_data(self.task, config, self.rank, self.world_size, self.device)
        self.task.setup_losses(self.device)
        self.feature_net = load_feature_net(config, self.task, self.device)
        self.lpips_net = load_lpips_net(config, self.task, self.device)
        extra = build_extra_networks(self.task, config, G, self.data.train_set)
        self.nets, self.optim = build_training(self.accelerator, config, G, D, extra)
        self.pools = build_pools(config, self.task, D, self.rank)
        self.tracking = Tracking(config, self.output_dir, self.accelerator, self.task)
        self.checkpoints = Checkpoints(self.output_dir, config.train.keep_last)
        self.stop = StopSignal()

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best: dict[str, Any] = {"metric": config.eval.metric, "value": None, "step": None}
        self.nonfinite_skipped = 0
        self.last_eval: dict[str, Any] | None = None

    # ------------------------------------------------------------------ the run
    def fit(self) -> dict[str, Any]:
        """Train to ``train.max_steps`` (or to a stop signal), evaluate, save and export."""
        self._start()
        summary: dict[str, Any] = {}
        # The signal handlers stay on to the end: a signal during the final evaluation,
        # save or export lets them finish (a second one stops at once).
        with self.stop.catching():
            self._run(summary)
            if "stopped_at" not in summary:
                self._finish(summary)
            set_leaving()  # the data workers are done: a signal now just ends them
        summary.update(step=self.step, best=self.best, nonfinite_skipped=self.nonfinite_skipped)
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()
        return summary

    def _start(self) -> None:
        c = self.config
        if self.resume_from is not None:
            self.checkpoints.load(self, self.resume_from)
        elif list_checkpoints(self.output_dir):
            raise UserError(
                f"{self.output_dir} already holds checkpoints of a run; continue it with "
                f"--resume auto, or choose another output_dir"
            )
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            ownership.mark(self.output_dir, "run", ownership.RUN_ENTRIES, ownership.RUN_PATTERNS)
            save_config(c, self.output_dir / "config.yaml")
        self.tracking.start(self.step, resumed=self.resume_from is not None)
        log.info(
            "training %s: %d steps%s, batch %d x %d process(es) x %d accumulation, %d images, device %s%s",
            c.task, c.train.max_steps,
            f" of {c.train.d_steps_per_g_step} D updates and 1 G update" if c.train.d_steps_per_g_step > 1 else "",
            c.train.batch_size, self.world_size, c.train.grad_accum,
            len(self.data.train_set), self.device, f", {c.mixed_precision}" if c.mixed_precision != "no" else "",
        )

    def _run(self, summary: dict[str, Any]) -> None:
        batches = self.batches()
        progress = self.tracking.progress(self.step)
        while self.step < self.config.train.max_steps:
            try:
                self.train_step(batches)
            except UserError as err:  # a bad file in this process's share, a NaN loss
                err.rank_specific = True  # only this process may know: it reports it
                raise
            self.step += 1
            progress.update(1)
            self._after_step(progress)
            if self.stop.agreed(self.accelerator):
                log.info("signal %s: saving a checkpoint at step %d and stopping", self.stop.signum, self.step)
                self.checkpoints.save(self)
                summary["stopped_at"] = self.step
                break
        progress.close()

    def _finish(self, summary: dict[str, Any]) -> None:
        c = self.config
        try:
            if self.data.val_set is not None and (not c.eval.every or self.step % c.eval.every):
                self.evaluate()
        finally:  # a failing final evaluation must not lose the trained weights
            if self.checkpoints.saved_step != self.step:
                self.checkpoints.save(self)
            self.export(self.output_dir / "model")
        summary["model"] = str(self.output_dir / "model")

    def _after_step(self, progress) -> None:
        c = self.config
        if self.step % c.log.every == 0 or self.step == c.train.max_steps:
            self.tracking.log_scalars(self.step, self._position(), progress)
        last = self.step == c.train.max_steps and not self.tracking.grids  # a short run's one grid
        if c.log.images_every and (self.step % c.log.images_every == 0 or last):
            self.tracking.log_samples(self.step, self.task)
        if c.eval.every and self.step % c.eval.every == 0 and self.data.val_set is not None:
            self.evaluate()
        if self.step % c.train.save_every == 0 and self.step < c.train.max_steps:
            self.checkpoints.save(self)

    def _position(self) -> dict[str, float]:
        """Where the run is in the data, and how many steps it skipped (for the log)."""
        position = {"epoch": self.epoch + self.batch_in_epoch / max(self.data.sampler.batches_per_epoch, 1)}
        if self.nonfinite_skipped:
            position["nonfinite_skipped"] = self.nonfinite_skipped
        return position

    def batches(self):
        """Micro-batches forever, epoch after epoch, starting where a resumed run left off."""
        while True:
            self.data.sampler.set_epoch(self.epoch, start_batch=self.batch_in_epoch)
            for batch in self.data.loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    # ------------------------------------------------------------------ one step
    def train_step(self, batches) -> None:
        """One step: ``train.d_steps_per_g_step`` discriminator updates, the generator's
        with the last (in the task's order), each over ``train.grad_accum`` micro-batches
        of ``batches``. A non-finite loss skips the rest of the step (its data still consumed)."""
        acc = self.accelerator
        models = [*self.nets.train_G.values(), *self.nets.train_D.values()]
        skipped = False
        critic_only = self.config.train.d_steps_per_g_step - 1
        for update in range(critic_only + 1):
            for _ in range(self.config.train.grad_accum):
                raw = next(batches)  # a skipped step still consumes its data, as a run without it
                with acc.accumulate(*models):  # keeps Accelerate's accumulation count aligned
                    if skipped:
                        continue
                    batch = self.task.prepare(raw, self.device, self.config.train.channels_last)
                    done = self._micro_step(batch) if update == critic_only else self._critic_step(batch)
                    skipped = not done
        # The learning rates this step used (logged), before the schedules move on.
        self.tracking.end_step(self.optim.learning_rates())
        self.optim.step_schedules()
        if not skipped:
            self.nets.update_ema()

    def _micro_step(self, batch) -> bool:
        """G forward once, then the D and G phases in the task's order; False when a
        non-finite loss made the step skip."""
        with self.accelerator.autocast():
            out = self.task.forward(self.nets.train_G, batch)
        phases = [self._g_phase]
        if self.nets.D:
            phases.insert(0 if self.task.d_first else 1, self._d_phase)
        for phase in phases:
            if not phase(batch, out):
                return False
        self.tracking.sample = (batch, out)
        self.tracking.observe(batch, out)
        return True

    def _critic_step(self, batch) -> bool:
        """A discriminator-only update on one micro-batch (G runs without gradient)."""
        with torch.no_grad(), self.accelerator.autocast():
            out = self.task.critic_forward(self.nets.train_G, batch)
        return self._d_phase(batch, out)

    def _g_phase(self, batch, out) -> bool:
        set_requires_grad(self.nets.side("D"), False)
        with self.accelerator.autocast():
            terms = self.task.generator_loss(self.nets.frozen_D, batch, out)
        return self._optimize(terms, "G")

    def _d_phase(self, batch, out) -> bool:
        set_requires_grad(self.nets.side("D"), True)
        with self.accelerator.autocast():
            terms = self.task.discriminator_loss(self.nets.train_D, batch, out, self._pool)
        return self._optimize(terms, "D")

    def _pool(self, name: str, images: torch.Tensor) -> torch.Tensor:
        return self.pools[name].query(images) if name in self.pools else images

    def _optimize(self, terms: dict[str, torch.Tensor], side: str) -> bool:
        """Backward and step one side ("G" or "D"); False when the step was skipped (a
        non-finite loss)."""
        acc = self.accelerator
        if not terms:
            return True
        names = list(terms)
        values = torch.stack([terms[n].float() for n in names])
        finite = torch.isfinite(values)
        # The backward is queued before the host reads the flags: the phase's one host sync
        # then waits on work already launched (on a GPU the backward runs meanwhile)
        # instead of draining the queue before the backward is even issued. A non-finite
        # loss still stops the run, or skips the step, before the optimizer steps; the
        # gradients it made are thrown away.
        acc.backward(values.sum())
        if self.world_size > 1:
            finite = acc.reduce((~finite).float(), reduction="sum") == 0
        if not bool(finite.all()):
            bad = names[int((~finite).nonzero()[0])]
            for net in self.nets.trained().values():
                net.zero_grad(set_to_none=True)
            self._nonfinite(bad, float(values[names.index(bad)].detach()))
            return False
        optimizer = self.optim.wrapped[side]
        if acc.sync_gradients and self.config.train.max_grad_norm > 0:
            # Unscale this side's gradients only: Accelerate's clip_grad_norm_ unscales
            # every optimizer, which would corrupt the other side's accumulating fp16 grads.
            acc.unscale_gradients(optimizer)
            params = [p for net in self.nets.side(side).values() for p in net.parameters()]
            torch.nn.utils.clip_grad_norm_(params, self.config.train.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        values = values.detach()
        if side == "D" and self.config.train.d_steps_per_g_step > 1:  # logged: the mean per D update
            values = values / self.config.train.d_steps_per_g_step
        self.tracking.add_losses(names, values)
        return True

    def _nonfinite(self, name: str, value: float) -> None:
        """Skip the step (``train.skip_nonfinite``) or stop with one message."""
        step = self.step + 1
        if self.config.train.skip_nonfinite:
            self.nonfinite_skipped += 1
            log.warning("step %d: loss %s is %s; step skipped (%d so far)", step, name, value, self.nonfinite_skipped)
            return
        checkpoints = list_checkpoints(self.output_dir)
        last = f"the last good checkpoint is {checkpoints[-1]}" if checkpoints else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"loss {name} is {value} at step {step}; {last}. Lower the learning rate, check the "
            "data, or set train.skip_nonfinite=true to skip such steps"
        )

    # ------------------------------------------------------------------ evaluation, export, state
    def evaluate(self) -> dict[str, Any] | None:
        """Evaluate on the validation set (every process takes its share), log it, step the
        plateau rule and export ``model_best/`` when the metric improved."""
        from accelerate.utils import gather_object

        from img2img.evaluate import evaluate

        c = self.config
        self.nets.sync_buffers(self.world_size)
        if not self.task.paired and self.feature_net is None:
            self.tracking.warn_once("fid", f"{c.task} evaluation needs FID weights (eval.fid_weights); skipping metrics")
            return None
        result = evaluate(
            self.task, self.nets.for_eval(), self.data.val_set, self.device,
            crop_border=self.task.crop_border(), rank=self.rank, world_size=self.world_size,
            gather=(lambda obj: gather_object([obj])) if self.world_size > 1 else (lambda obj: [obj]),
            max_images=c.data.max_val_images, feature_net=self.feature_net, lpips_net=self.lpips_net,
        )
        self.last_eval = result
        scalars = {f"eval/{k}": v for k, v in result["model"].items()}
        scalars |= {f"eval_baseline/{k}": v for k, v in result["baseline"].items()}
        for group, scores in result.get("groups", {}).items():  # per-group FID/KID
            scalars |= {f"eval/{group}/{k}": v for k, v in scores["model"].items()}
        self.tracking.record(self.step, scalars)
        value = result["model"].get(c.eval.metric)
        if value is not None:
            log.info("step %d: %s", self.step, ", ".join(f"{k} {v:.4f}" for k, v in result["model"].items()))
            self.optim.after_evaluation(value)
            self._keep_best(value)
        return result

    def _keep_best(self, value: float) -> None:
        from img2img.config import METRICS

        best, higher_is_better = self.best["value"], METRICS[self.config.eval.metric]
        if best is None or (value > best if higher_is_better else value < best):
            self.best.update(value=value, step=self.step)
            self.export(self.output_dir / "model_best")

    def export(self, directory: Path) -> None:
        """Save the generators evaluation uses as a model folder (main process)."""
        if not self.is_main:
            return
        from img2img.model_io import save_model

        save_model(directory, self.config, self.nets.for_eval())

    def state_dict(self) -> dict[str, Any]:
        """What ``trainer_state.json`` holds (the rest of a checkpoint is tensors)."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best": self.best,
            "nonfinite_skipped": self.nonfinite_skipped,
            "world_size": self.world_size,
            **self.optim.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        self.epoch = state["epoch"]
        self.batch_in_epoch = state["batch_in_epoch"]
        self.best = state["best"]
        self.nonfinite_skipped = state["nonfinite_skipped"]
        self.optim.load_state_dict(state)
