"""FID/KID (and the Inception Score) per group: for a task whose outputs fall into groups that each have their own
reference images (a multi-domain model's target domains), each group's outputs are scored
against that group's references only.

The task names the group of every reference image
(:meth:`~img2img.tasks.base.Task.eval_reference_groups`) and of every output row
(``evaluate_batch(...)["groups"]``, one name per row of ``fake`` and ``baseline``).
The result holds ``groups``: ``{group: {"model": {...}, "baseline": {...}}}``, and
``model``/``baseline`` the mean over the groups of each metric (what ``eval.metric``
reads). A group with fewer than two outputs or two references (over every process) is
left out, with a warning naming it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from img2img.log import get_logger
from img2img.metrics import FidKid

log = get_logger(__name__)

KEYS = ("fid", "kid", "kid_std", "is", "is_std")


class GroupedScores:
    """Per-group FID/KID of the outputs and of the baseline (the interface of the
    evaluation's distribution scores)."""

    def __init__(self, feature_net: torch.nn.Module, groups: list[str], gather: Callable[[Any], list[Any]]) -> None:
        self.reference_groups = groups
        self.names = sorted(set(groups))
        self.scores = {g: (FidKid(feature_net), FidKid(feature_net)) for g in self.names}
        self.outputs = dict.fromkeys(self.names, 0)
        #: Outputs into a group no reference image belongs to (not scored; named in a warning).
        self.unmatched: dict[str, int] = {}
        self.gather = gather
        self.references = 0

    def update(self, result: dict[str, Any], index: int) -> None:
        """Add one sample's rows; a baseline row equal to the one before it (the same
        untranslated input for every target) reuses that row's features. ``index`` places
        the rows in the evaluation order for the Inception Score's splits."""
        last: tuple[torch.Tensor, torch.Tensor] | None = None
        order = torch.tensor([index])
        for row, group in enumerate(result["groups"]):
            if group not in self.scores:  # a target no reference image belongs to
                self.unmatched[group] = self.unmatched.get(group, 0) + 1
                continue
            model, baseline = self.scores[group]
            model.update(fake=result["fake"][row : row + 1], order=order)
            image = result["baseline"][row : row + 1]
            if last is None or not torch.equal(last[0], image):
                last = (image, baseline.features(image))
            baseline.update_fake_features(last[1], order)
            self.outputs[group] += 1

    def add_references(self, task, dataset, device, rank: int, world_size: int, progress: bool) -> None:
        count, image = task.eval_references(dataset)
        for j in range(rank, count, world_size):  # each through the feature network once
            real = ((image(j)[None].to(device) + 1) / 2).clamp_(0, 1)
            model, baseline = self.scores[self.reference_groups[j]]
            features = model.features(real)
            model.update_real_features(features)
            baseline.update_real_features(features)
        self.references = count

    def result(self, out: dict[str, Any]) -> None:
        """Each group's scores into ``out["groups"]``, their means into ``model``/``baseline``."""
        parts = self.gather((self.outputs, self.unmatched))
        outputs = {g: sum(part[0][g] for part in parts) for g in self.names}
        unmatched = sorted({g for part in parts for g in part[1]})
        if unmatched:
            log.warning("evaluation: domain(s) %s left out of FID/KID: the evaluation data has no real images "
                        "of them (add some to their folders to score the outputs into them)", ", ".join(unmatched))
        refs = {g: self.reference_groups.count(g) for g in self.names}
        out["groups"] = {}
        for group in self.names:
            if outputs[group] < 2 or refs[group] < 2:
                log.warning("evaluation: domain %s left out of FID/KID (%d outputs, %d real images; "
                            "both need at least 2)", group, outputs[group], refs[group])
                continue
            model, baseline = (metric.compute() for metric in self.scores[group])
            out["groups"][group] = {"model": {k: model[k] for k in KEYS if k in model},
                                    "baseline": {k: baseline[k] for k in KEYS if k in baseline}}
        for which in ("model", "baseline"):
            for key in KEYS:
                values = [g[which][key] for g in out["groups"].values() if key in g[which]]
                if values:
                    out[which][key] = math.fsum(values) / len(values)
