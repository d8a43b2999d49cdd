"""Inference: :class:`Translator` (any size, tiled, batched), :func:`load`, ``img2img predict``.

    import img2img
    t = img2img.load("runs/facades")             # run dir, model dir, checkpoint dir
    t = img2img.load("hf://owner/name@v1")       # a Hub model: explicit, revision optional
    out = t(Image.open("photo.jpg"))              # PIL in -> PIL out
    outs = t([a, b, c], tile=512, tile_overlap=32, batch_size=4)

What a call does, for every task:

1. Each input becomes RGB in [0, 1] (grayscale is repeated to three channels, alpha is
   composited on white), then [-1, 1], the network's range.
2. **Any size.** The network needs sizes that are multiples of its ``size_multiple``
   (U-Net ``2**num_downs``, ResNet 4, SRResNet 1). The input is padded to the next
   multiple, split evenly between top/bottom and left/right, by reflection; along an axis
   where reflection is impossible (the pad is not smaller than the image, e.g. a 1x1 image
   for a U-Net) by replicating the edge. The output is cropped back, so its size is the
   input size (times ``scale`` for super-resolution) for every size from 1x1 up.
3. **Tiles** (``tile > 0``): the image is cut into ``tile x tile`` windows (``tile`` in input
   pixels, rounded up to a multiple of ``size_multiple``) that overlap by at least
   ``tile_overlap`` pixels, spread evenly so that the last one ends at the image edge.
   Each window's output gets a weight that is 1 inside and, on each side that has a
   neighbour, falls to ~0 across the overlap: a raised-cosine ramp over the middle half of
   the overlap, ~0 (1e-6) in its outer quarter, where a window's own border effects are.
   Weights are normalised by their sum, so the seams blend. (A linear ramp over the whole
   overlap gives border pixels enough weight to cost ~40 dB against the untiled result on
   an SR network; this profile gives > 80 dB at 16 px overlap for the same network.) Weights are separable, so they are normalised per axis (1-D arrays) and
   no full-size weight map exists. Windows of one size go through the network
   ``batch_size`` at a time. Outputs are accumulated in float32 in a band one tile row
   high; rows that no later tile touches are finished and written into the preallocated
   output (in the caller's dtype: uint8 stays uint8), so peak memory grows with the tile
   size and the image width, not with the image area (plus the output itself).
4. **Batches**: images of the same size (untiled) go through the network together,
   ``batch_size`` at a time; other sizes are grouped by size.
5. The task says how an RGB image becomes the network's input and its output RGB again
   (:meth:`~img2img.tasks.base.Task.to_network`, ``from_network``): most networks take and
   give the image itself (a one-channel network its luma; a linear SR output is clamped);
   colorization predicts ab from the input's Lab lightness and recombines the *input's* L
   with the predicted ab.
   Everything is clamped to [0, 1] and returned in the input's kind: PIL -> PIL (RGB),
   numpy uint8/uint16/float HxWx3 -> the same dtype, float tensors 3xHxW or Nx3xHxW in
   [0, 1] -> tensors of the same dtype on the same device; a list gives a list, an
   NxHxWxC array or Nx3xHxW tensor gives one.

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
import glob
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from img2img import model_io
from img2img.errors import UserError
from img2img.log import get_logger
from img2img.nets.contract import forward_padded, size_contract

log = get_logger(__name__)

# Loading from the Hugging Face Hub is explicit: hf://owner/name, or hf://owner/name@revision.
HUB_PREFIX = "hf://"
HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A branch, a tag or a commit hash (branches may hold slashes: refs/pr/1).
HUB_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]*$")
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".pkl")

# Output rows finished (clamped, colour-converted, written to the sink) at a time.
EMIT_ROWS = 256

# Smallest blending weight, so that every covered pixel has a positive total weight.
RAMP_FLOOR = 1e-6



# --------------------------------------------------------------------------- devices, loading


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise UserError(f"invalid device {device!r}: {err}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r}: no CUDA device is available; use cpu or auto")
    return dev


def find_model(path: str | Path) -> Path:
    """The exported model directory behind ``path``: a run, model or checkpoint directory,
    the ``config.json``/``model.safetensors`` file of one, or a Hugging Face Hub model
    named explicitly, ``hf://owner/name`` or ``hf://owner/name@revision`` (see
    :func:`fetch_hub_model`). A local path that does not exist is a "model not found"
    UserError, whatever it looks like: nothing is fetched without the ``hf://`` prefix."""
    text = str(path)
    if text.startswith(HUB_PREFIX):
        return fetch_hub_model(*parse_hub_model(text))
    local = Path(path).expanduser()
    if local.exists():
        if local.is_file():
            if local.name in (model_io.CONFIG_FILE, model_io.WEIGHTS_FILE):
                return model_io.resolve_model_dir(local.parent)
            if local.suffix.lower() in PICKLE_SUFFIXES:
                raise UserError(
                    f"{local} is a pickle file and is never loaded directly; import reference "
                    "weights with img2img.convert.export_reference_model(weights, config, out_dir) "
                    "and load that directory"
                )
            raise UserError(
                f"{local} is a file, not a model; give the directory that holds "
                f"{model_io.CONFIG_FILE} and {model_io.WEIGHTS_FILE} (or a run directory)"
            )
        return model_io.resolve_model_dir(local)
    raise UserError(
        f"model not found: {text} does not exist (give a run directory, an exported model "
        f"directory or a checkpoint directory; a model on the Hugging Face Hub is named "
        f"explicitly: {HUB_PREFIX}owner/name or {HUB_PREFIX}owner/name@revision)"
    )


