"""Metric states made ready for torchmetrics' gathering across processes.

torchmetrics gathers a list state tensor by tensor (KID's stored features; a ``cat`` state
of more than one entry is joined first, but an empty one becomes a 1-D float32 tensor), so
processes whose lists differ in length (an odd number of images, added one at a time,
over two processes) or that hold none would not match, and the gather fails or hangs.
:func:`pack_list_states` leaves each list as exactly one tensor of its true shape and dtype.
"""

from __future__ import annotations

import torch
from torch import nn


def pack_list_states(feature_net: nn.Module, num_features: int, kid, inception, *others) -> None:
    """On this process: KID's feature lists (``kid``) and the Inception Score's logits and
    places (``inception``; either may be None) each as one tensor, an empty one of its shape
    where there is none; every metric (``others`` too) on ``feature_net``'s device, where
    a process that saw no image would still have its states on the CPU. Values and order
    are kept."""
    device = next(feature_net.parameters(), torch.empty(0)).device
    empty = torch.zeros(0, num_features, dtype=torch.float64, device=device)
    lists = []
    if kid is not None:
        lists += [(kid, "real_features", empty), (kid, "fake_features", empty)]
    if inception is not None:
        lists += [(inception, "logits", feature_net.class_logits(empty).double()),
                  (inception, "order", torch.zeros(0, dtype=torch.int64, device=device))]
    for metric in (kid, inception, *others):
        if metric is not None:
            metric.to(device)
    for metric, name, none in lists:
        parts = getattr(metric, name)
        setattr(metric, name, [torch.cat(parts) if parts else none])
