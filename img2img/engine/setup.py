"""The set-up of a training run: the checks that need the file system or the networks, the
Accelerator, the data loader, and the networks' views with their optimizers and LR
schedules. Each piece is built once, by :class:`~img2img.engine.loop.Trainer`'s
``__init__``, in a fixed order (the random draws of building must not move: the same seed
gives the same weights).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from img2img import ownership
from img2img.config import Config
from img2img.errors import ConfigError, DataError
from img2img.log import get_logger

log = get_logger(__name__)


def flat_config(config: Config) -> dict[str, Any]:
    """The config as one level of dotted keys with plain values (trackers, comparisons)."""
    return _flatten(config.to_dict())


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "perceptual_layers":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- checks


def check_config(config: Config, output_dir: Path) -> None:
    """What the config's own validation cannot see: the devices and the output folder."""
    c = config
    if not c.data.root:
        raise ConfigError("data.root is not set: pass data.root=PATH (the folder of images)")
    if c.mixed_precision == "fp16" and (c.device == "cpu" or not torch.cuda.is_available()):
        raise ConfigError("mixed_precision: fp16 needs a CUDA GPU; on the CPU use mixed_precision=bf16")
    if c.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no CUDA GPU is visible; use device=cpu")
    if c.train.d_steps_per_g_step > 1 and c.model.discriminator.name == "none":
        raise ConfigError("train.d_steps_per_g_step: extra discriminator updates need a discriminator "
                          "(model.discriminator.name is none); set train.d_steps_per_g_step=1")
    if c.train.scheduler == "plateau" and c.eval.every == 0:
        raise ConfigError("train.scheduler: plateau reads the validation metric, so it needs eval.every > 0")
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"output_dir: {output_dir} exists and is a file, not a folder")
    existing = output_dir.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"output_dir: {existing} is a file, so {output_dir} cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output_dir: {existing} is not writable (read-only or no permission)")
    # config.yaml and metrics.jsonl are replaced only in a run directory img2img wrote.
    hint = "choose another output_dir, or remove it yourself"
    ownership.check_folder_kind(output_dir, "run", hint)
    for name in ("model", "model_best"):  # replaced at the end, so refused now, not then
        ownership.check_replaceable(output_dir / name, "model", hint)


def check_training_size(config: Config, task, G: dict[str, nn.Module], D: dict[str, nn.Module]) -> None:
    """Training crops the networks cannot take are a config error now, not a shape error
    at the first step: the generator's size multiple and minimum, and a discriminator run
    once (a copy, in training mode) on a batch of that size."""
    from img2img.nets.contract import size_contract

    sizes = task.training_sizes()
    if sizes is None:  # whole or width-scaled images: their sizes vary
        return
    key, g_size, d_size = sizes.key, sizes.generator, sizes.discriminator
    for net in G.values():
        contract = size_contract(net)
        if not contract.fits(g_size):
            raise ConfigError(
                f"{key}: {config.model.generator.name} needs training images whose sides are "
                f"multiples of {contract.multiple} (at least {contract.min_size} px), got "
                f"{g_size} px{sizes.note}; use e.g. {contract.padded(g_size) * sizes.per_pixel}"
            )
    channels = task.discriminator_channels()
    for name, net in D.items():
        probe = copy.deepcopy(net).train()
        try:
            with torch.no_grad():
                probe(torch.zeros(2, channels[name], d_size, d_size))
        except (RuntimeError, ValueError):
            dcfg = config.model.discriminator
            raise ConfigError(
                f"{key}: {d_size} px images are too small for the {dcfg.name} discriminator "
                f"with n_layers={dcfg.n_layers}; use larger images or fewer layers"
            ) from None


def shapes_networks(key: str, task: str | None = None) -> bool:
    """Whether the flat config key ``key`` shapes the networks or what their weights mean
    (``model.*`` but ``model.init_from``, ``data.scale``, and the ``task_options`` fields of
    task ``task`` marked ``metadata={"shapes_networks": True}``, such as StarGAN's domain
    list): weights trained with another value do not fit, or mean something else."""
    if key == "data.scale" or (key.startswith("model.") and key != "model.init_from"):
        return True
    if task is None or not key.startswith("task_options."):
        return False
    import dataclasses

    from img2img.tasks import task_class

    options = task_class(task).Options
    fields = {f.name: f for f in dataclasses.fields(options)} if options else {}
    found = fields.get(key.split(".")[1])
    return bool(found and found.metadata.get("shapes_networks"))


# --------------------------------------------------------------------------- accelerator


