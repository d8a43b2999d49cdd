"""The optimizers of a run and their learning-rate schedules.

``G`` and ``D`` are the plain torch optimizers: their param groups hold the learning rates
(logged, scheduled) and their state the Adam moments. The loop steps, zeroes and unscales
through ``wrapped[side]``, Accelerate's wrappers of the same optimizers, which add the
fp16 gradient scaler and skip the step while gradients accumulate. The schedules act on
the plain optimizers and count global steps (Accelerate's scheduler wrapper would step
once per process); a ``plateau`` run has the plateau rule alone (a LambdaLR beside it would
undo every cut one step later).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from img2img.config import TrainConfig


class Optimizers:
    def __init__(
        self,
        G: torch.optim.Optimizer,
        D: torch.optim.Optimizer | None,
        wrapped_G,
        wrapped_D,
        sched_G: torch.optim.lr_scheduler.LambdaLR | None,
        sched_D: torch.optim.lr_scheduler.LambdaLR | None,
        plateaus: list[torch.optim.lr_scheduler.ReduceLROnPlateau],
    ) -> None:
        self.G = G
        self.D = D  # None when the task has no discriminator
        self.wrapped = {"G": wrapped_G, "D": wrapped_D}
        self.sched_G = sched_G
        self.sched_D = sched_D
        self.plateaus = plateaus

    def learning_rates(self) -> dict[str, float]:
        """The learning rates the next step uses, as logged."""
        lr = {"lr/G": self.G.param_groups[0]["lr"]}
        if self.D is not None:
            lr["lr/D"] = self.D.param_groups[0]["lr"]
        return lr

    def step_schedules(self) -> None:
        """Move the schedules on by one step (after every step, skipped or not)."""
        with warnings.catch_warnings():
            # A skipped step still moves the schedule on (torch warns when no optimizer
            # step came before, e.g. when the very first step was skipped).
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            for sched in (self.sched_G, self.sched_D):
                if sched is not None:
                    sched.step()

    def after_evaluation(self, value: float) -> None:
        """The plateau rule reads the validation metric."""
        for plateau in self.plateaus:
            plateau.step(value)

    def state_dict(self) -> dict[str, Any]:
        """The schedules' state (the optimizers' own is in Accelerate's checkpoint files)."""
        return {
            "sched_G": self.sched_G.state_dict() if self.sched_G else None,
            "sched_D": self.sched_D.state_dict() if self.sched_D else None,
            "plateaus": [p.state_dict() for p in self.plateaus],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.sched_G is not None and state["sched_G"] is not None:
            self.sched_G.load_state_dict(state["sched_G"])
        if self.sched_D is not None and state["sched_D"] is not None:
            self.sched_D.load_state_dict(state["sched_D"])
        for plateau, pstate in zip(self.plateaus, state["plateaus"]):
            plateau.load_state_dict(pstate)

    def apply_settings(self, train: TrainConfig, before: TrainConfig) -> None:
        """Put this run's learning rates, betas and weight decay into optimizers restored
        from a checkpoint written with ``before``. A schedule keeps its position: the LR
        becomes the new base LR times the schedule's factor at this step (for plateau,
        times the cuts made so far). A schedule's ``get_last_lr()`` catches up at its next
        ``step()``, which comes before anything reads it."""
        sides = [(self.G, self.sched_G, train.lr_g, before.lr_g)]
        if self.D is not None:
            sides.append((self.D, self.sched_D, train.lr_d, before.lr_d))
        for optimizer, sched, lr, old_lr in sides:
            for i, group in enumerate(optimizer.param_groups):
                group["betas"] = tuple(train.betas)
                group["weight_decay"] = train.weight_decay
                if "initial_lr" in group:
                    group["initial_lr"] = lr
                if sched is not None:
                    group["lr"] = lr * sched.lr_lambdas[i](sched.last_epoch)
                elif old_lr > 0:
                    group["lr"] *= lr / old_lr
            if sched is not None:
                sched.base_lrs = [lr] * len(optimizer.param_groups)
