"""Exponential moving average of the generator weights.

``ema = decay * ema + (1 - decay) * weights`` after every optimizer step, on all floating
parameters; buffers (BatchNorm statistics) are copied. Evaluation and export use the
averaged copy when ``train.ema > 0``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


class EMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        # torch's own EMA rule (one foreach lerp over all parameters, as torch.optim's
        # AveragedModel uses it)
        self._lerp = get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = [p for p in self.model.parameters() if p.dtype.is_floating_point]
        params = [p.detach() for p in model.parameters() if p.dtype.is_floating_point]
        if ema_params:
            self._lerp(ema_params, params, None)
        for ema_buf, buf in zip(self.model.buffers(), model.buffers()):
            ema_buf.copy_(buf)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