def make_accelerator(config: Config, output_dir: Path):
    from accelerate import Accelerator
    from accelerate.utils import GradientAccumulationPlugin, ProjectConfiguration

    c = config
    log_with = []
    if c.log.wandb != "off":
        log_with.append("wandb")
    if c.log.tensorboard:
        log_with.append("tensorboard")
    if c.log.wandb == "offline":
        os.environ["WANDB_MODE"] = "offline"  # no network, no login; sync later with `wandb sync`
    _forget_accelerate_state()
    accelerator = Accelerator(
        # auto without a GPU is the CPU: under torchrun that makes a real (gloo) group
        cpu=c.device == "cpu" or (c.device == "auto" and not torch.cuda.is_available()),
        mixed_precision=c.mixed_precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=c.train.grad_accum, sync_with_dataloader=False
        ),
        log_with=log_with or None,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / "tensorboard")
        ),
    )
    if accelerator.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = c.train.tf32
        torch.backends.cudnn.allow_tf32 = c.train.tf32
        torch.backends.cudnn.benchmark = True
    return accelerator


def _forget_accelerate_state() -> None:
    """Accelerate keeps its device and mixed-precision settings in process-wide singletons
    and refuses other settings later in the process; a second Trainer in one process (a
    notebook, the tests) may need other ones. Never inside a distributed group.

    Accelerate (1.x) has no public way to do this: its own test case class
    (``accelerate.test_utils.AccelerateTestCase``) calls the same private method. Only the
    settings' singleton is cleared; its ``GradientState`` takes a new accumulation plugin
    by itself, and ``sync_with_dataloader=False`` leaves nothing else in it to carry over.
    """
    from accelerate.state import AcceleratorState

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    AcceleratorState._reset_state(reset_partial_state=True)  # a no-op before the first one


# --------------------------------------------------------------------------- networks, optimizers


def build_extra_networks(task, config: Config, G: dict[str, nn.Module], train_set) -> dict[str, dict[str, nn.Module]]:
    """The task's networks whose shapes depend on what the generators make of a training
    batch (CUT's projection head), by the optimizer that trains them (``"G"`` or ``"D"``).

    The batch is the first item of the training set, made on the CPU only if the task asks
    for it. The generators see it in eval mode (no batch-norm statistics move) without
    gradients, and the task builds its networks under a random state seeded by
    ``config.seed`` alone, forked from the run's: they come out the same on every process,
    in every run and in a resumed one, and no random stream of the run moves."""
    from img2img.tasks.base import collate_one

    def first_batch():
        return task.prepare(collate_one(train_set[0]), torch.device("cpu"))

    modes = {m: m.training for net in G.values() for m in net.modules()}
    for net in G.values():
        net.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(config.seed)
            extra = task.build_extra_networks(G, first_batch)
    finally:
        for module, mode in modes.items():
            module.training = mode
    extra = {side: dict(nets) for side, nets in (extra or {}).items() if nets}
    taken = set(G) | set(task.discriminator_channels())
    for side, nets in extra.items():
        if side not in ("G", "D") or taken & set(nets):
            raise ValueError(f"{task.name}.build_extra_networks: sides are 'G' and 'D' and names "
                             f"must be new, got {side!r}: {sorted(nets)}")
        taken |= set(nets)
    return extra


def build_training(accelerator, config: Config, G: dict[str, nn.Module], D: dict[str, nn.Module],
                   extra: dict[str, dict[str, nn.Module]] | None = None):
    """Move the networks to the device, make their Adam optimizers, let Accelerate wrap
    them all (DDP, mixed precision, gradient accumulation), and make the LR schedules and
    the EMA copies. ``extra`` (from :func:`build_extra_networks`) train with the
    generators' optimizer (``"G"``) or the discriminators' (``"D"``), with its settings;
    they are wrapped after the generators and discriminators, so these keep their places
    in a checkpoint. Returns ``(Networks, Optimizers)``."""
    from img2img.config import METRICS
    from img2img.engine.ema import EMA
    from img2img.engine.networks import Networks
    from img2img.engine.optimizers import Optimizers
    from img2img.engine.schedules import build_plateau, build_scheduler

    t = config.train
    extra_G, extra_D = (extra or {}).get("G", {}), (extra or {}).get("D", {})
    named = {**G, **D, **extra_G, **extra_D}
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    for net in named.values():
        net.to(accelerator.device, memory_format=fmt)
    fused = t.fused_adam and _fused_adam_supported(accelerator.device)

    def adam(nets: dict[str, nn.Module], lr: float):
        params = [p for net in nets.values() for p in net.parameters()]
        kwargs = {"fused": True} if fused else {}
        return torch.optim.Adam(params, lr=lr, betas=tuple(t.betas), weight_decay=t.weight_decay, **kwargs)

    opt_G = adam({**G, **extra_G}, t.lr_g)
    opt_D = adam({**D, **extra_D}, t.lr_d) if D or extra_D else None
    nets = list(named.values())
    prepared = accelerator.prepare(*nets, opt_G, *([opt_D] if opt_D else []))
    prepared = list(prepared) if isinstance(prepared, (list, tuple)) else [prepared]
    wrapped = dict(zip(named, prepared[: len(nets)]))
    wrapped_G = prepared[len(nets)]
    wrapped_D = prepared[len(nets) + 1] if opt_D else None
    # Made after Accelerate wrapped the optimizers, so their step counting sees real steps.
    plateau = t.scheduler == "plateau"
    sched_G = None if plateau else build_scheduler(opt_G, t, t.lr_g)
    sched_D = None if plateau or not opt_D else build_scheduler(opt_D, t, t.lr_d)
    plateaus = []
    if plateau:
        better = METRICS[config.eval.metric]
        plateaus = [build_plateau(o, t, better) for o in (opt_G, opt_D) if o]

    compiled = torch.compile if t.compile else (lambda m: m)
    train_G = {n: compiled(wrapped[n]) for n in (*G, *extra_G)}
    train_D = {n: compiled(wrapped[n]) for n in (*D, *extra_D)}
    frozen_D = {n: compiled(m) for n, m in {**D, **extra_D}.items()}
    ema = {n: EMA(net, t.ema) for n, net in G.items()} if t.ema > 0 else {}
    return (Networks(G, D, train_G, train_D, frozen_D, ema, {"G": extra_G, "D": extra_D}),
            Optimizers(opt_G, opt_D, wrapped_G, wrapped_D, sched_G, sched_D, plateaus))


