"""The image hooks of a task (:class:`img2img.tasks.base.Task` inherits them): how an RGB
image becomes the generator's input and its output an RGB image again, used alike by
evaluation, the Translator and export."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from img2img.data.color import luma
from img2img.errors import UserError


def as_rgb(x: torch.Tensor) -> torch.Tensor:
    """Show a 1- or 2-channel image as RGB (grey; for 2 channels, the first one)."""
    if x.shape[1] == 3:
        return x
    return x[:, :1].expand(-1, 3, -1, -1)



def spatial_tensor(name: str, value: Any) -> torch.Tensor:
    """A per-image map (tensor H x W or C x H x W, numpy H x W or H x W x C, PIL image)
    as float32 C x H x W; integer values are divided by their peak (255, 65535)."""
    if type(value).__module__.startswith("PIL."):
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        peak = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(value.dtype, 1.0)
        if value.dtype == bool:
            value = value.astype(np.float32)
        arr = value[:, :, None] if value.ndim == 2 else value
        if arr.ndim != 3:
            raise UserError(f"{name}: expected an H x W or H x W x C array per image, got shape {value.shape}")
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1) / peak
    if isinstance(value, torch.Tensor):
        t = value[None] if value.ndim == 2 else value
        if t.ndim != 3:
            raise UserError(f"{name}: expected an H x W or C x H x W tensor per image, got shape {tuple(value.shape)}")
        return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
    raise UserError(f"{name}: expected an image, array or tensor per image, got {type(value).__name__}")


class ImageHooks:
    """How a task's images go in and out of its networks; see :class:`img2img.tasks.base.Task`."""

    name: str
    #: Inputs beyond the image that the generator needs at inference, by name: "spatial"
    #: (an N x C x H x W tensor at the input image's size, tiled, padded and batched like
    #: the image) or "global" (a tensor with first dimension N, passed whole to every
    #: tile). Each is required at predict time, by the Translator (``t(image, name=...)``),
    #: ``img2img predict`` and the ONNX graph (an extra named graph input).
    inference_inputs: ClassVar[dict[str, str]] = {}

    def to_network(self, rgb: torch.Tensor, extra: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """An N3HW RGB batch in [-1, 1] as the generator's input (one channel: its luma);
        ``extra`` holds the batch's :attr:`inference_inputs` (None when there are none)."""
        return luma(rgb) if self.channels()[0] == 1 else rgb

    def from_network(self, out: torch.Tensor, x: torch.Tensor | None = None,
                     extra: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The generator's output as N3HW RGB in [-1, 1] (not clamped); ``x`` is its input
        (what :meth:`to_network` made), given when :attr:`output_uses_input`; ``extra`` as
        for :meth:`to_network`, spatial ones cut to the output's rows."""
        return as_rgb(out)

    def encode_input(self, name: str, value: Any) -> torch.Tensor:
        """One image's value of the inference input ``name`` as a tensor: a global one as a
        1-d tensor of one element (the default takes an int or a one-element tensor, as
        int64), a spatial one as float32 C x H x W (a tensor H x W or C x H x W, a numpy
        array H x W or H x W x C, or a PIL image; integers are scaled by their peak to [0, 1]).
        A value the task cannot use is a UserError naming ``name``."""
        if self.inference_inputs[name] == "global":
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                return value.reshape(1).long()
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                return torch.tensor([int(value)])
            raise UserError(f"{name}: expected an integer per image, got {value!r}")
        return spatial_tensor(name, value)

    def input_choices(self, name: str) -> list[str] | None:
        """The named values the inference input ``name`` takes (``--to all`` runs each), or None."""
        return None

    def example_inputs(self, n: int, height: int, width: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Valid random values of every inference input for a batch of ``n`` images of
        ``height`` x ``width`` (what an export is traced and checked with): the default
        takes global ones as int64 zeros and spatial ones as a {0, 1} map of one channel."""
        out = {}
        for name, kind in self.inference_inputs.items():
            if kind == "global":
                out[name] = torch.zeros(n, dtype=torch.long)
            else:
                out[name] = (torch.rand(n, 1, height, width, generator=generator) < 0.5).float()
        return out

    def check_translatable(self, net: nn.Module) -> None:
        """A UserError when ``net`` cannot translate RGB images through
        :meth:`to_network` / :meth:`from_network` (only 1 or 3 channels each way)."""
        cin, cout = int(getattr(net, "in_channels", 3)), int(getattr(net, "out_channels", 3))
        if cin not in (1, 3) or cout not in (1, 3):
            raise UserError(
                f"cannot translate RGB images with a {cin} -> {cout} channel {self.name} "
                "network (only 1 or 3 channels)"
            )

    def export_notes(self) -> dict[str, str]:
        """What an exported network's input and output are, for its metadata: at least
        ``input_range`` (a line saying what the network's input holds); any other entries
        are added to the metadata as they are."""
        return {"input_range": "[-1, 1] (x = 2 * rgb01 - 1)"}
