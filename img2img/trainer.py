"""The training engine: one Accelerate loop for every task.

The task says what is learned (networks, losses, visuals, evaluation); this module says how
steps run: devices and processes, mixed precision, gradient accumulation, the G/D
alternation with ``requires_grad`` toggling, image pools, EMA, schedules, checkpoints and
exact resume, signals, non-finite losses, logging and periodic evaluation.

One *step* is one optimizer update of G (and of D) over ``train.grad_accum`` micro-batches
of ``train.batch_size`` images on each process.

Run directory (``output_dir``)::

    config.yaml                 the resolved config
    metrics.jsonl               one JSON object per log / evaluation event
    samples/step-NNNNNN.png     sample grids (input | output | target)
    checkpoints/step-NNNNNN/    accelerate state + trainer state + model/ (written atomically)
    model/                      the exported generator(s) at the end (config.json + safetensors)
    model_best/                 the generator(s) of the best evaluation so far
    wandb/, tensorboard/        tracker files
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import signal
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from img2img import ownership
from img2img.config import METRICS, Config, save_config
from img2img.errors import ConfigError, DataError, NonFiniteLossError, UserError
from img2img.log import get_logger

log = get_logger(__name__)

CHECKPOINT_PREFIX = "step-"


def cli_train(args) -> int:
    trainer = Trainer(args.cfg, resume=args.resume)
    trainer.fit()
    return 0


# --------------------------------------------------------------------------- helpers


def set_requires_grad(nets: dict[str, nn.Module], flag: bool) -> None:
    for net in nets.values():
        for p in net.parameters():
            p.requires_grad_(flag)


def checkpoint_step(path: Path) -> int:
    return int(path.name[len(CHECKPOINT_PREFIX):])


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary ``.tmp-*`` folders excluded)."""
    from img2img.model_io import checkpoint_dirs

    return [p for p in checkpoint_dirs(output_dir) if (p / "trainer_state.json").is_file()]


def resolve_resume(resume: str | None, output_dir: Path) -> Path | None:
    if not resume:
        return None
    if resume == "auto":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise UserError(
            f"--resume {resume}: not a checkpoint directory (expected {path}/trainer_state.json); "
            f"checkpoints live in {output_dir / 'checkpoints'}"
        )
    return path


def _reset_accelerate_state() -> None:
    """Accelerate keeps process-wide singletons; a second Trainer in one process (a notebook,
    the tests) with other settings needs them cleared. Never inside a distributed group."""
    from accelerate.state import AcceleratorState, GradientState

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    if AcceleratorState._shared_state:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def collate_same_size(samples: list[dict]) -> dict:
    """``default_collate``, with one clear error when the images of a batch differ in size
    (a preprocessing that keeps each image's own size, with a batch of more than one)."""
    from torch.utils.data import default_collate

    key = "A" if "A" in samples[0] else "B"
    if len({tuple(s[key].shape) for s in samples}) > 1:
        names = ", ".join(
            f"{s[key + '_path']} ({s[key].shape[-1]}x{s[key].shape[-2]})" for s in samples[:4]
        )
        raise DataError(
            f"a training batch holds images of different sizes: {names}; with "
            "data.preprocess=none or scale_width use train.batch_size=1, or a cropping "
            "preprocess (resize_and_crop, crop, scale_width_and_crop)"
        )
    return default_collate(samples)


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


#: Set to 1 by the main process once it is leaving (its own exit, or the end of training):
#: shared with the DataLoader workers (see :func:`_worker_init`).
_LEAVING = None


def _leaving_flag():
    """The shared "main process is leaving" flag, made once per process, set at exit."""
    global _LEAVING
    if _LEAVING is None:
        import atexit
        import multiprocessing

        _LEAVING = multiprocessing.Value("b", 0, lock=False)
        # Registered after multiprocessing's own exit handler, so it runs before it: the
        # workers that handler then stops with SIGTERM see the flag and leave.
        atexit.register(_set_leaving)
    _LEAVING.value = 0  # a new run (several can train in one process, one after another)
    return _LEAVING


def _set_leaving() -> None:
    if _LEAVING is not None:
        _LEAVING.value = 1


def _worker_init(worker_id: int, leaving=None) -> None:
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    # SIGTERM and SIGINT often reach the whole process group (Ctrl-C in a terminal, a
    # scheduler's preemption, `timeout`, torchrun passing a SIGTERM on). The workers then
    # keep serving batches, so that every process finishes its step in step with the
    # others (a worker gone mid-step leaves one rank waiting in a collective for another)
    # and the main process saves and stops them. Once the main process is leaving (its
    # exit, where multiprocessing stops workers with SIGTERM), the signal ends the worker
    # at once, with exit code 0: an error in the main process never hangs its exit.
    global _LEAVING
    _LEAVING = leaving
    signal.signal(signal.SIGTERM, _worker_signal)
    signal.signal(signal.SIGINT, _worker_signal)


def _worker_signal(signum, frame) -> None:
    if _LEAVING is None or _LEAVING.value:
        os._exit(0)