def _fused_adam_supported(device: torch.device) -> bool:
    try:
        p = torch.zeros(1, device=device, requires_grad=True)
        opt = torch.optim.Adam([p], fused=True)
        p.grad = torch.zeros_like(p)
        opt.step()
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


def build_pools(config: Config, task, D: dict[str, nn.Module], rank: int) -> dict:
    """One image pool per discriminator when the task uses them, each with its own seed."""
    from img2img.engine.pool import ImagePool

    if not task.uses_image_pool:
        return {}
    return {n: ImagePool(config.loss.pool_size, seed=(config.seed * 31 + 17 * i + rank) % 2**64)
            for i, n in enumerate(D)}


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    """The training and validation sets and this process's share of the training data."""

    train_set: Any
    val_set: Any | None
    sampler: Any  # a ShardedSeededSampler
    loader: Any  # a DataLoader


def build_data(task, config: Config, rank: int, world_size: int, device: torch.device) -> Data:
    from torch.utils.data import DataLoader

    from img2img.engine.sampling import ShardedSeededSampler
    from img2img.engine.signals import worker_init_fn

    c = config
    sets = task.build_datasets(("train", "val"))  # bad files of both splits in one report
    train_set, val_set = sets["train"], sets["val"]
    if len(train_set) == 0:
        raise DataError(f"no training images found under {c.data.root}")
    if val_set is None:
        log.warning(task.missing_val())
    sampler = ShardedSeededSampler(len(train_set), c.train.batch_size, seed=c.seed, rank=rank, world_size=world_size)
    workers = c.data.num_workers
    loader = DataLoader(
        train_set,
        batch_size=c.train.batch_size,
        collate_fn=collate_same_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        worker_init_fn=worker_init_fn(workers),
        generator=torch.Generator().manual_seed(c.seed),
        prefetch_factor=4 if workers > 0 else None,
    )
    return Data(train_set, val_set, sampler, loader)


def collate_same_size(samples: list[dict]) -> dict:
    """``default_collate``, with one clear error when the images of a batch differ in size
    (a preprocessing that keeps each image's own size, with a batch of more than one)."""
    from torch.utils.data import default_collate

    uneven = [k for k, v in samples[0].items()
              if isinstance(v, torch.Tensor) and len({tuple(s[k].shape) for s in samples}) > 1]
    if uneven:
        key = uneven[0]
        names = ", ".join(
            f"{s.get(key + '_path', f'sample {i}')} ({s[key].shape[-1]}x{s[key].shape[-2]})"
            for i, s in enumerate(samples[:4])
        )
        raise DataError(
            f"a training batch holds images of different sizes: {names}; with "
            "data.preprocess=none or scale_width use train.batch_size=1, or a cropping "
            "preprocess (resize_and_crop, crop, scale_width_and_crop)"
        )
    return default_collate(samples)


def load_feature_net(config: Config, task, device: torch.device):
    """The FID network for evaluating an unpaired task (a bad weights path fails now, not
    at the end of training); None when there is none to load."""
    path = config.eval.fid_weights
    if not path or task.paired:
        return None
    from img2img.metrics import load_fid_inception

    return load_fid_inception(path, device=device)


def load_lpips_net(config: Config, task, device: torch.device):
    """The LPIPS metric ``eval.lpips`` asks for (a missing file fails now, not at the
    first evaluation); None when off or for an unpaired task."""
    e = config.eval
    if e.lpips == "off" or not task.paired:
        return None
    from img2img.metrics import load_lpips

    return load_lpips(e.lpips, e.lpips_weights, e.lpips_backbone, device=device)
