"""RRDBNet, the generator of ESRGAN (Wang et al. 2018, "ESRGAN: Enhanced Super-Resolution
Generative Adversarial Networks", figure 4) as BasicSR and Real-ESRGAN build it.

conv3x3 -> ``num_block`` residual-in-residual dense blocks -> conv3x3, plus the first
conv's features (trunk skip) -> two [nearest x2 upsampling -> conv3x3 -> LeakyReLU(0.2)]
stages -> conv3x3 -> LeakyReLU(0.2) -> conv3x3 to the image. Each RRDB holds three
residual dense blocks of five convolutions (each conv sees the concatenation of the block's
input and all earlier growths of ``num_grow_ch`` channels); every residual is scaled by 0.2.

The body always upsamples x4. For x2 and x1, as Real-ESRGAN's ``RRDBNet(scale=...)`` does,
the input is first pixel-unshuffled by 2 or 4 (its channels times 4 or 16), so an input
side must be a multiple of 2 or 4 (``size_multiple``). x3 has no such form and is refused.

Module names follow BasicSR's ``rrdbnet_arch.py`` (``conv_first``, ``body.N.rdbK.convJ``,
``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``), so the state dict
has the layout of the original weights files. The layers run on [0, 1] images, as the
original code trains them; img2img's [-1, 1] images are mapped in and out. Initialisation
as BasicSR: the dense blocks' convs Kaiming-normal times 0.1 with zero biases, the other
convs PyTorch's default. 16,697,987 parameters at x4 with the defaults (3 channels, 64
features, 23 blocks, growth 32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from img2img.errors import ConfigError
from img2img.nets.layers import scaled_kaiming_init

#: The pixel-unshuffle factor of the input for each supported scale (x4: none).
UNSHUFFLE = {4: 1, 2: 2, 1: 4}


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each on [input, all earlier outputs]; LeakyReLU(0.2) after the first
    four; the fifth maps back to ``num_feat`` channels and is added to the input x 0.2."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        g = num_grow_ch
        self.conv1 = nn.Conv2d(num_feat, g, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + g, g, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * g, g, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * g, g, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * g, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2)
        scaled_kaiming_init(self, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seen = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            seen.append(self.lrelu(conv(torch.cat(seen, 1))))
        return x + 0.2 * self.conv5(torch.cat(seen, 1))


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks in a row, added to the input
    x 0.2."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN's generator (see the module docstring). Images in and out in [-1, 1]."""

    def __init__(
        self, in_channels: int = 3, out_channels: int = 3, num_feat: int = 64,
        num_block: int = 23, num_grow_ch: int = 32, scale: int = 4,
    ) -> None:
        super().__init__()
        if scale not in UNSHUFFLE:
            raise ConfigError(f"data.scale: rrdbnet upsamples by 1, 2 or 4, got {scale}")
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, scale
        self.unshuffle = UNSHUFFLE[scale]
        self.size_multiple = self.min_size = self.unshuffle

        self.conv_first = nn.Conv2d(in_channels * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, out_channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + 1) * 0.5  # the layers work on [0, 1] images
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out * 2 - 1