def parse_hub_model(text: str) -> tuple[str, str | None]:
    """``hf://owner/name`` -> ``("owner/name", None)``; ``hf://owner/name@rev`` ->
    ``("owner/name", "rev")``, where ``rev`` is a branch, a tag or a commit hash."""
    repo_id, at, revision = text[len(HUB_PREFIX):].partition("@")
    if not HUB_REPO_ID.match(repo_id) or (at and (not HUB_REVISION.match(revision) or ".." in revision)):
        raise UserError(
            f"model {text!r}: expected {HUB_PREFIX}owner/name or {HUB_PREFIX}owner/name@revision "
            "(a branch, a tag or a commit hash)"
        )
    return repo_id, (revision if at else None)


def fetch_hub_model(repo_id: str, revision: str | None = None) -> Path:
    """Fetch the exported model ``repo_id`` (at ``revision``: a branch, tag or commit hash;
    the default branch when None) from the Hugging Face Hub into its local cache and return
    that folder. Only ``config.json`` and ``model.safetensors`` are fetched, nothing
    pickled; one log line says what was fetched (repo, revision, commit, local folder)."""
    ref = f"{HUB_PREFIX}{repo_id}" + (f"@{revision}" if revision else "")
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(
            f"model {ref}: loading from the Hugging Face Hub needs huggingface_hub "
            "(pip install huggingface_hub)"
        ) from None
    try:
        local = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=[model_io.CONFIG_FILE, model_io.WEIGHTS_FILE],
        )
    except Exception as err:  # offline, no network, no such repo or revision, no access
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = (
            " (HF_HUB_OFFLINE is set and the model is not in the local Hub cache; unset it "
            "or download the model directory yourself)"
            if offline
            else " (check the repo id, the revision, your network and HF_TOKEN for private repos)"
        )
        raise UserError(
            f"model {ref} could not be fetched from the Hugging Face Hub{hint}: "
            f"{type(err).__name__}: {reason}"
        ) from None
    local = Path(local)
    missing = [n for n in (model_io.CONFIG_FILE, model_io.WEIGHTS_FILE) if not (local / n).is_file()]
    if missing:
        raise UserError(
            f"model {ref}: the Hub repo has no {' and '.join(missing)} at its top level (an "
            f"img2img model is {model_io.CONFIG_FILE} + {model_io.WEIGHTS_FILE}, as "
            "`img2img export --format safetensors` writes it)"
        )
    # The Hub cache keeps each snapshot in a folder named by its commit hash.
    commit = local.name if re.fullmatch(r"[0-9a-f]{40}", local.name) else "unknown"
    log.info("fetched %s from the Hugging Face Hub (revision %s, commit %s) into %s",
             f"{HUB_PREFIX}{repo_id}", revision or "main", commit, local)
    return local


def load(
    path: str | Path,
    device: str | torch.device = "auto",
    direction: str = "AtoB",
    **options: Any,
) -> Translator:
    """A :class:`Translator` for the model at ``path`` (see :func:`find_model`): a local
    run, model or checkpoint directory, or ``hf://owner/name[@revision]`` on the Hub.

    ``options`` are the Translator's: ``tile``, ``tile_overlap``, ``batch_size``,
    ``train_mode_norm``. Only safetensors weights are read; nothing is unpickled.
    """
    directory = find_model(path)
    dev = resolve_device(device)
    config, generators = model_io.load_model(directory, str(dev))
    return Translator(config, generators, device=dev, direction=direction, **options)


# --------------------------------------------------------------------------- the translator


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


