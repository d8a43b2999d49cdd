"""The Inception Score (Salimans et al. 2016) on the FID Inception-v3's 1008-way logits.

What is computed, and why it is this and not one of its variants:

- **Logits.** The score uses the same network and weights file as FID
  (:class:`~img2img.metrics.inception.FIDInceptionV3`, ``pt_inception-2015-12-05``): its
  2048-d pool3 features times the classifier's weight matrix, *without* the bias
  (:meth:`~img2img.metrics.inception.FIDInceptionV3.class_logits`). The original
  implementation (openai/improved-gan ``inception_score/model.py``) multiplies pool3 by the
  weights of ``softmax/logits/MatMul`` and leaves the bias out; torch-fidelity calls the
  same quantity ``logits_unbiased`` and torchmetrics' ``InceptionScore`` uses it.
- **Classes.** The softmax runs over all 1008 logits (the graph's 1008 outputs, 8 of them
  unused classes), as the original code, torch-fidelity and torchmetrics do; not over the
  first 1000.
- **Splits.** The images are cut into ``splits`` (10) consecutive groups in evaluation
  order (``part i`` holds images ``i*N//splits`` to ``(i+1)*N//splits``, as the original
  code; torch-fidelity shuffles with a fixed seed first, torchmetrics with an unseeded
  one). Each group's score is ``exp(mean_x KL(p(y|x) || p(y)))`` with ``p(y)`` the
  group's mean prediction. Fewer images than splits: one group per image.
- **Result.** The mean over the groups and their *population* standard deviation
  (``numpy.std``, as the original code and torch-fidelity; torchmetrics reports the
  sample standard deviation). Computed in float64.

:class:`InceptionScore` streams logits with each image's place in the evaluation order,
gathers them across processes (torchmetrics' ``cat`` reduction) and sorts them by that
place, so a sharded evaluation gives exactly the single-process number.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

from img2img.log import get_logger

log = get_logger(__name__)

DEFAULT_SPLITS = 10


def inception_score(logits: Tensor, splits: int = DEFAULT_SPLITS) -> tuple[float, float]:
    """(mean, population std) of the Inception Score of ``N x C`` class logits, in the
    order given, over ``min(splits, N)`` consecutive groups (see the module docstring)."""
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"the Inception Score needs N x C logits with N >= 1, got {tuple(logits.shape)}")
    logits = logits.double()
    n = logits.shape[0]
    groups = min(splits, n)
    if n < 2 * splits:
        log.warning("the Inception Score of %d images in %d splits: a split of %s says little (one image "
                    "alone scores exactly 1); evaluate on at least %d images", n, groups,
                    "one image" if n <= splits else "one or two images", 2 * splits)
    log_p = logits.log_softmax(dim=1)
    p = log_p.exp()
    scores = []
    for i in range(groups):
        lo, hi = i * n // groups, (i + 1) * n // groups
        part, log_part = p[lo:hi], log_p[lo:hi]
        log_marginal = part.mean(dim=0, keepdim=True).log()
        kl = (part * (log_part - log_marginal)).sum(dim=1).mean().detach()
        scores.append(math.exp(float(kl)))
    mean = math.fsum(scores) / len(scores)
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / len(scores))
    return mean, std


class InceptionScore(Metric):
    """Streaming Inception Score: :meth:`update` with a batch of class logits and each
    image's place in the evaluation order; :meth:`compute` gives ``(mean, std)`` over the
    logits of every process, sorted by place."""

    full_state_update = False

    def __init__(self, splits: int = DEFAULT_SPLITS) -> None:
        super().__init__()
        self.splits = splits
        self.add_state("logits", default=[], dist_reduce_fx="cat")
        self.add_state("order", default=[], dist_reduce_fx="cat")

    def update(self, logits: Tensor, order: Tensor) -> None:  # type: ignore[override]
        if order.numel() != logits.shape[0]:
            raise ValueError(f"the Inception Score needs one place per image: {order.numel()} places "
                             f"for {logits.shape[0]} logits")
        self.logits.append(logits.double())
        self.order.append(order.to(device=logits.device, dtype=torch.int64))

    def compute(self) -> tuple[float, float]:  # type: ignore[override]
        from torchmetrics.utilities import dim_zero_cat

        logits, order = dim_zero_cat(self.logits), dim_zero_cat(self.order)
        return inception_score(logits[order.argsort(stable=True)], self.splits)
