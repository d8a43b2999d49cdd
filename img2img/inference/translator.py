"""The :class:`Translator`: a loaded generator that translates images of any size, tiled and
batched, and :func:`load`, which builds one from a model on disk or on the Hub.

What a call does, for every task:

1. Each input becomes RGB in [0, 1] (grayscale is repeated to three channels, alpha is
   composited on white; see :mod:`~img2img.inference.adapters`), then [-1, 1], the
   network's range.
2. **Any size.** The network's size contract (:mod:`img2img.nets.contract`) says which
   sizes it takes; the input is padded to fit, by reflection (replication where
   reflection is impossible), and the output is cropped back, so its size is the input
   size (times ``scale`` for super-resolution) for every size from 1x1 up.
3. **Tiles** (``tile > 0``): see :mod:`~img2img.inference.tiling`. Tiles cover the image
   padded as a whole-image call pads it and start on the network's size multiple; their
   overlap is what the network's receptive field needs unless given, and a network that
   normalises by image statistics gets the whole image's (see
   :mod:`~img2img.inference.passes`). Windows of one size go through the network
   ``batch_size`` at a time; outputs are blended in a band one tile row high and written
   into the preallocated output (in the caller's dtype).
4. **Batches**: images of the same size (untiled) go through the network together,
   ``batch_size`` at a time; other sizes are grouped by size.
5. The task says how an RGB image becomes the network's input and its output RGB again
   (:meth:`~img2img.tasks.base.Task.to_network`, ``from_network``; with
   ``output_uses_input`` the input's own pixels take part, as colorization recombines the
   input's lightness with the predicted colour). Everything is clamped to [0, 1] and
   returned in the input's kind.

Networks run in eval mode (dropout off, BatchNorm with its running statistics) under
``torch.inference_mode()``. ``train_mode_norm=True`` instead reproduces what the pix2pix
paper did at test time: BatchNorm normalises with the statistics of the batch being
translated (here: of each padded image or tile, and of the whole batch when several go
together) and dropout stays on, so outputs are random unless you seed torch. It works on
a private copy of the network whose BatchNorm layers keep no running statistics, so the
loaded weights (and ``save_pretrained``) are never changed by it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from img2img import model_io
from img2img.errors import UserError
from img2img.inference.adapters import Sink, Source, prepare_io
from img2img.inference.extras import Extras, check_names, cut_extras, split_extras
from img2img.inference.loading import read_model, resolve_device
from img2img.inference.passes import auto_overlap, run_tiles, warn_if_short
from img2img.inference.tiling import Canvas, check_tiling, plan_image
from img2img.log import get_logger
from img2img.nets.contract import forward_padded, size_contract
from img2img.nets.receptive import reach

log = get_logger(__name__)


def load(
    path: str | Path,
    device: str | torch.device = "auto",
    direction: str = "AtoB",
    **options: Any,
) -> Translator:
    """A :class:`Translator` for the model at ``path`` (see
    :func:`~img2img.inference.loading.find_model`): a local run, model or checkpoint
    directory, or ``hf://owner/name[@revision]`` on the Hub.

    ``options`` are the Translator's: ``tile``, ``tile_overlap``, ``batch_size``,
    ``train_mode_norm``, ``consistent_norm``. Only safetensors weights are read; nothing
    is unpickled.
    """
    config, generators, dev = read_model(path, device)
    return Translator(config, generators, device=dev, direction=direction, **options)


def _train_mode_copy(net: nn.Module) -> nn.Module:
    """A copy of ``net`` in train mode whose BatchNorm layers use batch statistics and keep
    none (so nothing is updated), and whose dropout is on."""
    net = copy.deepcopy(net)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.track_running_stats = False
            module.running_mean = None
            module.running_var = None
            module.num_batches_tracked = None
    return net.train()


class Translator:
    """A loaded generator that translates images of any size (see the module docstring).

    Build it with :func:`load` or :meth:`from_pretrained`; call it on images.

    - ``device``: ``auto`` (cuda when available, else cpu), ``cpu``, ``cuda``, ``cuda:1``.
    - ``direction``: which generator translates, for tasks with one per direction
      (``AtoB`` or ``BtoA``; the task maps it to a generator).
    - ``tile``: tile side in input pixels (0: the whole image at once); rounded up to a
      multiple of the network's ``size_multiple`` (and at least its ``min_size``).
    - ``tile_overlap``: least overlap between neighbouring tiles, in input pixels;
      smaller than ``tile``. None (default): what the network needs, from its measured
      receptive field (see :mod:`~img2img.inference.passes`); an overlap or tile too
      small for it is warned about.
    - ``batch_size``: tiles, or same-size images, per network call.
    - ``train_mode_norm``: False (default): eval mode, dropout off, BatchNorm with its
      running statistics. True: the pix2pix paper's test-time behaviour, BatchNorm with
      the statistics of the batch being translated and dropout on (random outputs unless
      torch is seeded); runs on a copy, the loaded weights never change.
    - ``consistent_norm``: True (default): a tiled image is normalised with the
      statistics of the whole image wherever the network normalises by image statistics
      (instance norm, group norm, batch norm in train mode), gathered tile by tile first.
      False: each tile with its own (what tiling did before).

    The three size options are defaults that each call can override.
    """

    def __init__(
        self,
        config: Any,
        generators: dict[str, nn.Module],
        *,
        device: str | torch.device = "auto",
        direction: str = "AtoB",
        tile: int = 0,
        tile_overlap: int | None = None,
        batch_size: int = 1,
        train_mode_norm: bool = False,
        consistent_norm: bool = True,
    ) -> None:
        check_tiling(tile, tile_overlap, batch_size)
        from img2img.inference.external import External, PlainImages
        from img2img.tasks import build_task

        self.config = config
        self.external = config if isinstance(config, External) else None
        self.task = PlainImages(config) if self.external else build_task(config)
        self.device = resolve_device(device)
        self.generators = generators
        for net in generators.values():
            net.to(self.device).eval()
        self.direction = direction
        self.net = generators[self.task.generator_for(direction)]
        self.task.check_translatable(self.net)
        self.tile, self.tile_overlap, self.batch_size = tile, tile_overlap, batch_size
        self.train_mode_norm, self.consistent_norm = train_mode_norm, consistent_norm
        self._runner = _train_mode_copy(self.net) if train_mode_norm else self.net
        self.contract = size_contract(self._runner, self.device)
        self.scale, self.size_multiple = self.contract.scale, self.contract.multiple
        self.in_channels, self.out_channels = self.contract.in_channels, self.contract.out_channels
        spatial = [n for n, kind in self.task.inference_inputs.items() if kind == "spatial"]
        if self.scale != 1 and (self.task.output_uses_input or spatial):
            # _finish reads the input (and spatial inputs) at the output's rows
            raise UserError(f"the {self.task.name} task reads its input back at the output's size, "
                            f"which a x{self.scale} network does not keep")

    @property
    def min_size(self) -> int:
        """The smallest input side the network accepts (a multiple of ``size_multiple``;
        see :mod:`img2img.nets.contract`). A ResNet generator, for one, reflection-pads
        inside its residual blocks at 1/4 of the input size, so it needs 8 px where its
        ``size_multiple`` is 4."""
        return self.contract.min_size

    def __repr__(self) -> str:
        return (
            f"Translator(task={self.task.name!r}, direction={self.direction!r}, "
            f"device={str(self.device)!r}, scale={self.scale}, "
            f"size_multiple={self.size_multiple}, tile={self.tile})"
        )

    def for_direction(self, direction: str) -> Translator:
        """This model translating in ``direction`` (the same generators and settings; made
        once per direction, then reused)."""
        if direction == self.direction:
            return self
        siblings = self.__dict__.setdefault("_siblings", {})
        if direction not in siblings:
            siblings[direction] = Translator(
                self.config, self.generators, device=self.device, direction=direction,
                tile=self.tile, tile_overlap=self.tile_overlap, batch_size=self.batch_size,
                train_mode_norm=self.train_mode_norm, consistent_norm=self.consistent_norm)
        return siblings[direction]

    # ---------------------------------------------------------------- save / load
    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> Translator:
        """Same as :func:`load`."""
        return load(path, **kwargs)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write an exported model directory (all generators; see :mod:`img2img.model_io`).
        An existing model directory there is replaced; any other existing path is refused.
        A third-party model's weights file already is its saved form (a UserError)."""
        if self.external:

            raise UserError(f"{self.external.source} is a third-party model: its weights file is what to keep")
        return model_io.save_model(directory, self.config, self.generators)

    # ---------------------------------------------------------------- translate
    def __call__(
        self,
        images: Any,
        *,
        tile: int | None = None,
        tile_overlap: int | None = None,
        batch_size: int | None = None,
        direction: str | None = None,
        **inputs: Any,
    ) -> Any:
        """Translate one image or a batch; ``tile``, ``tile_overlap``, ``batch_size`` and
        ``direction`` (the generator, for a model with one per direction: ``"AtoB"``,
        ``"BtoA"``) override the defaults for this call. ``inputs`` are the model's inputs beyond the
        image (the task's ``inference_inputs``, e.g. ``domain="blond"`` for a multi-domain
        model), each one value for all images or one per image (see
        :mod:`~img2img.inference.extras`). Returns the same kind of object it was given."""
        if direction is not None and direction != self.direction:
            return self.for_direction(direction)(
                images, tile=tile, tile_overlap=tile_overlap, batch_size=batch_size, **inputs)
        tile = self.tile if tile is None else tile
        tile_overlap = self.tile_overlap if tile_overlap is None else tile_overlap
        batch_size = self.batch_size if batch_size is None else batch_size
        check_tiling(tile, tile_overlap, batch_size)
        check_names(self.task, inputs)
        sources, sinks, pack = prepare_io(images, self.scale)
        extras = split_extras(self.task, inputs, [(s.height, s.width) for s in sources])
        self.run(sources, sinks, tile, tile_overlap, batch_size, extras)
        return pack()

    def run(
        self,
        sources: Sequence[Source],
        sinks: Sequence[Sink],
        tile: int,
        tile_overlap: int | None,
        batch_size: int,
        extras: Sequence[Extras] | None = None,
    ) -> None:
        """Translate each source into the sink of the same index (the core of ``__call__``),
        with each source's inputs beyond the image (``extras``, by index)."""
        eff_tile = 0
        if tile:
            eff_tile = self.contract.padded(tile)
            if eff_tile != tile:
                log.debug("tile %d rounded up to %d (a multiple of %d)", tile, eff_tile, self.size_multiple)
        order = sorted(range(len(sources)), key=lambda i: (sources[i].height, sources[i].width))
        tiled = eff_tile and any(max(sources[i].height, sources[i].width) > eff_tile for i in order)
        if tiled and tile_overlap is None:
            tile_overlap = auto_overlap(reach(self._runner, self.device), eff_tile, self.size_multiple)
        canvases = [
            Canvas(sources[i], sinks[i], plan_image(sources[i].height, sources[i].width, eff_tile,
                                                    tile_overlap or 0, self.scale, self.size_multiple,
                                                    self.contract.padded),
                   self.out_channels, self._finish, extras[i] if extras else None)
            for i in order
        ]
        if tiled:
            least = min(c.plan.least_overlap for c in canvases if not c.plan.single)
            warn_if_short(reach(self._runner, self.device), eff_tile, least, self.size_multiple)
        with torch.inference_mode():
            run_tiles(canvases, batch_size, self.forward, self.device, self._runner, self.consistent_norm)

    def forward(self, rgb01: torch.Tensor, extra: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Network output (its own channels and range) for an N3HW batch in [0, 1] of any
        size (and its inputs beyond the image, ``extra``): the task's input transform, pad
        to the multiple, run, crop."""
        return forward_padded(self._runner, self.task.to_network(rgb01 * 2 - 1, extra), self.min_size)

    def _finish(self, out: torch.Tensor, source: Source, y0: int, y1: int, extras: Extras | None = None) -> torch.Tensor:
        """Blended network output for output rows ``y0:y1`` -> RGB in [0, 1] (3 x rows x W);
        spatial inputs beyond the image are cut to the same rows."""
        x = None
        extra = cut_extras(extras, slice(y0, y1), slice(None), out.device) if extras else None
        if self.task.output_uses_input:
            rgb = source.crop(y0, y1, 0, source.width, out.device).unsqueeze(0) * 2 - 1
            x = self.task.to_network(rgb, extra)
        rgb = self.task.from_network(out.unsqueeze(0), x, extra)[0]
        return rgb.clamp(-1, 1).add(1).mul_(0.5)
