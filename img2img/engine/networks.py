"""The task's networks and the views the engine runs them through.

One set of weights, several uses, one name for each:

- ``G``, ``D``: the plain modules. Their weights are what trains, what checkpoints and
  exports hold and what EMA averages; ``requires_grad`` is switched on these.
- ``extra``: the task's other networks, by the optimizer that trains them (``"G"`` or
  ``"D"``): plain modules, trained and checkpointed with their side, neither exported
  nor averaged (CUT's projection head). :meth:`Networks.side` is a side's plain modules.
- ``train_G``, ``train_D``: what the training forward and backward run through:
  Accelerate's wrappers (DDP's gradient all-reduce, mixed precision), compiled with
  ``train.compile``; each side's extra networks with it.
- ``frozen_D``: the discriminators (and their side's extra networks) the G phase scores
  fakes with. Plain modules, so no DDP hooks (D does not learn in that phase: nothing to
  all-reduce); compiled with ``train.compile``, or that phase would run D eagerly.
- ``ema``: the exponential moving averages of the generators (empty when
  ``train.ema`` is 0); :meth:`Networks.for_eval` picks them for evaluation and export.
"""

from __future__ import annotations

import torch
from torch import nn

from img2img.engine.ema import EMA


class Networks:
    def __init__(
        self,
        G: dict[str, nn.Module],
        D: dict[str, nn.Module],
        train_G: dict[str, nn.Module],
        train_D: dict[str, nn.Module],
        frozen_D: dict[str, nn.Module],
        ema: dict[str, EMA],
        extra: dict[str, dict[str, nn.Module]] | None = None,
    ) -> None:
        self.G = G
        self.D = D
        self.train_G = train_G
        self.train_D = train_D
        self.frozen_D = frozen_D
        self.ema = ema
        self.extra = {"G": {}, "D": {}, **(extra or {})}

    def side(self, side: str) -> dict[str, nn.Module]:
        """The plain modules one optimizer trains (``"G"`` or ``"D"``), extra ones included."""
        return {**(self.G if side == "G" else self.D), **self.extra[side]}

    def trained(self) -> dict[str, nn.Module]:
        """Every plain module that trains, by name, in the order Accelerate wrapped them (the
        order of ``model*.safetensors`` in a checkpoint)."""
        return {**self.G, **self.D, **self.extra["G"], **self.extra["D"]}

    def for_eval(self) -> dict[str, nn.Module]:
        """The generators evaluation and export use: the EMA copies when EMA is on."""
        return {n: (self.ema[n].model if n in self.ema else net) for n, net in self.G.items()}

    def update_ema(self) -> None:
        for name, ema in self.ema.items():
            ema.update(self.G[name])

    def sync_buffers(self, world_size: int) -> None:
        """Make BatchNorm statistics identical on every process (rank 0's, as DDP does at
        the start of each forward), so checkpoints, evaluation and export agree."""
        if world_size == 1:
            return
        for net in (*self.trained().values(), *(e.model for e in self.ema.values())):
            for buf in net.buffers():
                torch.distributed.broadcast(buf.data, src=0)


def set_requires_grad(nets: dict[str, nn.Module], flag: bool) -> None:
    for net in nets.values():
        for p in net.parameters():
            p.requires_grad_(flag)
