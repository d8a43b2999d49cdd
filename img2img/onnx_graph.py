"""The self-contained ONNX model: what ``img2img predict`` does, as one graph.

:class:`SelfContained` wraps a generator with everything around it that a deployment
would otherwise re-implement:

- input ``input``: float32 NCHW in [0, 1], RGB or grey (C = 3 or 1; grey is repeated to
  RGB, as predict does), any batch, height and width from 1 px up;
- the task's conversion of RGB to the network's input (:meth:`Task.to_network`: the Lab
  lightness for colorization, the luma for a grey network);
- padding to the network's size contract exactly as :func:`img2img.nets.contract
  .forward_padded` pads (reflection split evenly between the two sides, replication
  along an axis the pad is not smaller than), computed from the input's shape inside the
  graph (index arithmetic and a gather: no shape is frozen at export), the network, and
  the crop back (times the scale);
- the task's conversion back to RGB (:meth:`Task.from_network`, with the input where the
  task keeps part of it, as colorization keeps the lightness), clamped, in [0, 1];
- output ``output``: float32 N x 3 x (H x scale) x (W x scale) in [0, 1];
- one more named input per input the task declares beyond the image
  (``inference_inputs``, in their order): a global one (StarGAN's target ``domain``:
  int64 [N]) or a spatial one (an inpainting ``mask``: float [N, 1, H, W] in {0, 1}),
  handed to the task's conversions as the Translator hands them.

With ``half`` the network runs in float16 (inputs, outputs and the colour conversions
stay float32). :func:`parity_check` compares the exported file in ONNX Runtime with the
Translator (predict before 8-bit quantisation) on odd sizes.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from img2img.nets.contract import size_contract
from img2img.nets.normstats import NormStats

#: The sizes the export is checked at (H, W): the smallest, odd ones, one past a U-Net's
#: multiples; the first is also checked with a batch of two.
CHECK_SIZES = ((1, 1), (7, 13), (67, 45), (301, 197))
#: Largest |ONNX Runtime - predict| allowed, float32 and float16 networks.
TOLERANCE, HALF_TOLERANCE = 1e-4, 1e-2


def _padded(n: torch.Tensor, multiple: int, least: int) -> torch.Tensor:
    return torch.div(torch.clamp(n, min=least) + (multiple - 1), multiple, rounding_mode="floor") * multiple


def _pad_index(n: torch.Tensor, total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Source index of each of ``total`` padded positions along an axis of ``n`` pixels,
    and the pad before it (as :func:`img2img.nets.contract.pad_index`), from tensors."""
    before = torch.div(total - n, 2, rounding_mode="floor")
    after = total - n - before
    pos = torch.arange(total) - before
    reflect = torch.where(pos < 0, -pos, torch.where(pos >= n, 2 * (n - 1) - pos, pos))
    replicate = torch.minimum(torch.clamp(pos, min=0), n - 1)
    return torch.where(torch.maximum(before, after) < n, reflect, replicate), before


class SelfContained(nn.Module):
    """RGB (or grey) in [0, 1] -> RGB in [0, 1], any size (see the module docstring).

    ``images`` is what says how RGB becomes the network's input and back: a task, or
    any object with ``to_network``, ``from_network`` and ``output_uses_input``."""

    def __init__(self, net: nn.Module, images: Any, half: bool = False) -> None:
        super().__init__()
        contract = size_contract(net)
        self.multiple, self.least, self.scale = contract.multiple, contract.min_size, contract.scale
        self.half = half
        self.net = copy.deepcopy(net).cpu().eval()
        if half:
            self.net.half()
        self.images = images
        self.extra_names = list(getattr(images, "inference_inputs", {}) or {})

    def forward(self, x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        rgb = x.float().clamp(0, 1) * torch.ones(1, 3, 1, 1) * 2 - 1  # grey -> RGB
        extra = dict(zip(self.extra_names, inputs)) or None
        inp = self.images.to_network(rgb, extra)
        shape = torch._shape_as_tensor(inp)
        h, w = shape[2], shape[3]
        rows, top = _pad_index(h, _padded(h, self.multiple, self.least))
        cols, left = _pad_index(w, _padded(w, self.multiple, self.least))
        padded = inp.index_select(2, rows).index_select(3, cols)
        with NormStats(self.net):  # instance norm exact on constant maps, as predict runs it
            out = self.net(padded.half()).float() if self.half else self.net(padded)
        s = self.scale
        out = out.index_select(2, torch.arange(h * s) + top * s).index_select(3, torch.arange(w * s) + left * s)
        rgb_out = self.images.from_network(out, inp if self.images.output_uses_input else None, extra)
        return rgb_out.clamp(-1, 1).add(1).mul(0.5)


def check_inputs(in_channels: int = 3) -> list[np.ndarray]:
    """The float32 NCHW inputs in [0, 1] an export is checked on (seeded): RGB at every
    size of :data:`CHECK_SIZES`, a batch of two, and a grey image."""
    rng = np.random.default_rng(0)
    inputs = [rng.random((1, 3, h, w), dtype=np.float32) for h, w in CHECK_SIZES]
    inputs.append(rng.random((2, 3, 19, 11), dtype=np.float32))
    inputs.append(rng.random((1, 1, 23, 17), dtype=np.float32))
    return inputs


def parity_check(session: Any, translate: Any, tolerance: float, images: Any = None) -> list[tuple[tuple[int, ...], float]]:
    """Run every :func:`check_inputs` array through the ONNX Runtime ``session`` and
    through ``translate`` (a Translator: float tensors in, float tensors out, before any
    quantisation), with seeded values of the inputs beyond the image that ``images`` (the
    task) declares; returns (input shape, largest |difference|) per input, and raises
    ValueError (naming the shape) above ``tolerance``."""
    found = []
    gen = torch.Generator().manual_seed(1)
    for x in check_inputs():
        extra = images.example_inputs(x.shape[0], x.shape[2], x.shape[3], gen) if images is not None else {}
        got = session.run(["output"], {"input": x, **{k: v.numpy() for k, v in extra.items()}})[0]
        expected = translate(torch.from_numpy(x), **extra).numpy()
        if got.shape != expected.shape:
            raise ValueError(f"output shape {got.shape} for input {x.shape}, predict gives {expected.shape}")
        diff = float(np.abs(got.astype(np.float64) - expected).max())
        if not diff <= tolerance:
            raise ValueError(f"max |ONNX Runtime - predict| = {diff:.3g} at input {x.shape} (tolerance {tolerance:g})")
        found.append((x.shape, diff))
    return found