def check_tiling(tile: int, tile_overlap: int, batch_size: int) -> None:
    if tile < 0:
        raise UserError(f"tile: must be >= 0 (0: whole image), got {tile}")
    if tile_overlap < 0:
        raise UserError(f"tile overlap: must be >= 0, got {tile_overlap}")
    if tile and tile_overlap >= tile:
        raise UserError(
            f"tile overlap ({tile_overlap}) must be smaller than the tile size ({tile})"
        )
    if batch_size < 1:
        raise UserError(f"batch size: must be >= 1, got {batch_size}")


class Translator:
    """A loaded generator that translates images of any size (see the module docstring).

    Build it with :func:`load` or :meth:`from_pretrained`; call it on images.

    - ``device``: ``auto`` (cuda when available, else cpu), ``cpu``, ``cuda``, ``cuda:1``.
    - ``direction``: CycleGAN's ``G_A`` (``AtoB``) or ``G_B`` (``BtoA``).
    - ``tile``: tile side in input pixels (0: the whole image at once); rounded up to a
      multiple of the network's ``size_multiple`` (and at least its ``min_size``).
    - ``tile_overlap``: least overlap between neighbouring tiles, in input pixels;
      smaller than ``tile``. 16 or more for SR, more for U-Nets (they see a tile alone).
    - ``batch_size``: tiles, or same-size images, per network call.
    - ``train_mode_norm``: False (default): eval mode, dropout off, BatchNorm with its
      running statistics. True: the pix2pix paper's test-time behaviour, BatchNorm with
      the statistics of the batch being translated and dropout on (random outputs unless
      torch is seeded); runs on a copy, the loaded weights never change.

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
        tile_overlap: int = 32,
        batch_size: int = 1,
        train_mode_norm: bool = False,
    ) -> None:
        check_tiling(tile, tile_overlap, batch_size)
        from img2img.tasks import build_task

        self.config = config
        self.task = build_task(config)
        self.device = resolve_device(device)
        self.generators = generators
        for net in generators.values():
            net.to(self.device).eval()
        self.direction = direction
        self.net = generators[self.task.generator_for(direction)]
        self.task.check_translatable(self.net)
        self.tile, self.tile_overlap, self.batch_size = tile, tile_overlap, batch_size
        self.train_mode_norm = train_mode_norm
        self._runner = _train_mode_copy(self.net) if train_mode_norm else self.net
        self.contract = size_contract(self._runner, self.device)
        self.scale, self.size_multiple = self.contract.scale, self.contract.multiple
        self.in_channels, self.out_channels = self.contract.in_channels, self.contract.out_channels

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

    # ---------------------------------------------------------------- save / load
    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> Translator:
        """Same as :func:`load`."""
        return load(path, **kwargs)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write an exported model directory (all generators; see :mod:`img2img.model_io`).
        An existing model directory there is replaced; any other existing path is refused."""
        return model_io.save_model(directory, self.config, self.generators)

    # ---------------------------------------------------------------- translate
    def __call__(
        self,
        images: Any,
        *,
        tile: int | None = None,
        tile_overlap: int | None = None,
        batch_size: int | None = None,
    ) -> Any:
        """Translate one image or a batch; keyword arguments override the defaults for
        this call. Returns the same kind of object it was given."""
        tile = self.tile if tile is None else tile
        tile_overlap = self.tile_overlap if tile_overlap is None else tile_overlap
        batch_size = self.batch_size if batch_size is None else batch_size
        check_tiling(tile, tile_overlap, batch_size)
        sources, sinks, pack = prepare_io(images, self.scale)
        self.run(sources, sinks, tile, tile_overlap, batch_size)
        return pack()

    def run(
        self,
        sources: Sequence[Source],
        sinks: Sequence[Sink],
        tile: int,
        tile_overlap: int,
        batch_size: int,
    ) -> None:
        """Translate each source into the sink of the same index (the core of ``__call__``)."""
        eff_tile = 0
        if tile:
            eff_tile = self.contract.padded(tile)
            if eff_tile != tile:
                log.debug("tile %d rounded up to %d (a multiple of %d)", tile, eff_tile, self.size_multiple)
        order = sorted(range(len(sources)), key=lambda i: (sources[i].height, sources[i].width))
        canvases = [
            Canvas(sources[i], sinks[i], plan_tiles(sources[i].height, sources[i].width,
                                                     eff_tile, tile_overlap, self.scale),
                   self.out_channels, self._finish)
            for i in order
        ]
        with torch.inference_mode():
            batch: list[tuple[Canvas, int, int]] = []
            for job in _jobs(canvases):
                if batch and (len(batch) == batch_size or _job_shape(job) != _job_shape(batch[0])):
                    self._run_batch(batch)
                    batch = []
                batch.append(job)
            if batch:
                self._run_batch(batch)

    def _run_batch(self, jobs: list[tuple[Canvas, int, int]]) -> None:
        tiles = []
        for canvas, row, col in jobs:
            y0, x0 = canvas.plan.ys[row], canvas.plan.xs[col]
            tiles.append(canvas.source.crop(y0, y0 + canvas.plan.th, x0, x0 + canvas.plan.tw,
                                            self.device))
        out = self.forward(torch.stack(tiles))
        for (canvas, row, col), tile_out in zip(jobs, out):
            canvas.add(row, col, tile_out)

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        """Network output (its own channels and range) for an N3HW batch in [0, 1] of any
        size: the task's input transform, pad to the multiple, run, crop."""
        return forward_padded(self._runner, self.task.to_network(rgb01 * 2 - 1), self.min_size)

    def _finish(self, out: torch.Tensor, source: Source, y0: int, y1: int) -> torch.Tensor:
        """Blended network output for output rows ``y0:y1`` -> RGB in [0, 1] (3 x rows x W)."""
        x = None
        if self.task.output_uses_input:
            rgb = source.crop(y0, y1, 0, source.width, out.device).unsqueeze(0) * 2 - 1
            x = self.task.to_network(rgb)
        rgb = self.task.from_network(out.unsqueeze(0), x)[0]
        return rgb.clamp(-1, 1).add(1).mul_(0.5)


