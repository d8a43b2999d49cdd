"""The image hooks of a task (:class:`img2img.tasks.base.Task` inherits them): how an RGB
image becomes the generator's input and its output an RGB image again, used alike by
evaluation, the Translator and export."""

from __future__ import annotations

import torch
from torch import nn

from img2img.data.color import luma
from img2img.errors import UserError


def as_rgb(x: torch.Tensor) -> torch.Tensor:
    """Show a 1- or 2-channel image as RGB (grey; for 2 channels, the first one)."""
    if x.shape[1] == 3:
        return x
    return x[:, :1].expand(-1, 3, -1, -1)



class ImageHooks:
    """How a task's images go in and out of its networks; see :class:`img2img.tasks.base.Task`."""

    name: str

    def to_network(self, rgb: torch.Tensor) -> torch.Tensor:
        """An N3HW RGB batch in [-1, 1] as the generator's input (one channel: its luma)."""
        return luma(rgb) if self.channels()[0] == 1 else rgb

    def from_network(self, out: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """The generator's output as N3HW RGB in [-1, 1] (not clamped); ``x`` is its input
        (what :meth:`to_network` made), given when :attr:`output_uses_input`."""
        return as_rgb(out)

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
