"""Normalisation by image statistics, made independent of how an image is cut.

Instance norm (CycleGAN, CUT), group norm, and batch norm in train mode (the pix2pix
paper's test-time behaviour) normalise each feature map by the mean and variance of the
image they see. Run on a tile, they use the tile's statistics, so neighbouring tiles get
different colours. :class:`NormStats` fixes that with forward hooks on those layers:

- **gather**: each layer adds the statistics of its input over the *core* of every tile
  (a region of the tile in input pixels; the cores of an image's tiles partition the
  image) to running totals per image (count, mean and sum of squared deviations in
  float64, merged with Chan's parallel formula), so memory stays that of one tile;
- **frozen**: each layer normalises with the statistics gathered for the image a tile
  belongs to, exactly as it would have over the whole image.

A layer's statistics depend on what the layers before it output, and those on the
statistics they use, so they are gathered one layer per pass, in the order the layers
run: in each pass the layers already gathered normalise with their whole-image
statistics, the first one not yet gathered gathers, and the forward stops right there
(:meth:`NormStats.call`), so a pass costs only the network up to that layer. Every
layer's statistics are then exactly the whole image's (up to the tiles' reach across
their borders), whatever the architecture. (Refining all layers together, pass after
pass, is no shortcut: on deep networks the later layers' statistics swing widely before
they settle, and a few such passes give tiles far worse than their own statistics.)
When each image is a single tile, one pass gathers every layer at once
(``all_layers``).

Outside these passes (and for an image that is one tile) instance and group norm use
the tile's own statistics, computed shift-invariantly (relative to each group's first
value): the same numbers up to rounding, but exactly zero for a constant map, where the
usual formula divides rounding noise by ``sqrt(eps)`` (a 1 x 1 image, replicated to the
network's minimum size, makes every map constant, and its output would be noise that
differs between PyTorch and ONNX Runtime, or float32 and float64). Batch norm in train
mode keeps its own behaviour there (statistics over the whole batch).

Batch norm with running statistics in eval mode (the default at inference) normalises
with constants and needs none of this; :func:`image_norm_layers` lists only the layers
that use image statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

#: (top, bottom, left, right) of a tile's core, in the tile's input pixels.
Region = tuple[int, int, int, int]


def uses_image_statistics(module: nn.Module) -> bool:
    """Whether ``module`` normalises by the statistics of its input (not by constants)."""
    if isinstance(module, nn.GroupNorm):
        return True
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return module.training or not module.track_running_stats
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.training or module.running_mean is None
    return False


def image_norm_layers(net: nn.Module) -> list[nn.Module]:
    """The layers of ``net`` that normalise by image statistics, in module order."""
    return [m for m in net.modules() if uses_image_statistics(m)]


def _groups(module: nn.Module) -> int:
    return module.num_groups if isinstance(module, nn.GroupNorm) else module.num_features


class _Totals:
    """Count, mean and sum of squared deviations per group, merged tile by tile (float64)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        """``x``: groups x values."""
        x = x.double()
        n_b = x.shape[1]
        if n_b == 0:
            return
        mean_b = x.mean(1)
        m2_b = ((x - mean_b[:, None]) ** 2).sum(1)
        if self.mean is None:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
        self.n = n

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, biased variance) per group, float32."""
        assert self.mean is not None and self.m2 is not None
        return self.mean.float(), (self.m2 / self.n).float()


def _normalise(module: nn.Module, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """``x`` (N C H W) normalised with per-sample, per-group ``mean``/``var`` (N x G), then
    the layer's affine transform."""
    n, c = x.shape[:2]
    g = mean.shape[1]
    y = x.float().reshape(n, g, -1) - mean[:, :, None]  # a new tensor: the rest is in place
    y.mul_(torch.rsqrt(var[:, :, None] + module.eps))
    y = y.reshape(x.shape)
    weight = getattr(module, "weight", None)
    if weight is not None:
        shape = (1, c) + (1,) * (x.ndim - 2)
        y.mul_(weight.float().reshape(shape)).add_(module.bias.float().reshape(shape))
    return y.to(x.dtype)