# --------------------------------------------------------------------------- tiles


@dataclass
class TilePlan:
    """Where the tiles of one image go, in input pixels, and their blending weights along
    each axis in output pixels (``wy[i]`` for tile row i, ``wx[j]`` for tile column j)."""

    ys: list[int]
    xs: list[int]
    th: int
    tw: int
    scale: int
    wy: list[torch.Tensor] = field(repr=False)
    wx: list[torch.Tensor] = field(repr=False)

    @property
    def single(self) -> bool:
        return len(self.ys) == 1 and len(self.xs) == 1


def tile_starts(length: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """Tile starts along one axis and the tile length: one tile when the axis fits, else
    the fewest tiles that overlap by at least ``overlap``, spread evenly, last at the end."""
    if tile <= 0 or length <= tile:
        return [0], length
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    return [math.floor(i * (length - tile) / (n - 1)) for i in range(n)], tile


def edge_ramp(distance: np.ndarray, overlap: float) -> np.ndarray:
    """Weight of a tile's pixel at ``distance`` from an interior edge shared over
    ``overlap`` pixels with a neighbour: ~0 in the outer quarter of the overlap (where the
    tile's own border effects live), a raised cosine over the middle half, 1 beyond.
    Two tiles' ramps over the same overlap sum to exactly 1."""
    margin = overlap / 4
    f = np.clip((distance - margin) / (overlap - 2 * margin), 0.0, 1.0)
    return np.maximum(np.sin(np.pi / 2 * f) ** 2, RAMP_FLOOR)


def blend_weights(starts: list[int], size: int, scale: int) -> list[torch.Tensor]:
    """Per-tile 1-D weights in output pixels: 1 inside, :func:`edge_ramp` over the overlap
    with each neighbour, normalised so that they sum to 1 at every position."""
    n_out = size * scale
    raw = []
    for i, start in enumerate(starts):
        pos = np.arange(n_out, dtype=np.float64) + 0.5
        w = np.ones(n_out)
        if i > 0:
            lo = (starts[i - 1] + size - start) * scale
            if lo > 0:
                w = np.minimum(w, edge_ramp(pos, lo))
        if i + 1 < len(starts):
            hi = (start + size - starts[i + 1]) * scale
            if hi > 0:
                w = np.minimum(w, edge_ramp(n_out - pos, hi))
        raw.append(w)
    total = np.zeros((starts[-1] + size) * scale)
    for start, w in zip(starts, raw):
        total[start * scale : start * scale + n_out] += w
    return [
        torch.from_numpy(w / total[s * scale : s * scale + n_out]).float()
        for s, w in zip(starts, raw)
    ]


def plan_tiles(height: int, width: int, tile: int, overlap: int, scale: int) -> TilePlan:
    ys, th = tile_starts(height, tile, overlap)
    xs, tw = tile_starts(width, tile, overlap)
    return TilePlan(ys, xs, th, tw, scale, blend_weights(ys, th, scale),
                    blend_weights(xs, tw, scale))


def _jobs(canvases: list[Canvas]):
    for canvas in canvases:
        for row in range(len(canvas.plan.ys)):
            for col in range(len(canvas.plan.xs)):
                yield canvas, row, col


def _job_shape(job: tuple[Canvas, int, int]) -> tuple[int, int]:
    return job[0].plan.th, job[0].plan.tw


class Canvas:
    """Blends one image's tile outputs in a float32 band one tile row high, and hands
    finished rows to ``finish`` and then the sink. Tiles must arrive in raster order."""

    def __init__(
        self,
        source: Source,
        sink: Sink,
        plan: TilePlan,
        channels: int,
        finish: Callable[[torch.Tensor, Source, int, int], torch.Tensor],
    ) -> None:
        self.source, self.sink, self.plan = source, sink, plan
        self.channels, self.finish = channels, finish
        self.band: torch.Tensor | None = None
        self.band_top = 0
        self.done_in_row = 0

    def add(self, row: int, col: int, out: torch.Tensor) -> None:
        plan, s = self.plan, self.plan.scale
        if plan.single:
            self._emit(out, 0, out.shape[-2])
            return
        if self.band is None:
            self.band = out.new_zeros(self.channels, plan.th * s, self.source.width * s)
            self.band_top = plan.ys[row] * s
        weight = plan.wy[row].to(out.device)[:, None] * plan.wx[col].to(out.device)[None, :]
        y0 = plan.ys[row] * s - self.band_top
        x0 = plan.xs[col] * s
        self.band[:, y0 : y0 + out.shape[-2], x0 : x0 + out.shape[-1]].addcmul_(out, weight)
        self.done_in_row += 1
        if self.done_in_row == len(plan.xs):
            self.done_in_row = 0
            self._row_done(row)

    def _row_done(self, row: int) -> None:
        plan, s, band = self.plan, self.plan.scale, self.band
        assert band is not None
        last = row + 1 == len(plan.ys)
        final_end = self.source.height * s if last else plan.ys[row + 1] * s
        self._emit(band[:, : final_end - self.band_top], self.band_top, final_end)
        if last:
            self.band = None
            return
        shift = final_end - self.band_top
        carry = band.shape[1] - shift
        band[:, :carry] = band[:, shift:].clone()
        band[:, carry:] = 0
        self.band_top = final_end

    def _emit(self, out: torch.Tensor, y0: int, y1: int) -> None:
        # In slices of rows, so the float copies that finishing makes stay small.
        for a in range(0, y1 - y0, EMIT_ROWS):
            b = min(a + EMIT_ROWS, y1 - y0)
            self.sink.write(y0 + a, y0 + b, self.finish(out[:, a:b], self.source, y0 + a, y0 + b))


# --------------------------------------------------------------------------- inputs, outputs


class Source:
    """One input image kept as given (no full-size float copy); crops come out as float32
    3xhxw tensors in [0, 1] on the compute device."""

    def __init__(self, data: np.ndarray | torch.Tensor, peak: float) -> None:
        self.data = data
        self.peak = peak
        if isinstance(data, np.ndarray):  # H x W x C
            self.height, self.width = data.shape[:2]
        else:  # C x H x W
            self.height, self.width = data.shape[-2:]
        if self.height == 0 or self.width == 0:
            raise ValueError(f"an empty image ({self.height}x{self.width} pixels): nothing to translate")
        if peak == 1:
            _check_unit_range(data)

    def crop(self, y0: int, y1: int, x0: int, x1: int, device: torch.device) -> torch.Tensor:
        if isinstance(self.data, np.ndarray):
            part = np.ascontiguousarray(self.data[y0:y1, x0:x1], dtype=np.float32)
            t = torch.from_numpy(part).to(device).permute(2, 0, 1)
        else:
            t = self.data[:, y0:y1, x0:x1].to(device=device, dtype=torch.float32)
        if self.peak != 1:
            t = t / self.peak
        t = t.clamp(0, 1)
        return t.expand(3, -1, -1) if t.shape[0] == 1 else t


#: Float inputs may stray this far outside [0, 1] (resampling overshoot, rounding) before
#: they are taken for another convention.
RANGE_SLACK = 0.01


def _check_unit_range(data: np.ndarray | torch.Tensor) -> None:
    """Float images are [0, 1]; a 0-255 or [-1, 1] image would be silently clamped into
    garbage, so it is refused with the range found."""
    if isinstance(data, np.ndarray):
        low, high = float(np.min(data)), float(np.max(data))
    else:
        low, high = float(data.min()), float(data.max())
    if not (low >= -RANGE_SLACK and high <= 1 + RANGE_SLACK):  # also catches NaN
        hint = " (0-255 values: divide by 255)" if high > 2 else " ([-1, 1] values: use (x + 1) / 2)" if low < 0 else ""
        raise ValueError(f"float images must be in [0, 1]; this one holds values from {low:g} to {high:g}{hint}")


class Sink:
    """Preallocated output that receives finished rows (3 x rows x W, [0, 1] floats)."""

    def __init__(self, data: np.ndarray | torch.Tensor, peak: float) -> None:
        self.data = data
        self.peak = peak

    def write(self, y0: int, y1: int, rgb01: torch.Tensor) -> None:
        if isinstance(self.data, np.ndarray):
            x = rgb01.permute(1, 2, 0).float().cpu().numpy()
            if self.peak != 1:
                x = np.rint(x * self.peak)
            self.data[y0:y1] = x
        else:
            x = rgb01.to(self.data.device)
            if self.peak != 1:
                x = (x * self.peak).round_()
            self.data[:, y0:y1] = x


_PEAKS = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_TORCH_PEAKS = {torch.uint8: 255.0}


def _numpy_peak(dtype: np.dtype) -> float:
    if dtype in _PEAKS:
        return _PEAKS[dtype]
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise TypeError(
        f"numpy images must be uint8, uint16 or float in [0, 1], got dtype {dtype}"
    )


def _composite_white(rgb: np.ndarray | torch.Tensor, alpha, peak: float):
    return rgb * (alpha / peak) + peak * (1 - alpha / peak)


def _numpy_image(arr: np.ndarray) -> np.ndarray:
    """An HxW or HxWxC (C = 1, 3, 4) array as HxWx1 or HxWx3 (alpha over white)."""
    if arr.ndim == 2:
        return arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise TypeError(
            f"numpy images must be HxW or HxWxC with C = 1, 3 or 4, got shape {arr.shape}"
        )
    if arr.shape[2] == 4:
        peak = _numpy_peak(arr.dtype)
        mixed = _composite_white(arr[..., :3].astype(np.float32), arr[..., 3:4], peak)
        return np.rint(mixed).astype(arr.dtype) if peak != 1 else mixed.astype(arr.dtype)
    return arr


def _tensor_image(t: torch.Tensor) -> torch.Tensor:
    """A HxW or CxHxW tensor (C = 1, 3, 4) as 1xHxW or 3xHxW (alpha over white)."""
    if t.ndim == 2:
        return t[None]
    if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
        raise TypeError(f"tensor images must be 3xHxW (or Nx3xHxW), got shape {tuple(t.shape)}")
    if t.shape[0] == 4:
        peak = _TORCH_PEAKS.get(t.dtype, 1.0)
        mixed = _composite_white(t[:3].float(), t[3:4].float(), peak)
        return mixed.round().to(t.dtype) if peak != 1 else mixed.to(t.dtype)
    return t


def _pil_array(img: Any) -> np.ndarray:
    from PIL import Image

    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    return np.asarray(img)


def _is_pil(obj: Any) -> bool:
    module = type(obj).__module__
    if not module.startswith("PIL."):
        return False
    from PIL import Image

    return isinstance(obj, Image.Image)


def prepare_io(images: Any, scale: int) -> tuple[list[Source], list[Sink], Callable[[], Any]]:
    """Sources for the inputs, preallocated sinks for the outputs, and ``pack()`` that
    returns the outputs in the kind of the input."""
    if isinstance(images, (list, tuple)):
        if not images:
            return [], [], list
        parts = [prepare_io(item, scale) for item in images]
        return (
            [s for p in parts for s in p[0]],
            [s for p in parts for s in p[1]],
            lambda: [p[2]() for p in parts],
        )
    if _is_pil(images):
        # PIL in -> 8-bit RGB PIL out (PIL has no 16-bit RGB mode). The EXIF orientation
        # is applied, as img2img predict does with files.
        from PIL import ImageOps

        if images.getexif().get(0x0112, 1) not in (1, None):
            images = ImageOps.exif_transpose(images)
        arr = _numpy_image(_pil_array(images))
        out = np.empty((arr.shape[0] * scale, arr.shape[1] * scale, 3), np.uint8)
        source = Source(arr, _numpy_peak(arr.dtype))
        return [source], [Sink(out, 255.0)], lambda: _to_pil(out)
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            peak = _numpy_peak(images.dtype)
            n, h, w = images.shape[:3]
            out = np.empty((n, h * scale, w * scale, 3), images.dtype)
            sources = [Source(_numpy_image(a), peak) for a in images]
            return sources, [Sink(o, peak) for o in out], lambda: out
        arr = _numpy_image(images)
        peak = _numpy_peak(arr.dtype)
        out = np.empty((arr.shape[0] * scale, arr.shape[1] * scale, 3), arr.dtype)
        return [Source(arr, peak)], [Sink(out, peak)], lambda: out
    if isinstance(images, torch.Tensor):
        if not (images.is_floating_point() or images.dtype == torch.uint8):
            raise TypeError(f"tensor images must be float in [0, 1] or uint8, got {images.dtype}")
        peak = _TORCH_PEAKS.get(images.dtype, 1.0)
        if images.ndim == 4:
            n, _, h, w = images.shape
            out = torch.empty(n, 3, h * scale, w * scale, dtype=images.dtype, device=images.device)
            sources = [Source(_tensor_image(t), peak) for t in images]
            return sources, [Sink(o, peak) for o in out], lambda: out
        t = _tensor_image(images)
        h, w = t.shape[-2:]
        out = torch.empty(3, h * scale, w * scale, dtype=images.dtype, device=images.device)
        return [Source(t, peak)], [Sink(out, peak)], lambda: out
    raise TypeError(
        "images must be PIL images, numpy arrays (HxWx3 uint8/uint16/float), tensors "
        f"(3xHxW or Nx3xHxW in [0, 1]) or a list of them, got {type(images).__name__}"
    )


def _to_pil(arr: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(arr)


# --------------------------------------------------------------------------- img2img predict


@dataclass
class PredictItem:
    """One input file and where its output goes, relative to ``--out``."""

    path: Path
    relative: Path
    renamed: bool = False  # its output name keeps the source extension (a clash)


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def collect_inputs(spec: str, out_dir: Path) -> tuple[list[PredictItem], Path | None]:
    """The input files named by ``spec`` (a file, a folder scanned recursively, or a glob)
    with their output paths (``name.png`` at the same relative place), and the input folder
    (the folder given, or the fixed part of the glob; None for a single file).

    Files under ``out_dir`` are never taken from a folder or glob (an output folder inside
    the input folder is allowed). Two inputs that would give the same output name (``a.jpg``, ``a.png``) are
    written as ``a.jpg.png`` and ``a.png.png`` (``renamed``); a clash that remains (an input
    ``a.jpg.png`` beside them) is a UserError naming both inputs.
    """
    from img2img.data.io import scan_images

    path = Path(spec).expanduser()
    out_resolved = out_dir.resolve()
    if path.is_dir():
        base = input_dir = path
        files = scan_images(path, exclude=[out_dir] if out_dir.exists() else [])
    elif path.is_file():
        base = path.parent
        files = [path]
        input_dir = None
    elif glob.has_magic(spec):
        base = input_dir = _glob_base(spec)
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True))
        files = [p for p in files if p.is_file() and not p.name.startswith(".")]
        if not files:
            raise UserError(f"no files match {spec}")
    else:
        raise UserError(f"input not found: {spec} is not a file, a folder or a glob pattern")
    if out_resolved == (input_dir or path.parent).resolve():
        raise UserError(
            f"--out {out_dir} is the input folder; choose another output folder "
            "(predict never writes into the folder it reads from)"
        )
    if input_dir is not None and input_dir.resolve().is_relative_to(out_resolved):
        raise UserError(
            f"--out {out_dir} contains the input folder {input_dir}; choose an output folder "
            "outside it (one inside the input folder is fine)"
        )
    if input_dir is not None:
        files = [p for p in files if not p.resolve().is_relative_to(out_resolved)]
    if not files:
        raise UserError(f"no input images in {spec} (outside the output folder {out_dir})")
    items = []
    for p in files:
        try:
            rel = p.relative_to(base)
        except ValueError:  # a glob that climbs out of its base (../)
            rel = Path(p.name)
        items.append(PredictItem(p, rel))
    by_output: dict[Path, list[PredictItem]] = {}
    for item in items:
        by_output.setdefault(item.relative.with_suffix(".png"), []).append(item)
    for target, group in by_output.items():
        for item in group:
            item.renamed = len(group) > 1
            item.relative = item.relative.with_name(item.relative.name + ".png") if item.renamed else target
    first: dict[Path, PredictItem] = {}
    for item in items:
        other = first.setdefault(item.relative, item)
        if other is not item:
            raise UserError(
                f"{other.path} and {item.path} would both be written to {out_dir / item.relative}; "
                "rename one of them, or predict them into separate --out folders"
            )
    return items, input_dir


