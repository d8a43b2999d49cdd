"""Learning-rate schedules by optimizer step.

``constant``, ``linear`` (the pix2pix/CycleGAN rule: constant, then linear decay to zero),
``step`` (multiply by ``gamma`` at each milestone), ``cosine`` (cosine annealing with
restarts, the MSRResNet recipe) are :class:`torch.optim.lr_scheduler.LambdaLR` factors, so
their state is one integer. ``plateau`` is :class:`ReduceLROnPlateau` on the validation
metric and is stepped by the trainer after each evaluation. ``warmup_steps`` multiplies any
of them by a linear ramp.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

import torch

from img2img.config import TrainConfig


def linear_decay(step: int, max_steps: int, decay_start: int | None) -> float:
    """1 for the first ``decay_start`` steps (default: half of ``max_steps``), then linear
    decay: the reference's ``1 - max(0, e + epoch_count - n_epochs) / (n_epochs_decay + 1)``
    (``epoch_count`` = 1, ``e`` the 0-based epoch) counted in 0-based steps, so the last
    step runs at ``1 / (max_steps - decay_start + 1)``."""
    start = max_steps // 2 if decay_start is None else decay_start
    return 1.0 - max(0, step + 1 - start) / float(max_steps - start + 1)


def multistep(step: int, milestones: list[int], gamma: float) -> float:
    return gamma ** bisect.bisect_right(milestones, step)


def cosine_restarts(
    step: int, periods: list[int], restart_weights: list[float], eta_min_ratio: float
) -> float:
    """Cosine annealing with restarts: within period ``i`` (starting at ``c_i``), the factor
    goes from ``w_i`` to ``eta_min_ratio`` along half a cosine."""
    weights = restart_weights or [1.0] * len(periods)
    start = 0
    for period, weight in zip(periods, weights):
        if step < start + period:
            progress = (step - start) / period
            return eta_min_ratio + 0.5 * (weight - eta_min_ratio) * (1 + math.cos(math.pi * progress))
        start += period
    return eta_min_ratio


def lr_factor(train: TrainConfig, base_lr: float) -> Callable[[int], float]:
    """The multiplicative LR factor for optimizer step ``step`` (0-based)."""
    name = train.scheduler

    def schedule(step: int) -> float:
        if name == "linear":
            factor = linear_decay(step, train.max_steps, train.decay_start)
        elif name == "step":
            factor = multistep(step, train.milestones, train.gamma)
        elif name == "cosine":
            periods = train.cosine_periods or [train.max_steps]
            ratio = train.eta_min / base_lr if base_lr > 0 else 0.0
            factor = cosine_restarts(step, periods, train.restart_weights, ratio)
        else:  # constant, plateau (the plateau rule acts on top, after evaluations)
            factor = 1.0
        if train.warmup_steps and step < train.warmup_steps:
            factor *= (step + 1) / train.warmup_steps
        return factor

    return schedule


def build_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainConfig, base_lr: float
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(train, base_lr))


def build_plateau(
    optimizer: torch.optim.Optimizer, train: TrainConfig, higher_is_better: bool
) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="max" if higher_is_better else "min",
        factor=train.plateau_factor,
        patience=train.plateau_patience,
        min_lr=train.eta_min,
    )
