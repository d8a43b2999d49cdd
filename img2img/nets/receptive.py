"""How far a generator's output depends on what lies beyond a tile's border: its
receptive field, measured where it matters for tiling.

A tile's output differs from the whole image's wherever the tile's own border (its
reflected padding, instead of the real neighbours) lies inside what an output pixel sees.
:func:`reach` measures this on the network itself, whatever its architecture (a zoo
network or one loaded through spandrel): it runs a probe image (a photo: the astronaut
that ships inside scikit-image) whole, and a crop of it that cuts the probe with one
vertical border, and compares the two outputs column by column. Normalisation layers
that use image statistics see the whole probe's statistics in both runs (see
:mod:`img2img.nets.normstats`), as in a norm-consistent tiled run, so only the spatial
reach counts. :attr:`Reach.error` ``[d]`` is the root-mean-square difference, in [0, 1]
units, of the output pixels ``d`` input pixels from the cut; :attr:`Reach.extent` is where
it stops being measurable (the effective receptive field's radius, or the probe's limit).
The inference's tiling turns it into the overlap a network needs.
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from img2img.nets.contract import size_contract
from img2img.nets.normstats import NormStats

#: Smallest probe side; a probe is also at least two size multiples wide.
PROBE_MIN = 192
#: Differences below this (in [0, 1] units) are rounding, not reach.
NEGLIGIBLE = 1e-5

_CACHE: weakref.WeakKeyDictionary[nn.Module, Reach] = weakref.WeakKeyDictionary()


@dataclasses.dataclass(frozen=True)
class Reach:
    """What a tile border does to a network's output (see the module docstring).

    ``error[d]``: RMS output difference ``d`` input pixels from a cut; ``extent``: the
    distance beyond which it is negligible, or ``len(error)`` when it never is within
    the probe; ``probe``: the probe's side."""

    error: np.ndarray = dataclasses.field(repr=False)
    extent: int
    probe: int

    @property
    def truncated(self) -> bool:
        """Whether the network sees past what the probe can measure (a U-Net whose
        bottleneck spans the probe)."""
        return self.extent >= len(self.error)

    def at(self, distance: float) -> float:
        """The difference ``distance`` pixels from a cut (beyond the probe: the largest
        measured in its far half, as the network still sees that far)."""
        d = int(distance)
        if d < len(self.error):
            return float(self.error[max(d, 0)])
        return float(self.error[len(self.error) // 2 :].max())


def _probe_image(channels: int, side: int, device: torch.device) -> torch.Tensor:
    """The probe: the middle of scikit-image's astronaut photo (512 x 512; resized when
    ``side`` is larger) in [-1, 1], as ``channels`` channels (the mean for one)."""
    from skimage.data import astronaut

    photo = torch.from_numpy(astronaut().copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    if side > photo.shape[-1]:
        photo = F.interpolate(photo, size=(side, side), mode="bicubic", align_corners=False).clamp(-1, 1)
    top = (photo.shape[-1] - side) // 2
    x = photo[..., top : top + side, top : top + side]
    x = x.mean(1, keepdim=True) if channels == 1 else x.repeat(1, -(-channels // 3), 1, 1)[:, :channels]
    return x.contiguous().to(device)


def _outputs(net: nn.Module, x: torch.Tensor, cut: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's output on ``x`` and on ``x`` without its first ``cut`` columns, both
    normalised with ``x``'s statistics."""
    side = x.shape[-1]
    with NormStats(net) as norm, torch.no_grad():
        if norm:
            norm.set_batch([0], [(0, side, 0, side)], (side, side))
            with norm.gathering(all_layers=True):
                net(x)
        with norm.applying():
            whole = net(x)
            if norm:
                norm.set_batch([0], [(0, side, 0, side - cut)], (side, side - cut))
            part = net(x[..., cut:])
    return whole, part


def reach(net: nn.Module, device: torch.device | str | None = None) -> Reach:
    """The :class:`Reach` of ``net`` (measured once per network and remembered): two
    forward passes on a probe of ``max(192, 2 x size_multiple)`` pixels, rounded up to
    what the network takes, cut at half its width (on a multiple)."""
    cached = _CACHE.get(net)
    if cached is not None:
        return cached
    contract = size_contract(net, device)
    if device is None:
        device = next((p.device for p in net.parameters()), torch.device("cpu"))
    side = contract.padded(max(PROBE_MIN, 2 * contract.multiple))
    cut = contract.padded(side // 2)
    if side - cut < contract.min_size:
        cut = side - contract.padded(contract.min_size)
    s = contract.scale
    with torch.inference_mode():
        whole, part = _outputs(net, _probe_image(contract.in_channels, side, torch.device(device)), cut)
    diff = ((whole[..., cut * s :].float() - part.float()) / 2).double().cpu()
    per_col = diff.pow(2).mean(dim=(0, 1, 2)).sqrt().numpy()  # output columns from the cut
    error = per_col.reshape(-1, s).max(1)  # per input column
    big = np.nonzero(error > NEGLIGIBLE)[0]
    extent = int(big[-1]) + 1 if len(big) else 0
    result = _CACHE[net] = Reach(error, extent, side)
    return result