# --------------------------------------------------------------------------- trainer


class Trainer:
    def __init__(self, config: Config, resume: str | None = None) -> None:
        self.config = config
        self.output_dir = Path(config.output_dir)
        from img2img.tasks import build_task

        self.task = build_task(config)  # the task checks its own settings first
        self._check_config()
        # Resolved first: model.init_from applies only when no checkpoint is resumed.
        self.resume_from = resolve_resume(resume, self.output_dir)
        if resume == "auto" and self.resume_from is None:
            log.info("--resume auto: no checkpoint in %s, starting fresh", self.output_dir)
        self.accelerator = self._make_accelerator()
        self.device = self.accelerator.device
        self.rank = self.accelerator.process_index
        self.world_size = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process

        # Identical initial weights on every process; then per-process randomness (dropout).
        _seed_everything(config.seed)
        self.G: dict[str, nn.Module] = self.task.build_generators()
        self.D: dict[str, nn.Module] = self.task.build_discriminators()
        self._check_training_size()
        if config.model.init_from and self.resume_from is None:
            self._init_from(config.model.init_from)
        _seed_everything((config.seed + 7919 * self.rank) % 2**64)

        # Every process checks the data at once: a bad file stops them all alike, each
        # with the same error (one process first, the others at a barrier, would leave
        # those waiting on a process that is gone).
        self._build_data()
        self.task.setup_losses(self.device)
        self.feature_net = self._load_feature_net()  # a bad weights path fails now, not at the end
        self._build_optimization()
        self._init_state()

    # ------------------------------------------------------------------ set-up
    def _check_config(self) -> None:
        c = self.config
        if not c.data.root:
            raise ConfigError("data.root is not set: pass data.root=PATH (the folder of images)")
        if c.mixed_precision == "fp16" and (c.device == "cpu" or not torch.cuda.is_available()):
            raise ConfigError(
                "mixed_precision: fp16 needs a CUDA GPU; on the CPU use mixed_precision=bf16"
            )
        if c.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device: cuda was asked for but no CUDA GPU is visible; use device=cpu")
        if c.train.scheduler == "plateau" and c.eval.every == 0:
            raise ConfigError(
                "train.scheduler: plateau reads the validation metric, so it needs eval.every > 0"
            )
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise ConfigError(f"output_dir: {self.output_dir} exists and is a file, not a folder")
        existing = self.output_dir.absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise ConfigError(f"output_dir: {existing} is a file, so {self.output_dir} cannot be created")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"output_dir: {existing} is not writable (read-only or no permission)")
        # config.yaml and metrics.jsonl are replaced only in a run directory img2img wrote.
        hint = "choose another output_dir, or remove it yourself"
        ownership.check_folder_kind(self.output_dir, "run", hint)
        for name in ("model", "model_best"):  # replaced at the end, so refused now, not then
            ownership.check_replaceable(self.output_dir / name, "model", hint)

    def _check_training_size(self) -> None:
        """Training crops the networks cannot take are a config error now, not a shape
        error at the first step: the generator's size multiple and minimum, and a
        discriminator run once (a copy, in training mode) on a batch of that size."""
        import copy

        from img2img.nets.contract import size_contract

        c = self.config
        sizes = self.task.training_sizes()
        if sizes is None:  # whole or width-scaled images: their sizes vary
            return
        key, g_size, d_size = sizes.key, sizes.generator, sizes.discriminator
        for net in self.G.values():
            contract = size_contract(net)
            if not contract.fits(g_size):
                raise ConfigError(
                    f"{key}: {c.model.generator.name} needs training images whose sides are "
                    f"multiples of {contract.multiple} (at least {contract.min_size} px), got "
                    f"{g_size} px{sizes.note}; use e.g. {contract.padded(g_size) * sizes.per_pixel}"
                )
        channels = self.task.discriminator_channels()
        for name, net in self.D.items():
            probe = copy.deepcopy(net).train()
            try:
                with torch.no_grad():
                    probe(torch.zeros(2, channels[name], d_size, d_size))
            except (RuntimeError, ValueError):
                dcfg = c.model.discriminator
                raise ConfigError(
                    f"{key}: {d_size} px images are too small for the {dcfg.name} discriminator "
                    f"with n_layers={dcfg.n_layers}; use larger images or fewer layers"
                ) from None

    def _make_accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import GradientAccumulationPlugin, ProjectConfiguration

        c = self.config
        log_with = []
        if c.log.wandb != "off":
            log_with.append("wandb")
        if c.log.tensorboard:
            log_with.append("tensorboard")
        if c.log.wandb == "offline":
            os.environ["WANDB_MODE"] = "offline"  # no network, no login; sync later with `wandb sync`
        _reset_accelerate_state()
        accelerator = Accelerator(
            # auto without a GPU is the CPU: under torchrun that makes a real (gloo) group
            cpu=c.device == "cpu" or (c.device == "auto" and not torch.cuda.is_available()),
            mixed_precision=c.mixed_precision,
            gradient_accumulation_plugin=GradientAccumulationPlugin(
                num_steps=c.train.grad_accum, sync_with_dataloader=False
            ),
            log_with=log_with or None,
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "tensorboard")
            ),
        )
        if accelerator.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = c.train.tf32
            torch.backends.cudnn.allow_tf32 = c.train.tf32
        if accelerator.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        return accelerator

    def _init_from(self, path: str) -> None:
        from img2img.model_io import load_model, load_state_dict_strict

        config, generators = load_model(path)
        theirs, ours = _flatten(config.to_dict()), _flatten(self.config.to_dict())
        differ = [k for k in ours if (k.startswith("model.") or k == "data.scale") and k != "model.init_from"
                  and theirs.get(k) != ours[k]]
        settings = "; it differs in " + ", ".join(
            f"{k} ({theirs.get(k)!r} there, {ours[k]!r} here)" for k in differ) if differ else ""
        for name, net in self.G.items():
            if name not in generators:
                raise UserError(f"model.init_from {path}: it has no generator {name!r}")
            try:
                load_state_dict_strict(net, generators[name].state_dict(), f"model.init_from {path}")
            except UserError as err:
                raise UserError(f"{err} (generator {name}){settings}") from None
        log.info("initialised %s from %s", ", ".join(self.G), path)

    def _build_data(self) -> None:
        from torch.utils.data import DataLoader

        from img2img.sampling import ShardedSeededSampler

        c = self.config
        self.train_set = self.task.build_dataset("train")
        if len(self.train_set) == 0:
            raise DataError(f"no training images found under {c.data.root}")
        self.val_set = self.task.build_dataset("val")
        self.sampler = ShardedSeededSampler(
            len(self.train_set), c.train.batch_size, seed=c.seed, rank=self.rank,
            world_size=self.world_size,
        )
        workers = c.data.num_workers
        self.loader = DataLoader(
            self.train_set,
            batch_size=c.train.batch_size,
            collate_fn=collate_same_size,
            sampler=self.sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=functools.partial(_worker_init, leaving=_leaving_flag()) if workers > 0 else None,
            generator=torch.Generator().manual_seed(c.seed),
            prefetch_factor=4 if workers > 0 else None,
        )

    def _build_optimization(self) -> None:
        from img2img.schedules import build_plateau, build_scheduler

        c, t = self.config, self.config.train
        fmt = torch.channels_last if t.channels_last else torch.contiguous_format
        for net in (*self.G.values(), *self.D.values()):
            net.to(self.device, memory_format=fmt)
        fused = t.fused_adam and self._fused_adam_supported()

        def adam(nets: dict[str, nn.Module], lr: float):
            params = [p for net in nets.values() for p in net.parameters()]
            kwargs = {"fused": True} if fused else {}
            return torch.optim.Adam(params, lr=lr, betas=tuple(t.betas), weight_decay=t.weight_decay, **kwargs)

        self.opt_G = adam(self.G, t.lr_g)
        self.opt_D = adam(self.D, t.lr_d) if self.D else None
        # Accelerate wraps models (DDP, autocast) and optimizers (grad scaler, accumulation).
        names = [*self.G, *self.D]
        nets = [*self.G.values(), *self.D.values()]
        optimizers = [self.opt_G] + ([self.opt_D] if self.opt_D else [])
        prepared = self.accelerator.prepare(*nets, *optimizers)
        prepared = list(prepared) if isinstance(prepared, (list, tuple)) else [prepared]
        wrapped = dict(zip(names, prepared[: len(nets)]))
        self.opt_G_acc = prepared[len(nets)]
        self.opt_D_acc = prepared[len(nets) + 1] if self.opt_D else None
        # Schedules act on the plain optimizers (made after Accelerate wrapped them, so
        # their step counting sees the real steps) and count global steps: Accelerate's
        # scheduler wrapper would step once per process. The plateau rule alone sets the LR
        # of a plateau run (a LambdaLR beside it would undo every cut one step later).
        plateau = t.scheduler == "plateau"
        self.sched_G = None if plateau else build_scheduler(self.opt_G, t, t.lr_g)
        self.sched_D = None if plateau or not self.opt_D else build_scheduler(self.opt_D, t, t.lr_d)
        self.plateaus = []
        if plateau:
            better = METRICS[c.eval.metric]
            self.plateaus = [build_plateau(o, t, better) for o in (self.opt_G, self.opt_D) if o]

        # Plain modules (for frozen-D scoring, EMA, evaluation and export) and the wrapped ones.
        self.G_run = {n: wrapped[n] for n in self.G}
        self.D_run = {n: wrapped[n] for n in self.D}
        if t.compile:
            self.G_run = {n: torch.compile(m) for n, m in self.G_run.items()}
            self.D_run = {n: torch.compile(m) for n, m in self.D_run.items()}
        # The G phase scores fakes with the plain discriminators (frozen: no DDP hooks);
        # with train.compile they are compiled too, or that phase would run D eagerly.
        self.D_frozen = {n: torch.compile(m) for n, m in self.D.items()} if t.compile else dict(self.D)

        from img2img.ema import EMA

        self.ema = {n: EMA(net, t.ema) for n, net in self.G.items()} if t.ema > 0 else {}
        from img2img.pool import ImagePool

        self.pools = {
            n: ImagePool(c.loss.pool_size, seed=(c.seed * 31 + 17 * i + self.rank) % 2**64)
            for i, n in enumerate(self.D)
        } if self.task.uses_image_pool else {}

    def _fused_adam_supported(self) -> bool:
        try:
            p = torch.zeros(1, device=self.device, requires_grad=True)
            opt = torch.optim.Adam([p], fused=True)
            p.grad = torch.zeros_like(p)
            opt.step()
            return True
        except (RuntimeError, TypeError, ValueError):
            return False

    def _init_state(self) -> None:
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best: dict[str, Any] = {"metric": self.config.eval.metric, "value": None, "step": None}
        self.nonfinite_skipped = 0
        self._stop_signal: int | None = None
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_steps = 0
        self._last_log_time = time.perf_counter()
        self._last_saved_step = -1
        self._kept_folders: set[str] = set()
        self.last_eval: dict[str, Any] | None = None

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        c = self.config
        if self.resume_from is not None:
            self.load_checkpoint(self.resume_from)
        elif list_checkpoints(self.output_dir):
            raise UserError(
                f"{self.output_dir} already holds checkpoints of a run; continue it with "
                f"--resume auto, or choose another output_dir"
            )
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            ownership.mark(self.output_dir, "run", ownership.RUN_ENTRIES, ownership.RUN_PATTERNS)
            save_config(c, self.output_dir / "config.yaml")
            self._trim_metrics_log()
        self._init_trackers()
        log.info(
            "training %s: %d steps, batch %d x %d process(es) x %d accumulation, %d images, device %s%s",
            c.task, c.train.max_steps, c.train.batch_size, self.world_size, c.train.grad_accum,
            len(self.train_set), self.device, f", {c.mixed_precision}" if c.mixed_precision != "no" else "",
        )
        batches = self._batches()
        progress = self._progress()
        summary: dict[str, Any] = {}
        # The signal handlers stay on to the end: a signal during the final evaluation,
        # save or export lets them finish (a second one stops at once).
        with self._signals():
            while self.step < c.train.max_steps:
                try:
                    self._train_step(batches)
                except UserError as err:  # a bad file in this process's share, a NaN loss
                    err.rank_specific = True  # only this process may know: it reports it
                    raise
                self.step += 1
                progress.update(1)
                self._after_step(progress)
                if self._should_stop():
                    self._save_and_stop(summary)
                    break
            progress.close()
            if "stopped_at" not in summary:
                try:
                    if self.val_set is not None and (not c.eval.every or self.step % c.eval.every):
                        self._evaluate()
                finally:  # a failing final evaluation must not lose the trained weights
                    if self._last_saved_step != self.step:
                        self.save_checkpoint()
                    self.export(self.output_dir / "model")
                summary["model"] = str(self.output_dir / "model")
            _set_leaving()  # the data workers are done: a signal now just ends them
        summary.update(step=self.step, best=self.best, nonfinite_skipped=self.nonfinite_skipped)
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()
        return summary

    def _save_and_stop(self, summary: dict[str, Any]) -> None:
        log.info("signal %s: saving a checkpoint at step %d and stopping", self._stop_signal, self.step)
        self.save_checkpoint()
        summary["stopped_at"] = self.step

    def _batches(self):
        """Micro-batches forever, epoch after epoch, starting where a resumed run left off."""
        while True:
            self.sampler.set_epoch(self.epoch, start_batch=self.batch_in_epoch)
            for batch in self.loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    @contextmanager
    def _autocast(self):
        with self.accelerator.autocast():
            yield

    def _train_step(self, batches) -> None:
        acc = self.accelerator
        models = [*self.G_run.values(), *self.D_run.values()]
        skipped = False
        for _ in range(self.config.train.grad_accum):
            raw = next(batches)  # a skipped step still consumes its data, as a run without it
            with acc.accumulate(*models):  # keeps Accelerate's accumulation count aligned
                if skipped:
                    continue
                batch = self.task.prepare(raw, self.device, self.config.train.channels_last)
                skipped = not self._micro_step(batch)
        # The learning rates this step used (logged), before the schedules move on.
        self._step_lr = {"lr/G": self.opt_G.param_groups[0]["lr"]}
        if self.opt_D is not None:
            self._step_lr["lr/D"] = self.opt_D.param_groups[0]["lr"]
        with warnings.catch_warnings():
            # A skipped step still moves the schedule on (torch warns when no optimizer
            # step came before, e.g. when the very first step was skipped).
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            for sched in (self.sched_G, self.sched_D):
                if sched is not None:
                    sched.step()
        if not skipped:
            for name, ema in self.ema.items():
                ema.update(self.G[name])

    def _micro_step(self, batch) -> bool:
        """G forward once, then the D and G phases in the task's order; False when a
        non-finite loss made the step skip."""
        with self._autocast():
            out = self.task.forward(self.G_run, batch)
        phases = [self._g_phase]
        if self.D:
            phases.insert(0 if self.task.d_first else 1, self._d_phase)
        for phase in phases:
            if not phase(batch, out):
                return False
        self._last_batch, self._last_out = batch, out
        return True

    def _g_phase(self, batch, out) -> bool:
        set_requires_grad(self.D, False)
        with self._autocast():
            terms = self.task.generator_loss(self.D_frozen, batch, out)
        return self._optimize(terms, self.opt_G_acc, self.G, "G")

    def _d_phase(self, batch, out) -> bool:
        set_requires_grad(self.D, True)
        with self._autocast():
            terms = self.task.discriminator_loss(self.D_run, batch, out, self._pool)
        return self._optimize(terms, self.opt_D_acc, self.D, "D")

    def _pool(self, name: str, images: torch.Tensor) -> torch.Tensor:
        return self.pools[name].query(images) if name in self.pools else images

    def _optimize(self, terms: dict[str, torch.Tensor], optimizer, nets, side: str) -> bool:
        """Backward and step one side; False when the step was skipped (non-finite loss)."""
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
            bad = acc.reduce((~finite).float(), reduction="sum")
            finite = bad == 0
        if not bool(finite.all()):
            bad_name = names[int((~finite).nonzero()[0])]
            bad_value = float(values[names.index(bad_name)].detach())
            for net in (*self.G.values(), *self.D.values()):
                net.zero_grad(set_to_none=True)
            self._handle_nonfinite(bad_name, bad_value)
            return False
        if acc.sync_gradients and self.config.train.max_grad_norm > 0:
            # Unscale this side's gradients only: Accelerate's clip_grad_norm_ unscales
            # every optimizer, which would corrupt the other side's accumulating fp16 grads.
            acc.unscale_gradients(optimizer)
            params = [p for net in nets.values() for p in net.parameters()]
            torch.nn.utils.clip_grad_norm_(params, self.config.train.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        detached = values.detach()
        for name, value in zip(names, detached):
            self._pending[name] = self._pending.get(name, 0) + value
        return True

    def _handle_nonfinite(self, name: str, value: float) -> None:
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

    # ------------------------------------------------------------------ after each step
    def _after_step(self, progress) -> None:
        c = self.config
        self._pending_steps += 1
        if self.step % c.log.every == 0 or self.step == c.train.max_steps:
            self._log_scalars(progress)
        if c.log.images_every and self.step % c.log.images_every == 0 and hasattr(self, "_last_out"):
            self._log_samples()
        if c.eval.every and self.step % c.eval.every == 0 and self.val_set is not None:
            self._evaluate()
        if self.step % c.train.save_every == 0 and self.step < c.train.max_steps:
            self.save_checkpoint()

    def _log_scalars(self, progress) -> None:
        c = self.config
        names = sorted(self._pending)
        scalars: dict[str, float] = {}
        if names:
            values = torch.stack([torch.as_tensor(self._pending[n], device=self.device).float() for n in names])
            micro_batches = max(self._pending_steps * c.train.grad_accum, 1)
            values = self.accelerator.reduce(values, reduction="mean") / micro_batches
            scalars = {f"loss/{n}": float(v) for n, v in zip(names, values.tolist())}
        now = time.perf_counter()
        images = self._pending_steps * c.train.batch_size * c.train.grad_accum * self.world_size
        scalars["images_per_s"] = images / max(now - self._last_log_time, 1e-9)
        scalars.update(self._step_lr)
        scalars["epoch"] = self.epoch + self.batch_in_epoch / max(self.sampler.batches_per_epoch, 1)
        if self.nonfinite_skipped:
            scalars["nonfinite_skipped"] = self.nonfinite_skipped
        self._pending, self._pending_steps, self._last_log_time = {}, 0, now
        self._record(scalars)
        progress.set_postfix(
            {k.split("/")[-1]: f"{v:.3g}" for k, v in scalars.items() if k.startswith("loss/")}
            | {"img/s": f"{scalars['images_per_s']:.1f}"},
            refresh=False,
        )

    def _record(self, scalars: dict[str, float]) -> None:
        """Log scalars to the trackers and append them to metrics.jsonl (main process)."""
        if not self.is_main:
            return
        self.accelerator.log(scalars, step=self.step)
        line = json.dumps({"step": self.step, **scalars})
        with open(self.output_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def _log_samples(self) -> None:
        if not self.is_main:
            return
        from torchvision.utils import make_grid

        from img2img.data import write_image

        columns = [col.detach().float().clamp(-1, 1)[:4] for col in self.task.visuals(self._last_batch, self._last_out)]
        n = columns[0].shape[0]
        rows = [torch.cat([col[i:i + 1].cpu() for col in columns], dim=0) for i in range(n)]
        grid = make_grid(torch.cat(rows), nrow=len(columns), padding=2, value_range=(-1, 1), normalize=True)
        path = self.output_dir / "samples" / f"step-{self.step:06d}.png"
        write_image(path, grid)
        image = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        for tracker in self.accelerator.trackers:
            if tracker.name == "wandb":
                tracker.log_images({"samples": [image]}, step=self.step)
            elif tracker.name == "tensorboard":
                tracker.log_images({"samples": image[None]}, step=self.step, dataformats="NHWC")

    # ------------------------------------------------------------------ evaluation
    def eval_generators(self) -> dict[str, nn.Module]:
        """The generators evaluation and export use: the EMA copies when EMA is on."""
        return {n: (self.ema[n].model if n in self.ema else net) for n, net in self.G.items()}

    def _load_feature_net(self):
        path = self.config.eval.fid_weights
        if not path or self.task.paired:
            return None
        from img2img.fid import load_fid_inception

        return load_fid_inception(path, device=self.device)

    def _evaluate(self) -> dict[str, Any] | None:
        from accelerate.utils import gather_object

        from img2img.evaluate import evaluate

        c = self.config
        self._sync_buffers()
        feature_net = self.feature_net
        if not self.task.paired and feature_net is None:
            if not getattr(self, "_warned_fid", False):
                log.warning("CycleGAN evaluation needs FID weights (eval.fid_weights); skipping metrics")
                self._warned_fid = True
            return None
        result = evaluate(
            self.task,
            self.eval_generators(),
            self.val_set,
            self.device,
            crop_border=self.task.crop_border(),
            rank=self.rank,
            world_size=self.world_size,
            gather=(lambda obj: gather_object([obj])) if self.world_size > 1 else (lambda obj: [obj]),
            max_images=c.data.max_val_images,
            feature_net=feature_net,
        )
        self.last_eval = result
        scalars = {f"eval/{k}": v for k, v in result["model"].items()}
        scalars |= {f"eval_baseline/{k}": v for k, v in result["baseline"].items()}
        self._record(scalars)
        value = result["model"].get(c.eval.metric)
        if value is not None:
            log.info("step %d: %s", self.step, ", ".join(f"{k} {v:.4f}" for k, v in result["model"].items()))
            for plateau in self.plateaus:
                plateau.step(value)
            better = METRICS[c.eval.metric]
            best = self.best["value"]
            if best is None or (value > best if better else value < best):
                self.best.update(value=value, step=self.step)
                if self.is_main:
                    self.export(self.output_dir / "model_best")
        return result

    # ------------------------------------------------------------------ checkpoints
    def _sync_buffers(self) -> None:
        """Make BatchNorm statistics identical on every process (rank 0's, as DDP does at
        the start of each forward), so checkpoints, evaluation and export agree."""
        if self.world_size == 1:
            return
        nets = [*self.G.values(), *self.D.values(), *(e.model for e in self.ema.values())]
        for net in nets:
            for buf in net.buffers():
                torch.distributed.broadcast(buf.data, src=0)

    def export(self, directory: Path) -> None:
        if not self.is_main:
            return
        from img2img.model_io import save_model

        save_model(directory, self.config, self.eval_generators())

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best": self.best,
            "nonfinite_skipped": self.nonfinite_skipped,
            "world_size": self.world_size,
            "sched_G": self.sched_G.state_dict() if self.sched_G else None,
            "sched_D": self.sched_D.state_dict() if self.sched_D else None,
            "plateaus": [p.state_dict() for p in self.plateaus],
        }

    def _rank_tensors(self) -> dict[str, torch.Tensor]:
        """What differs between processes: RNG states and image pools."""
        import random

        import numpy as np

        tensors = {"rng/torch": torch.get_rng_state()}
        if torch.cuda.is_available() and self.device.type == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state(self.device)
        for name, pool in self.pools.items():
            for key, value in pool.state_dict().items():
                tensors[f"pool/{name}/{key}"] = value
        np_state = np.random.get_state()
        tensors["rng/numpy_keys"] = torch.from_numpy(np_state[1].astype(np.int64))
        tensors["rng/numpy_pos"] = torch.tensor([np_state[2], np_state[3]], dtype=torch.int64)
        py_state = random.getstate()
        tensors["rng/python"] = torch.tensor(py_state[1], dtype=torch.int64)
        return tensors

    def save_checkpoint(self) -> Path:
        from img2img.files import save_tensors

        acc = self.accelerator
        self._sync_buffers()
        root = self.output_dir / "checkpoints"
        name = f"{CHECKPOINT_PREFIX}{self.step:06d}"
        final, tmp = root / name, root / f".tmp-{name}"
        hint = "remove it yourself, or choose another output_dir"
        if self.is_main:
            root.mkdir(parents=True, exist_ok=True)
            ownership.check_replaceable(final, "checkpoint", hint)
            ownership.remove(tmp, "checkpoint", hint)  # a crashed save's, marked as below
            tmp.mkdir()
            ownership.mark(tmp, "checkpoint", [], ["*"])  # all in it is this save's
        acc.wait_for_everyone()
        try:
            acc.save_state(str(tmp))
            save_tensors(self._rank_tensors(), tmp / f"rank_{self.rank}.safetensors")
            if self.is_main:
                ema = {f"{n}.{k}": v.detach().cpu() for n, e in self.ema.items() for k, v in e.state_dict().items()}
                if ema:
                    save_tensors(ema, tmp / "ema.safetensors")
                self.export(tmp / "model")
                (tmp / "trainer_state.json").write_text(json.dumps(self._trainer_state(), indent=2))
        except BaseException as err:
            # Out of disk, say: the previous checkpoints stay as they were, and no half one.
            shutil.rmtree(tmp, ignore_errors=True)  # made by this save
            if isinstance(err, (OSError, UserError)) or not isinstance(err, Exception):
                raise
            # A library's own error (safetensors, torch) while writing: one line naming it.
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            error = UserError(
                f"cannot write checkpoint {final} ({type(err).__name__}{': ' + first if first else ''}); "
                "nothing of it was kept and the earlier checkpoints are as they were")
            error.rank_specific = True
            raise error from err
        acc.wait_for_everyone()
        if self.is_main:
            ownership.mark(tmp, "checkpoint", ownership.listing(tmp))  # exactly what it holds
            ownership.remove(final, "checkpoint", hint)  # a checkpoint of this step, if any
            os.replace(tmp, final)  # atomic: a crash leaves the previous checkpoints intact
            self._prune_checkpoints()
            log.info("saved checkpoint %s", final)
        acc.wait_for_everyone()
        self._last_saved_step = self.step
        return final

    def _prune_checkpoints(self) -> None:
        keep = self.config.train.keep_last
        checkpoints = list_checkpoints(self.output_dir)
        best_step = self.best.get("step")
        for path in checkpoints[:-keep]:
            if best_step is not None and checkpoint_step(path) == best_step:
                continue
            self._remove_checkpoint(path)
        for stale in (self.output_dir / "checkpoints").glob(".tmp-*"):
            self._remove_checkpoint(stale)

    def _remove_checkpoint(self, path: Path) -> None:
        """Delete a checkpoint folder img2img can prove it wrote; keep (and say so once)
        any other: pruning never stops a run."""
        try:
            ownership.remove(path, "checkpoint", "remove it yourself")
        except UserError as err:
            if str(path) not in self._kept_folders:
                self._kept_folders.add(str(path))
                log.warning("not pruned: %s", err)
        except OSError as err:
            log.warning("could not prune %s: %s", path, err.strerror or err)

    def load_checkpoint(self, path: Path) -> None:
        """Restore a checkpoint; a missing or damaged file in it is one UserError that
        names it and the checkpoint to fall back to."""
        try:
            self._load_checkpoint(path)
        except UserError:
            raise
        except Exception as err:  # json, safetensors, torch and OS errors of a damaged file
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            earlier = [c for c in list_checkpoints(self.output_dir) if checkpoint_step(c) < checkpoint_step(path)]
            fallback = (f"resume from the one before it with --resume {earlier[-1]}, or delete it"
                        if earlier else "delete it to start afresh")
            raise UserError(f"checkpoint {path} is incomplete or damaged ({first}); {fallback}") from None

    def _load_checkpoint(self, path: Path) -> None:
        import random

        import numpy as np
        from safetensors.torch import load_file

        state = json.loads((path / "trainer_state.json").read_text())
        before = self._check_resume_config(path)
        if state["world_size"] != self.world_size:
            raise UserError(
                f"{path} was written by {state['world_size']} process(es); resume it with the "
                f"same number (this run has {self.world_size})"
            )
        self.accelerator.load_state(str(path))
        self.step = state["step"]
        self.epoch = state["epoch"]
        self.batch_in_epoch = state["batch_in_epoch"]
        self.best = state["best"]
        self.nonfinite_skipped = state["nonfinite_skipped"]
        if self.sched_G is not None and state["sched_G"] is not None:
            self.sched_G.load_state_dict(state["sched_G"])
        if self.sched_D is not None and state["sched_D"] is not None:
            self.sched_D.load_state_dict(state["sched_D"])
        for plateau, pstate in zip(self.plateaus, state["plateaus"]):
            plateau.load_state_dict(pstate)
        self._apply_optimizer_settings(before)
        if self.ema:
            ema = load_file(str(path / "ema.safetensors"))
            for name, e in self.ema.items():
                prefix = f"{name}."
                e.load_state_dict({k[len(prefix):]: v for k, v in ema.items() if k.startswith(prefix)})
        tensors = load_file(str(path / f"rank_{self.rank}.safetensors"))
        torch.set_rng_state(tensors["rng/torch"])
        if "rng/cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng/cuda"], self.device)
        np.random.set_state(("MT19937", tensors["rng/numpy_keys"].numpy().astype(np.uint32),
                             int(tensors["rng/numpy_pos"][0]), int(tensors["rng/numpy_pos"][1]), 0.0))
        random.setstate((3, tuple(int(x) for x in tensors["rng/python"].tolist()), None))
        for name, pool in self.pools.items():
            prefix = f"pool/{name}/"
            pool.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, self.device)
        self._last_saved_step = self.step
        log.info("resumed from %s (step %d, epoch %d, batch %d)", path, self.step, self.epoch, self.batch_in_epoch)

    def _apply_optimizer_settings(self, before: Config) -> None:
        """The restored optimizers and schedules carry the settings the run was saved
        with; a resume may change them (the warning lists what changed), so the config's
        learning rates, betas and weight decay are put back in. A schedule keeps its
        position: the LR becomes the new base LR times the schedule's factor at this step
        (for plateau, times the cuts made so far)."""
        t, old = self.config.train, before.train
        sides = [(self.opt_G, self.sched_G, t.lr_g, old.lr_g)]
        if self.opt_D is not None:
            sides.append((self.opt_D, self.sched_D, t.lr_d, old.lr_d))
        for optimizer, sched, lr, old_lr in sides:
            for i, group in enumerate(optimizer.param_groups):
                group["betas"] = tuple(t.betas)
                group["weight_decay"] = t.weight_decay
                if "initial_lr" in group:
                    group["initial_lr"] = lr
                if sched is not None:
                    group["lr"] = lr * sched.lr_lambdas[i](sched.last_epoch)
                elif old_lr > 0:
                    group["lr"] *= lr / old_lr
            if sched is not None:
                sched.base_lrs = [lr] * len(optimizer.param_groups)
                sched._last_lr = [g["lr"] for g in optimizer.param_groups]

    def _check_resume_config(self, path: Path) -> Config:
        """Refuse to resume with other networks (their weights would not fit); say which
        other settings changed. Returns the config the checkpoint was written with."""
        from img2img.model_io import read_model_config

        before, _ = read_model_config(path / "model")
        old, new = _flatten(before.to_dict()), _flatten(self.config.to_dict())

        def fixed(key: str) -> bool:
            return key in ("task", "data.scale") or (key.startswith("model.") and key != "model.init_from")

        changed = [k for k in new if old.get(k) != new[k]]
        blocking = [k for k in changed if fixed(k)]
        if (before.train.ema > 0) != (self.config.train.ema > 0):
            blocking.append("train.ema")
        if blocking:
            diffs = ", ".join(f"{k} ({old.get(k)!r} -> {new[k]!r})" for k in blocking)
            raise UserError(
                f"cannot resume {path} with other networks: {diffs}; resume with the settings "
                "it was trained with, or start a new run in another output_dir"
            )
        if changed:
            log.warning("resuming %s with changed settings: %s", path, ", ".join(
                f"{k} {old.get(k)!r} -> {new[k]!r}" for k in changed))
        return before

    def _trim_metrics_log(self) -> None:
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

        kept = [line for line in path.read_text().splitlines() if line.strip() and step_of(line) <= self.step]
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)

    # ------------------------------------------------------------------ trackers, progress, signals
    def _init_trackers(self) -> None:
        c = self.config
        if c.log.wandb == "off" and not c.log.tensorboard:
            return
        init_kwargs = {}
        if c.log.wandb != "off":
            init_kwargs["wandb"] = {
                "dir": str(self.output_dir),
                "name": c.log.run_name or self.output_dir.name,
                "mode": c.log.wandb,
                "id": self._wandb_run_id(),
                "resume": "allow",
            }
        flat = _flatten(c.to_dict())
        self.accelerator.init_trackers(c.log.project, config=flat, init_kwargs=init_kwargs)

    def _wandb_run_id(self) -> str:
        """One W&B run id per run directory (kept in ``wandb_run_id``): a resumed run logs
        into the same W&B run (offline runs are merged by ``wandb sync``); a fresh run in
        the directory gets a new one."""
        import secrets

        path = self.output_dir / "wandb_run_id"
        if self.resume_from is not None and path.is_file():
            return path.read_text().strip()
        run_id = secrets.token_hex(4)
        if self.is_main:
            path.write_text(run_id + "\n")
        return run_id

    def _progress(self):
        from tqdm.auto import tqdm

        return tqdm(
            total=self.config.train.max_steps,
            initial=self.step,
            disable=not (self.is_main and self.config.log.progress),
            dynamic_ncols=True,
            unit="step",
            desc=self.config.task,
        )

    @contextmanager
    def _signals(self):
        def handler(signum, frame):
            if self._stop_signal is not None:  # a second signal: stop now
                raise KeyboardInterrupt
            self._stop_signal = signum

        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _should_stop(self) -> bool:
        flag = 1.0 if self._stop_signal is not None else 0.0
        if self.world_size > 1:
            flag = float(self.accelerator.reduce(torch.tensor([flag], device=self.device), reduction="sum"))
            if flag and self._stop_signal is None:
                self._stop_signal = signal.SIGTERM
        return flag > 0


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "perceptual_layers":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out