def check_outputs(items: list[PredictItem], out_dir: Path) -> None:
    """Refuse to write over any input file (writing into the input folder itself is
    refused by :func:`collect_inputs`)."""
    inputs = {item.path.resolve() for item in items}
    for item in items:
        target = (out_dir / item.relative).resolve()
        if target in inputs:
            raise UserError(
                f"--out {out_dir}: writing {out_dir / item.relative} would overwrite the input "
                f"{item.path}; choose another output folder"
            )


def _single_output_file(spec: str, out: Path) -> Path | None:
    """``out`` itself when one input file is translated to a file name given with an
    image suffix (``--out result.png``), else None (``out`` is a folder)."""
    from img2img.data.io import IMAGE_EXTENSIONS

    if Path(spec).expanduser().is_file() and out.suffix.lower() in IMAGE_EXTENSIONS and not out.is_dir():
        return out
    return None


def _read_for_predict(path: Path) -> tuple[np.ndarray, int]:
    """The image as uint8 (8-bit files) or uint16 (deeper files), and the PNG bit depth
    its output gets: 16 when the input had more than 8 bits, else 8."""
    from img2img.data.io import load_image

    array, info = load_image(path)
    if info.bit_depth > 8:
        if array.dtype != np.uint16:
            array = np.rint(np.clip(array, 0, 1) * 65535).astype(np.uint16)
        return array, 16
    return array, 8