def _own_statistics(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-sample, per-group mean and variance of ``x``, relative to each group's first
    value (exact for constant maps); None for batch norm (its statistics span the batch)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return None
    xf = x.float().reshape(x.shape[0], _groups(module), -1)
    ref = xf[:, :, :1]
    var, m = torch.var_mean(xf - ref, dim=-1, correction=0)
    return ref[:, :, 0] + m, var


class _Stop(Exception):
    """Ends a gathering pass's forward after the layer it gathers."""


class NormStats:
    """Gather image statistics of a network's normalising layers over tile cores, then
    normalise every tile with them (see the module docstring).

    Use as a context manager (it adds forward hooks and removes them), and before each
    network call say which image and core each sample of the batch is
    (:meth:`set_batch`)."""

    def __init__(self, net: nn.Module) -> None:
        self.layers = image_norm_layers(net)
        self.mode = "off"
        self.keys: list[Hashable] = []
        self.regions: list[Region] = []
        self.tile_hw = (1, 1)
        self.totals: dict[tuple[int, Hashable], _Totals] = {}
        self.frozen: dict[tuple[int, Hashable], tuple[torch.Tensor, torch.Tensor]] = {}
        self.done: set[int] = set()  # layers whose statistics are gathered
        self.target: int | None = None  # the layer this pass gathers
        self.all_layers = False
        self._handles: list = []

    def __bool__(self) -> bool:
        return bool(self.layers)

    def __enter__(self) -> NormStats:
        self._handles = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(self.layers)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # ------------------------------------------------------------------ driving
    def set_batch(self, keys: list[Hashable], regions: list[Region], tile_hw: tuple[int, int]) -> None:
        """The image (any hashable) and the core region of each sample of the next batch,
        and the height and width of the tiles in input pixels."""
        self.keys, self.regions, self.tile_hw = list(keys), list(regions), tile_hw

    @property
    def complete(self) -> bool:
        """Whether every layer's statistics are gathered (or a pass ran through without
        meeting one that was not)."""
        return len(self.done) == len(self.layers)

    @contextmanager
    def gathering(self, all_layers: bool = False) -> Iterator[None]:
        """A pass that gathers the first layer not yet gathered (run each forward through
        :meth:`call`); with ``all_layers``, every layer at once, each normalising with the
        tile's own statistics (exact when every image is one tile)."""
        self.mode, self.totals, self.target, self.all_layers = "gather", {}, None, all_layers
        try:
            yield
        finally:
            self.mode = "off"
        self.frozen.update((key, totals.result()) for key, totals in self.totals.items())
        self.done.update(index for index, _ in self.totals)
        if self.target is None:  # nothing left to gather on the path the inputs take
            self.done.update(range(len(self.layers)))
        self.totals = {}

    def call(self, forward: Callable[..., Any], *args: Any) -> Any:
        """``forward(*args)``, or None when a gathering pass stopped it early."""
        try:
            return forward(*args)
        except _Stop:
            return None

    @contextmanager
    def applying(self) -> Iterator[None]:
        """A pass in which every layer normalises with the frozen statistics."""
        self.mode = "frozen"
        try:
            yield
        finally:
            self.mode = "off"

    # ------------------------------------------------------------------ the hook
    def _hook(self, index: int):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
            x = inputs[0]
            if self.mode == "gather" and (self.all_layers or index not in self.done):
                self._gather(index, module, x)
                if not self.all_layers:
                    if self.target not in (None, index):
                        raise RuntimeError(f"normalisation layers ran in another order ({index} before {self.target})")
                    self.target = index
                    raise _Stop
            stats = [self.frozen.get((index, key)) for key in self.keys] if self.mode != "off" else [None]
            if all(s is not None for s in stats):
                mean = torch.stack([s[0] for s in stats]).to(x.device)
                var = torch.stack([s[1] for s in stats]).to(x.device)
                return _normalise(module, x, mean, var)
            own = _own_statistics(module, x)  # the tile's own
            return None if own is None else _normalise(module, x, *own)

        return hook

    def _gather(self, index: int, module: nn.Module, x: torch.Tensor) -> None:
        th, tw = self.tile_hw
        fh, fw = x.shape[-2:]
        g = _groups(module)
        for i, (key, (y0, y1, x0, x1)) in enumerate(zip(self.keys, self.regions)):
            a, b = round(y0 * fh / th), round(y1 * fh / th)
            c, d = round(x0 * fw / tw), round(x1 * fw / tw)
            core = x[i, :, a:b, c:d].detach()
            self.totals.setdefault((index, key), _Totals()).add(core.reshape(g, -1))
