"""SPAN, the Swift Parameter-free Attention Network (Wan et al. 2024, CVPR NTIRE workshop;
first in the NTIRE 2024 efficient super-resolution challenge), as its reference code
(hongyuanyu/SPAN ``basicsr/archs/span_arch.py``) builds it.

The input is centred on the DIV2K mean colour and scaled by 255; a re-parameterisable conv
(:class:`Conv3XC`) makes ``feature_channels`` features; six SPABs follow, each three
Conv3XCs with SiLU between them and a parameter-free attention: out = (c3 + x) *
(sigmoid(c3) - 0.5); a Conv3XC refines the last block's output; a 1x1 conv fuses [first
features, refined, block 1's output, block 6's first conv after SiLU]; conv3x3 -> pixel
shuffle gives the image. Fully convolutional, any input size.

A :class:`Conv3XC` trains as three convolutions (1x1 widening x2, 3x3, 1x1 back) plus a 1x1
shortcut, and runs in eval mode as the single 3x3 conv they add up to (the reference's
``eval_conv``, here recomputed from the trained weights on every eval forward, so it never
goes stale, and kept in non-persistent buffers). The reference pads the training branch's
*input* with zeros, so the first 1x1 conv's bias reaches the border in training but not in
the merged conv: train- and eval-mode outputs differ slightly near the border, as there.

Module names follow the reference (``conv_1.sk``, ``conv_1.conv.0`` .., ``block_1.c1_r``,
``conv_cat``, ``conv_2``, ``upsampler.0``); the merged ``eval_conv`` weights are not
parameters here, :mod:`img2img.sr_weights` writes them into exported files. The layers run
on [0, 1] images; img2img's [-1, 1] images are mapped in and out. PyTorch's default init,
as the reference. Size at the reference's defaults (48 features, x4, 3 channels), counted
from its code: 1,840,488 parameters in the training form (what ``img2img summary``
counts), 426,288 in the merged inference form (what an exported file holds besides).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from img2img.errors import ConfigError

#: The mean colour the input is centred on (DIV2K, as the reference) and the range factor.
RGB_MEAN = (0.4488, 0.4371, 0.4040)
IMG_RANGE = 255.0


class Conv3XC(nn.Module):
    """A 3x3 conv trained as 1x1 (``c_in`` -> ``gain c_in``) -> 3x3 (-> ``gain c_out``) ->
    1x1 (-> ``c_out``), plus a 1x1 shortcut ``sk``; one merged 3x3 conv in eval mode."""

    def __init__(self, c_in: int, c_out: int, gain: int = 2) -> None:
        super().__init__()
        self.sk = nn.Conv2d(c_in, c_out, 1)
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, c_in * gain, 1),
            nn.Conv2d(c_in * gain, c_out * gain, 3),
            nn.Conv2d(c_out * gain, c_out, 1),
        )
        self.register_buffer("eval_weight", torch.zeros(c_out, c_in, 3, 3), persistent=False)
        self.register_buffer("eval_bias", torch.zeros(c_out), persistent=False)

    def merged(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight and bias of the one 3x3 conv equal to the branches (zero padding)."""
        first, middle, last = self.conv
        w1, w2, w3 = first.weight[:, :, 0, 0], middle.weight, last.weight[:, :, 0, 0]
        c_mid, c_in = w1.shape
        # the 3x3 conv after the first 1x1: sum over its inputs m of w2[o, m] * w1[m, i]
        taps = w2.permute(0, 2, 3, 1).reshape(-1, c_mid) @ w1  # (o kh kw, i)
        w12 = taps.reshape(w2.shape[0], 3, 3, c_in)
        weight = (w3 @ w12.reshape(w2.shape[0], -1)).reshape(w3.shape[0], 3, 3, c_in).permute(0, 3, 1, 2)
        b12 = middle.bias + w2.sum(dim=(2, 3)) @ first.bias
        bias = last.bias + w3 @ b12 + self.sk.bias
        return weight + F.pad(self.sk.weight, (1, 1, 1, 1)), bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.conv(F.pad(x, (1, 1, 1, 1))) + self.sk(x)
        with torch.no_grad():
            weight, bias = self.merged()
        # Stored through .data, as the reference fills its eval_conv: a traced or exported
        # graph then holds the merged conv as a constant of known shape.
        self.eval_weight.data, self.eval_bias.data = weight, bias
        return F.conv2d(x, self.eval_weight, self.eval_bias, padding=1)


class SPAB(nn.Module):
    """Swift parameter-free attention block: three Conv3XCs (SiLU after the first two), then
    (c3 + x) * (sigmoid(c3) - 0.5). Returns the output and SiLU(first conv's output): the
    reference returns the first conv's output tensor, which its in-place SiLU has already
    overwritten with the activation, so that is what the network uses."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.c1_r = Conv3XC(channels, channels)
        self.c2_r = Conv3XC(channels, channels)
        self.c3_r = Conv3XC(channels, channels)
        self.act1 = nn.SiLU()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out1 = self.act1(self.c1_r(x))
        out3 = self.c3_r(self.act1(self.c2_r(out1)))
        attention = torch.sigmoid(out3) - 0.5
        return (out3 + x) * attention, out1


class SPAN(nn.Module):
    """SPAN (see the module docstring). Images in and out in [-1, 1]."""

    def __init__(
        self, in_channels: int = 3, out_channels: int = 3, feature_channels: int = 48, scale: int = 4,
    ) -> None:
        super().__init__()
        if in_channels != len(RGB_MEAN):
            raise ConfigError(
                f"model.in_channels: span centres an RGB input on its mean colour and takes 3 "
                f"channels, got {in_channels}"
            )
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, scale
        self.size_multiple = self.min_size = 1
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)

        f = feature_channels
        self.conv_1 = Conv3XC(in_channels, f)
        self.block_1, self.block_2, self.block_3 = SPAB(f), SPAB(f), SPAB(f)
        self.block_4, self.block_5, self.block_6 = SPAB(f), SPAB(f), SPAB(f)
        self.conv_cat = nn.Conv2d(f * 4, f, 1)
        self.conv_2 = Conv3XC(f, f)
        self.upsampler = nn.Sequential(nn.Conv2d(f, out_channels * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x + 1) * 0.5 - self.mean.to(x.dtype)) * IMG_RANGE
        feat = self.conv_1(x)
        out_b1, _ = self.block_1(feat)
        out = out_b1
        for block in (self.block_2, self.block_3, self.block_4, self.block_5):
            out, _ = block(out)
        out_b6, out_b6_1 = self.block_6(out)
        out = self.conv_cat(torch.cat([feat, self.conv_2(out_b6), out_b1, out_b6_1], 1))
        return self.upsampler(out) * 2 - 1
