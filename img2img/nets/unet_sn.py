"""UNetDiscriminatorSN, Real-ESRGAN's U-Net discriminator with spectral normalisation
(Wang et al. 2021, "Real-ESRGAN", figure 6; ``realesrgan/archs/discriminator_arch.py``).

conv3x3 (64) -> three 4x4 stride-2 convs (128, 256, 512) -> three [bilinear x2 -> conv3x3]
stages back up (256, 128, 64), each added to the encoder features of its size (skip
connections) -> two conv3x3 (64) -> conv3x3 to one channel. LeakyReLU 0.2 after every conv
but the last. Every conv but the first and the last is spectrally normalised and has no
bias. The output is a realness logit per pixel, at the input's size, so the usual GAN
objectives (a mean over all elements of the map) apply as they are.

Module names follow the reference (``conv0`` .. ``conv9``). Spectral norm is torch's
parametrization (keys ``convN.parametrizations.weight.original`` and ``..0._u``/``_v``);
the reference's files use the older hook form (``convN.weight_orig``, ``weight_u``,
``weight_v``), which :mod:`img2img.sr_weights` maps both ways. Input sides must be
multiples of 8 (three halvings). 4,376,897 parameters at 64 features and 3 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from img2img.errors import ConfigError


class UNetDiscriminatorSN(nn.Module):
    """The U-Net discriminator (see the module docstring); returns (N, 1, H, W) logits."""

    size_multiple = 8

    def __init__(self, in_channels: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        f = num_feat
        self.skip_connection = skip_connection
        self.conv0 = nn.Conv2d(in_channels, f, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(f, f * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(f * 2, f * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(f * 4, f * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(f * 8, f * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(f * 4, f * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(f * 2, f, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def _up(self, conv: nn.Module, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.leaky_relu(conv(x), 0.2)
        return x + skip if self.skip_connection else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % self.size_multiple or x.shape[-1] % self.size_multiple:
            raise ConfigError(
                f"the unet_sn discriminator takes image sides that are multiples of "
                f"{self.size_multiple}, got {x.shape[-2]}x{x.shape[-1]}; set data.gt_size "
                "(or data.crop_size) to a multiple of 8"
            )
        x0 = F.leaky_relu(self.conv0(x), 0.2)
        x1 = F.leaky_relu(self.conv1(x0), 0.2)
        x2 = F.leaky_relu(self.conv2(x1), 0.2)
        x3 = F.leaky_relu(self.conv3(x2), 0.2)
        x4 = self._up(self.conv4, x3, x2)
        x5 = self._up(self.conv5, x4, x1)
        x6 = self._up(self.conv6, x5, x0)
        out = F.leaky_relu(self.conv7(x6), 0.2)
        out = F.leaky_relu(self.conv8(out), 0.2)
        return self.conv9(out)