def cli_predict(args: Any) -> int:
    """``img2img predict MODEL INPUT --out DIR``: see ``img2img predict --help``."""
    from tqdm.auto import tqdm

    from img2img.data.io import write_image
    from img2img.errors import DataError

    check_tiling(args.tile, args.tile_overlap, args.batch_size)
    if not args.out.strip():
        raise UserError("--out is empty; give the output folder (or, for one input file, the output file)")
    out_dir = Path(args.out).expanduser()
    target_file = _single_output_file(args.input, out_dir)
    if target_file is not None:  # predict photo.jpg --out result.png
        out_dir = target_file.parent
        items = [PredictItem(Path(args.input).expanduser(), Path(target_file.name))]
    else:
        items, _ = collect_inputs(args.input, out_dir)
    check_outputs(items, out_dir)
    from img2img import ownership
    from img2img.outputs import make_folder

    # Files img2img names itself in --out replace only what an earlier predict wrote there
    # (listed in its .img2img.json); a file named with --out is the user's request.
    targets = [item.relative.as_posix() for item in items]
    entries = [] if target_file is not None else ownership.check_files(
        out_dir, "predictions", targets, "choose another --out, or remove them yourself")
    renamed = [item for item in items if item.renamed]
    if renamed:
        shown = ", ".join(f"{item.path.name} -> {item.relative.name}" for item in renamed[:3])
        print(f"img2img: {len(renamed)} inputs differ from another only in their extension, so "
              f"their outputs keep it in the name: {shown}{', ...' if len(renamed) > 3 else ''}",
              file=sys.stderr)
    make_folder(out_dir)
    if target_file is None:  # listed before writing: a crash leaves them still img2img's
        ownership.mark(out_dir, "predictions", [*entries, *targets])
    written_targets: list[str] = []
    translator = load(
        args.model,
        device=args.device,
        direction=args.direction,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        batch_size=args.batch_size,
    )
    failed = 0
    bar = tqdm(total=len(items), unit="img", desc="predict", dynamic_ncols=True, file=sys.stderr)
    try:
        for start in range(0, len(items), args.batch_size):
            chunk = items[start : start + args.batch_size]
            arrays, depths, ready = [], [], []
            for item in chunk:
                try:
                    array, depth = _read_for_predict(item.path)
                except (DataError, OSError, ValueError) as err:
                    failed += 1
                    reason = str(err)
                    if str(item.path) not in reason:
                        reason = f"{item.path}: {reason}"
                    bar.write(f"img2img: skipped {reason}", file=sys.stderr)
                    bar.update(1)
                    continue
                arrays.append(array)
                depths.append(depth)
                ready.append(item)
            if not ready:
                continue
            outputs = translator(arrays)
            for item, output, depth in zip(ready, outputs, depths):
                target = out_dir / item.relative
                if depth == 16 and target.suffix.lower() not in (".png", ".tif", ".tiff"):
                    depth = 8  # e.g. --out result.jpg: 8-bit formats only
                try:
                    write_image(target, output, bit_depth=depth)
                except OSError as err:  # out of disk, permissions: stop, naming the file
                    raise UserError(
                        f"cannot write {target}: {err.strerror or err}; {bar.n} of "
                        f"{len(items)} images were written before it"
                    ) from None
                written_targets.append(item.relative.as_posix())
                bar.update(1)
    finally:
        bar.close()
    if target_file is None:  # what is there now: earlier outputs still present, and these
        kept = [e for e in entries if (out_dir / e).exists() or (out_dir / e).is_symlink()]
        ownership.mark(out_dir, "predictions", [*kept, *written_targets])
    written = len(items) - failed
    if target_file is not None and written:
        print(f"wrote {target_file}", file=sys.stderr)
    else:
        print(f"wrote {written} image{'s' * (written != 1)} to {out_dir}", file=sys.stderr)
    if failed:
        print(f"img2img: {failed} of {len(items)} inputs failed (see the messages above)",
              file=sys.stderr)
        return 1
    return 0
