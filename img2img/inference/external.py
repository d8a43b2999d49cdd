"""Third-party super-resolution weights, through spandrel.

``img2img.load("RealESRGAN_x4plus.pth")`` (or ``img2img predict model.pth ...``) reads a
weights file the community trained (ESRGAN, Real-ESRGAN, SwinIR, HAT, SPAN, Compact, ...:
any single-image architecture the spandrel package recognises) and runs it with
img2img's tiling, batching, bit depths and export. The file is read only by
:func:`img2img.files.read_weights_file` (safetensors, or ``torch.load(weights_only=True)``):
nothing is unpickled; the state dict it holds is handed to spandrel's
``ModelLoader().load_from_state_dict``, which finds the architecture from its keys and
shapes and builds the network.

The network is wrapped as :class:`SpandrelNet`, a generator with img2img's size contract
(spandrel's ``size_requirements`` give the multiple and the minimum) that takes and gives
images in [-1, 1] as every img2img generator does (spandrel's models work in [0, 1]).
:class:`PlainImages` stands in for a task: RGB in, RGB out (a grey network gets the
luma), and :class:`External` for a config: what was found, where.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from img2img.errors import UserError
from img2img.files import first_line, read_weights_file

#: Files read as third-party weights (the formats :func:`read_weights_file` reads).
WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


@dataclass(frozen=True)
class External:
    """A model from a third-party weights file: its architecture and scale as spandrel
    found them, and the file."""

    architecture: str
    scale: int
    source: str
    purpose: str
    in_channels: int
    out_channels: int

    def describe(self) -> str:
        return f"{self.architecture} x{self.scale} ({self.purpose}, {self.in_channels} -> {self.out_channels} channels)"


class SpandrelNet(nn.Module):
    """A spandrel model as an img2img generator: [-1, 1] in and out, with the size contract."""

    def __init__(self, descriptor: Any) -> None:
        super().__init__()
        req = descriptor.size_requirements
        self.model = descriptor.model
        self.in_channels, self.out_channels = descriptor.input_channels, descriptor.output_channels
        self.scale, self.size_multiple = descriptor.scale, max(1, req.multiple_of)
        self.min_size = max(req.minimum, self.size_multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x + 1) * 0.5) * 2 - 1


class PlainImages:
    """What a task says about images, for a network that came without one: RGB in [-1, 1]
    goes in (the BT.601 luma for a one-channel network), the output is RGB (grey repeated)."""

    output_uses_input = False
    directions = {"AtoB": "G"}
    inference_inputs: dict[str, str] = {}

    def __init__(self, external: External) -> None:
        self.config = external
        self.name = f"{external.architecture} (spandrel)"

    def to_network(self, rgb: torch.Tensor, extra=None) -> torch.Tensor:
        from img2img.data.color import luma

        return luma(rgb) if self.config.in_channels == 1 else rgb

    def from_network(self, out: torch.Tensor, x: torch.Tensor | None = None, extra=None) -> torch.Tensor:
        return out if out.shape[1] == 3 else out[:, :1].expand(-1, 3, -1, -1)

    def generator_for(self, direction: str = "AtoB") -> str:
        if direction != "AtoB":
            raise UserError(f"direction {direction} does not apply to a third-party model: it has one network")
        return "G"

    def check_translatable(self, net: nn.Module) -> None:
        if self.config.in_channels not in (1, 3) or self.config.out_channels not in (1, 3):
            raise UserError(f"{self.config.source}: a {self.config.in_channels} -> {self.config.out_channels} "
                            "channel network cannot translate RGB images (only 1 or 3 channels)")

    def export_notes(self) -> dict[str, str]:
        return {"input_range": "[-1, 1] (x = 2 * rgb01 - 1)", "source": f"{self.config.describe()} via spandrel"}


def is_weights_file(path: Path) -> bool:
    """Whether ``path`` names a weights file (by its suffix) rather than a model folder."""
    return path.suffix.lower() in WEIGHT_SUFFIXES


def _loader() -> Any:
    try:
        from spandrel import ModelLoader
    except ImportError:
        raise UserError("loading third-party weights needs spandrel: pip install 'img2img[sr]'") from None
    return ModelLoader()


def load_external(path: Path) -> tuple[External, dict[str, nn.Module]]:
    """The network in the weights file ``path`` (see the module docstring), as an
    :class:`External` description and ``{"G": SpandrelNet}``; a UserError naming the file
    when it cannot be read, holds no state dict, or is not a single-image model spandrel
    knows."""
    try:
        state = read_weights_file(path)
    except ValueError as err:
        raise UserError(f"{path}: cannot read it as weights: {err}") from None
    if not isinstance(state, dict) or not state:
        raise UserError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    loader = _loader()
    from spandrel import ImageModelDescriptor, UnsupportedModelError

    try:
        descriptor = loader.load_from_state_dict(state)
    except UnsupportedModelError:
        raise UserError(f"{path}: spandrel recognises no architecture in these weights (see spandrel's "
                        "list of supported architectures)") from None
    except (RuntimeError, ValueError, KeyError, AssertionError) as err:
        raise UserError(f"{path}: spandrel could not build the network ({first_line(err)})") from None
    if not isinstance(descriptor, ImageModelDescriptor):
        raise UserError(f"{path}: a {descriptor.architecture.name} {descriptor.purpose} model takes more than "
                        "one image (an image and a mask); only single-image models run here")
    if descriptor.size_requirements.square:
        raise UserError(f"{path}: {descriptor.architecture.name} takes only square images, which tiling and "
                        "padding here do not provide")
    external = External(descriptor.architecture.name, descriptor.scale, str(path), descriptor.purpose,
                        descriptor.input_channels, descriptor.output_channels)
    return external, {"G": SpandrelNet(descriptor).eval()}
