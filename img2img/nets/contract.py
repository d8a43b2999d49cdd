"""The size contract of a generator: what sizes it takes, what it gives, and how any size
is made to fit.

Every generator of the zoo declares five attributes: ``in_channels``, ``out_channels``,
``scale`` (output side / input side), ``size_multiple`` (input height and width must be
multiples of it) and ``min_size`` (the smallest input side it runs on, a multiple of
``size_multiple``). :func:`size_contract` reads them once, as a :class:`SizeContract`;
a network from elsewhere that does not declare them gets the defaults (3 -> 3 channels,
scale 1, multiple 1) and its minimum size is found by running it on growing blank inputs
(:func:`probe_min_size`, once per network).

:func:`forward_padded` runs a generator on an input of any size: the input is padded to
the contract (reflection, or replication along an axis where the pad is not smaller than
the image, e.g. a 1x1 image for a U-Net), split evenly between the two sides of each
axis, and the output is cropped back (times ``scale``). Training's evaluation, the
Translator, export and the reference import all use this one module.
"""

from __future__ import annotations

import dataclasses
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from img2img.errors import DataError

#: How many multiples of ``size_multiple`` :func:`probe_min_size` tries.
PROBE_STEPS = 16

_PROBED: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()


@dataclasses.dataclass(frozen=True)
class SizeContract:
    """What a generator takes and gives (see the module docstring)."""

    in_channels: int
    out_channels: int
    scale: int
    multiple: int
    min_size: int

    def padded(self, size: int) -> int:
        """The smallest side >= ``size`` the network takes."""
        return padded_size(size, self.multiple, self.min_size)

    def fits(self, size: int) -> bool:
        """Whether the network takes a side of ``size`` as it is."""
        return size % self.multiple == 0 and size >= self.min_size


def size_contract(net: nn.Module, device: torch.device | str | None = None) -> SizeContract:
    """The :class:`SizeContract` of ``net``; an undeclared ``min_size`` is probed (on
    ``device``, by default where the network's parameters are) and remembered."""
    multiple = int(getattr(net, "size_multiple", 1))
    in_channels = int(getattr(net, "in_channels", 3))
    least = int(getattr(net, "min_size", 0))
    if not least:
        least = _PROBED.get(net, 0)
    if not least:
        if device is None:
            device = next((p.device for p in net.parameters()), torch.device("cpu"))
        least = _PROBED[net] = probe_min_size(net, multiple, in_channels, device)
    return SizeContract(in_channels, int(getattr(net, "out_channels", 3)), int(getattr(net, "scale", 1)),
                        multiple, least)


def probe_min_size(net: nn.Module, multiple: int, in_channels: int, device: torch.device | str = "cpu") -> int:
    """The smallest multiple of ``multiple`` (up to :data:`PROBE_STEPS` of them) that
    ``net`` runs on, found by running it on blank square inputs."""
    with torch.inference_mode():
        for k in range(1, PROBE_STEPS + 1):
            x = torch.zeros(1, in_channels, k * multiple, k * multiple, device=device)
            try:
                net(x)
            except (RuntimeError, ValueError):  # too small for a padding or a norm layer
                continue
            return k * multiple
    raise RuntimeError(f"{type(net).__name__} fails on every input up to {PROBE_STEPS * multiple} px")


def padded_size(size: int, multiple: int, min_size: int = 1) -> int:
    """The smallest multiple of ``multiple`` that is >= ``size`` and >= ``min_size``."""
    return -(-max(size, min_size) // multiple) * multiple


def _pad_axis(x: torch.Tensor, before: int, after: int, dim: int) -> torch.Tensor:
    if before == 0 and after == 0:
        return x
    mode = "reflect" if max(before, after) < x.shape[dim] else "replicate"
    pad = (0, 0, before, after) if dim == -2 else (before, after, 0, 0)
    return F.pad(x, pad, mode=mode)


def pad_index(size: int, before: int, after: int) -> torch.Tensor:
    """The source index of each position of an axis of ``size`` padded by ``before`` and
    ``after`` as :func:`pad_to_multiple` pads it (reflection, or replication when the pad
    is not smaller than the axis): ``x.index_select(dim, pad_index(...))`` is that pad."""
    pos = torch.arange(-before, size + after)
    if max(before, after) < size:
        return torch.where(pos < 0, -pos, torch.where(pos >= size, 2 * (size - 1) - pos, pos))
    return pos.clamp(0, size - 1)


def pad_to_multiple(x: torch.Tensor, multiple: int, min_size: int = 1) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad an NCHW tensor so H and W are multiples of ``multiple`` (and >= ``min_size``);
    returns it and the (top, left) offset of the original. Reflection, or replication
    along an axis where the pad is not smaller than the image."""
    h, w = x.shape[-2:]
    ph = padded_size(h, multiple, min_size) - h
    pw = padded_size(w, multiple, min_size) - w
    top, left = ph // 2, pw // 2
    x = _pad_axis(x, top, ph - top, -2)
    x = _pad_axis(x, left, pw - left, -1)
    return x, (top, left)


def forward_padded(net: nn.Module, x: torch.Tensor, min_size: int | None = None) -> torch.Tensor:
    """Run a generator on an NCHW tensor of any size: pad to its contract (``min_size``
    overrides the network's own), run, crop the output back to the input's size times the
    network's ``scale``.

    Padding may not blow an input up: when the padded input would hold more than 4 times
    the input's pixels and more than 2**24 (a 4096x4096 input), which only an extreme
    shape does (a 1x100000 strip for a network that needs 256x256 becomes 256x100000),
    it is a DataError saying to run the image in tiles, before anything is allocated."""
    contract = size_contract(net, x.device)
    least = contract.min_size if min_size is None else min_size
    h, w = x.shape[-2:]
    ph, pw = padded_size(h, contract.multiple, least), padded_size(w, contract.multiple, least)
    if ph * pw > max(4 * h * w, 1 << 24):
        raise DataError(
            f"an input of {w}x{h} pixels would be padded to {pw}x{ph} ({pw * ph:,} pixels, "
            f"{pw * ph // max(1, h * w):,} times as many) for this network (sides a multiple "
            f"of {contract.multiple}, at least {least}); run it in tiles (img2img predict --tile "
            "512, or tile=512 in Python) or crop it to a less extreme shape"
        )
    padded, (top, left) = pad_to_multiple(x, contract.multiple, least)
    y = net(padded)
    s = contract.scale
    return y[..., top * s : (top + h) * s, left * s : (left + w) * s]
