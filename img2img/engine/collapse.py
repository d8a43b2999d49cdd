"""The collapse guard: a cheap signal that a generator has stopped varying its outputs with
its inputs (mode collapse, the common failure of unpaired training), logged with the
scalars and warned about once.

For each watched output (the task's :attr:`~img2img.tasks.base.Task.collapse_pairs`: the
key of a generated image in the task's outputs -> the key of the input it was made from)
the guard keeps the last :data:`HISTORY` generated images and their inputs, average-pooled
to :data:`SIDE` x :data:`SIDE` on the device (no host sync per step). Its signal is the
**spread ratio**: the standard deviation across those images, averaged over channels and
pooled pixels, of the outputs over that of the inputs. A generator that translates gives
outputs about as varied as what it is shown; a collapsed one gives nearly the same output
whatever it is shown (a ratio near 0). The ratio is scale-free, so one threshold fits data
sets of any contrast.

The ratio is logged as ``collapse/<key>`` every ``log.every`` steps (averaged over the
processes) to ``metrics.jsonl`` and the trackers, once the history is full. At or after
``log.collapse_warmup`` steps (a freshly initialised generator's outputs barely vary
yet), the first ratio below ``log.collapse_threshold`` warns once, naming the step, the
value and the usual remedies. The history is not checkpointed: it only feeds the log.
"""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F

#: Generated images (and as many inputs) the spread is measured over.
HISTORY = 16
#: Side of the pooled copies kept.
SIDE = 16
#: Below this spread of the inputs, the inputs themselves do not vary: no ratio.
FLAT_INPUTS = 1e-4

REMEDIES = (
    "resume from a checkpoint before this step (--resume checkpoints/step-NNNNNN) with lower "
    "learning rates (train.lr_g, train.lr_d) or a smaller loss.gan_weight; check that the two "
    "domains' folders hold what you expect and enough different images; look at the samples"
)


def _pooled(images: torch.Tensor) -> list[torch.Tensor]:
    return list(F.adaptive_avg_pool2d(images.detach().float(), SIDE).unbind(0))


def _spread(images: deque) -> torch.Tensor:
    return torch.stack(list(images)).std(dim=0, unbiased=False).mean()


class CollapseGuard:
    """The guard of one run (see the module docstring)."""

    def __init__(self, pairs: dict[str, str], threshold: float, warmup: int, hint: str = "") -> None:
        self.pairs = dict(pairs)
        self.threshold = threshold
        self.warmup = warmup
        self.hint = hint
        self.made: dict[str, deque] = {k: deque(maxlen=HISTORY) for k in self.pairs}
        self.seen: dict[str, deque] = {k: deque(maxlen=HISTORY) for k in self.pairs}
        #: The step of the warning, once given.
        self.warned_at: int | None = None

    def observe(self, batch: dict, out: dict) -> None:
        """Keep pooled copies of this micro-batch's watched outputs and their inputs."""
        for key, source in self.pairs.items():
            if key in out and source in batch:
                self.made[key].extend(_pooled(out[key]))
                self.seen[key].extend(_pooled(batch[source]))

    def ratios(self) -> dict[str, torch.Tensor]:
        """``collapse/<key>`` -> the spread ratio (a 0-d tensor on the device), for every
        watched output whose history is full, in a fixed order."""
        ratios = {}
        for key in sorted(self.pairs):
            if len(self.made[key]) == HISTORY:
                seen = _spread(self.seen[key])
                ratio = _spread(self.made[key]) / seen.clamp_min(FLAT_INPUTS)
                ratios[f"collapse/{key}"] = torch.where(seen < FLAT_INPUTS, torch.ones_like(ratio), ratio)
        return ratios

    def check(self, step: int, values: dict[str, float]) -> str | None:
        """The warning to give at ``step`` for the logged ratios ``values``, once."""
        if self.warned_at is not None or step < self.warmup:
            return None
        low = {k: v for k, v in values.items() if v < self.threshold}
        if not low:
            return None
        self.warned_at = step
        key, value = min(low.items(), key=lambda kv: kv[1])
        hint = f"; {self.hint}" if self.hint else ""
        return (
            f"step {step}: the generated {key.split('/', 1)[1]} images hardly vary with their inputs "
            f"(spread ratio {value:.3g}, below log.collapse_threshold {self.threshold:g}): the "
            f"generator may have collapsed to one output. Usual remedies: {REMEDIES}{hint}"
        )
