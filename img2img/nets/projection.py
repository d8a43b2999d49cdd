"""The projection head of PatchNCE (Park et al. 2020, CUT; the reference's ``PatchSampleF``
with ``netF: mlp_sample``).

For each encoder layer it reads, the head takes ``num_patches`` feature vectors at random
positions of the layer's map (the same positions for every image of the batch), passes
each through that layer's two-layer MLP (Linear - ReLU - Linear, ``features`` wide) and
scales it to unit length. The query and key features of one PatchNCE term must come from
the same positions: the first call draws them and returns them, the second is given them.

The MLPs' input widths are those of the encoder layers, which the reference learns from
the first training batch (its "data-dependent initialisation"); :meth:`from_features`
builds a head from such a list of feature maps.
"""

from __future__ import annotations

import torch
from torch import nn

#: Added to the norm before dividing, as the reference's ``Normalize``.
NORM_EPS = 1e-7


def sample_positions(count: int, num_patches: int, device: torch.device) -> torch.Tensor:
    """``min(num_patches, count)`` distinct positions out of ``count``, in random order,
    drawn from the CPU random number generator (seeded and checkpointed like every other
    draw of a run) and moved to ``device``."""
    return torch.randperm(count)[:num_patches].to(device, non_blocking=True)


class PatchProjectionHead(nn.Module):
    """One two-layer MLP per encoder layer (``in_channels`` lists their widths)."""

    def __init__(self, in_channels: list[int] | tuple[int, ...], features: int = 256) -> None:
        super().__init__()
        self.in_channels = [int(c) for c in in_channels]
        self.features = features
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, features), nn.ReLU(), nn.Linear(features, features))
            for c in self.in_channels
        )

    @classmethod
    def from_features(cls, feats: list[torch.Tensor], features: int = 256) -> PatchProjectionHead:
        """A head for the encoder feature maps ``feats`` (each N x C x H x W)."""
        return cls([f.shape[1] for f in feats], features)

    def forward(
        self, feats: list[torch.Tensor], num_patches: int, positions: list[torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Project ``num_patches`` vectors of each feature map: returns, per layer, the
        unit-length projections (N * P x ``features``, float32, image after image) and
        the positions used (drawn here when ``positions`` is None)."""
        if len(feats) != len(self.mlps):
            raise ValueError(f"the head has {len(self.mlps)} MLPs, got {len(feats)} feature maps")
        out, used = [], []
        for i, (feat, mlp) in enumerate(zip(feats, self.mlps)):
            flat = feat.flatten(2).transpose(1, 2)  # N x HW x C
            where = sample_positions(flat.shape[1], num_patches, feat.device) if positions is None else positions[i]
            x = mlp(flat[:, where].flatten(0, 1)).float()
            out.append(x / (x.norm(dim=1, keepdim=True) + NORM_EPS))
            used.append(where)
        return out, used
