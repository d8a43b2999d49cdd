"""SRVGGNetCompact, Real-ESRGAN's compact VGG-style SR network (Wang et al. 2021,
"Real-ESRGAN", the ``realesr-animevideov3`` and ``realesr-general-x4v3`` models).

conv3x3 -> PReLU, then ``num_conv`` x [conv3x3 -> PReLU] all at the input's resolution,
then one conv3x3 to ``out_channels * scale**2`` channels and a pixel shuffle; the
nearest-upsampled input is added, so the body learns a residual. No convolution runs at
the output's resolution, which makes it fast. PReLUs have one slope per channel.

Module names follow Real-ESRGAN's ``srvgg_arch.py`` (``body.0`` .. ``body.{2 num_conv +
2}``), so the state dict has the layout of the original weights files. The layers run on
[0, 1] images; img2img's [-1, 1] images are mapped in and out. PyTorch's default init,
as the reference.

Sizes (3 channels, 64 features, x4): 16 convs (the reference's default,
realesr-animevideov3) 621,424 parameters; 32 convs (realesr-general-x4v3) 1,213,296.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from img2img.nets.generators import check_sr_channels


class SRVGGNetCompact(nn.Module):
    """The compact network (see the module docstring). Images in and out in [-1, 1]."""

    def __init__(
        self, in_channels: int = 3, out_channels: int = 3, num_feat: int = 64,
        num_conv: int = 16, scale: int = 4,
    ) -> None:
        super().__init__()
        check_sr_channels(in_channels, out_channels, "srvgg_compact")
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, scale
        self.size_multiple = self.min_size = 1

        layers: list[nn.Module] = [nn.Conv2d(in_channels, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, out_channels * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + 1) * 0.5  # the layers work on [0, 1] images
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        base = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return (out + base) * 2 - 1
