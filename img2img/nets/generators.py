"""Generators: U-Net (pix2pix), ResNet (CycleGAN), SRResNet (SRGAN).

Every generator is fully convolutional and carries five attributes the rest of img2img
reads: ``in_channels``, ``out_channels``, ``scale`` (output size / input size) and
``size_multiple`` (input height and width must be multiples of it), and ``min_size`` (the
smallest input side it runs on).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from img2img.errors import ConfigError
from img2img.nets.layers import (
    apply_spectral_norm,
    conv_bias,
    norm_layer,
    padding_mode,
    scaled_kaiming_init,
)

# --------------------------------------------------------------------------- U-Net


def unet_widths(ngf: int, num_downs: int) -> list[int]:
    """Channels after each encoder step: ngf, 2ngf, 4ngf, then 8ngf (C64-C128-C256-C512-...)."""
    return [ngf * min(2**i, 8) for i in range(num_downs)]


def unet_down(cin: int, cout: int, norm: str, outermost: bool, innermost: bool) -> nn.Sequential:
    """LeakyReLU(0.2) -> 4x4 stride-2 conv -> norm; the outermost step is the bare conv
    (it sees the image), the innermost has no norm (its map can be 1x1)."""
    layers: list[nn.Module] = [] if outermost else [nn.LeakyReLU(0.2)]
    layers.append(nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=conv_bias(norm)))
    if not (outermost or innermost):
        layers.append(norm_layer(norm, cout))
    return nn.Sequential(*layers)


def unet_up(cin: int, cout: int, norm: str, outermost: bool, dropout: bool) -> nn.Sequential:
    """ReLU -> 4x4 stride-2 transposed conv -> norm [-> dropout 0.5]; the outermost step
    ends in tanh instead of a norm."""
    if outermost:
        return nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.Tanh())
    layers = [
        nn.ReLU(),
        nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=conv_bias(norm)),
        norm_layer(norm, cout),
    ]
    if dropout:
        layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers)


class UNetGenerator(nn.Module):
    """The pix2pix U-Net (Isola et al. 2017) with ``num_downs`` stride-2 steps.

    Encoder C64-C128-C256-C512-C512-C512-C512-C512 (for ``num_downs`` 8), decoder mirrored,
    each decoder step after the innermost seeing the concatenation [encoder skip, decoder].
    Dropout 0.5 sits in the 512-channel decoder steps between the innermost one and the
    first that narrows (three of them for ``num_downs`` 8, as in the reference code).
    Same layers and parameter count as the classic ``UnetGenerator``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        dropout: bool = False,
    ) -> None:
        super().__init__()
        if num_downs < 1:
            raise ConfigError(f"generator.num_downs: must be >= 1, got {num_downs}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.scale, self.size_multiple = 1, 2**num_downs
        self.min_size = self.size_multiple  # the innermost level is 1x1
        widths = unet_widths(ngf, num_downs)
        last = num_downs - 1

        self.encoder = nn.ModuleList(
            unet_down(
                in_channels if i == 0 else widths[i - 1],
                widths[i],
                norm,
                outermost=i == 0,
                innermost=i == last,
            )
            for i in range(num_downs)
        )
        # decoder[i] undoes encoder[i]; it reads the innermost features alone, or else
        # [encoder[i] output, decoder[i + 1] output].
        self.decoder = nn.ModuleList(
            unet_up(
                widths[i] if i == last else 2 * widths[i],
                out_channels if i == 0 else widths[i - 1],
                norm,
                outermost=i == 0,
                dropout=dropout and 4 <= i < last,
            )
            for i in range(num_downs)
        )
        if norm == "spectral":
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.encoder:
            x = down(x)
            skips.append(x)
        x = self.decoder[-1](skips[-1])
        for i in range(len(self.decoder) - 2, -1, -1):
            x = self.decoder[i](torch.cat([skips[i], x], dim=1))
        return x


# --------------------------------------------------------------------------- ResNet


class ResnetBlock(nn.Module):
    """x + [conv3x3 - norm - ReLU - (dropout 0.5) - conv3x3 - norm](x), padded by ``padding``."""

    def __init__(self, channels: int, norm: str, padding: str, dropout: bool) -> None:
        super().__init__()
        mode, bias = padding_mode(padding), conv_bias(norm)
        layers = [
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode=mode, bias=bias),
            norm_layer(norm, channels),
            nn.ReLU(),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode=mode, bias=bias),
            norm_layer(norm, channels),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """The CycleGAN generator (Johnson et al. 2016): c7s1-64, d128, d256, n x R256, u128,
    u64, c7s1-3, tanh.

    The 7x7 stem and output convs are reflection padded; ``padding`` (reflect|replicate|
    zero) pads the residual blocks. Same layers and parameter count as the classic
    ``ResnetGenerator``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_blocks: int = 9,
        ngf: int = 64,
        norm: str = "instance",
        dropout: bool = False,
        padding: str = "reflect",
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.scale, self.size_multiple = 1, 4
        # Reflection padding by 1 in the blocks needs at least 2x2 after two downsamplings.
        self.min_size = 8
        bias = conv_bias(norm)

        def down(cin: int, cout: int) -> list[nn.Module]:
            conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=bias)
            return [conv, norm_layer(norm, cout), nn.ReLU()]

        def up(cin: int, cout: int) -> list[nn.Module]:
            conv = nn.ConvTranspose2d(
                cin, cout, 3, stride=2, padding=1, output_padding=1, bias=bias
            )
            return [conv, norm_layer(norm, cout), nn.ReLU()]

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, ngf, 7, padding=3, padding_mode="reflect", bias=bias),
            norm_layer(norm, ngf),
            nn.ReLU(),
        )
        self.down = nn.Sequential(*down(ngf, ngf * 2), *down(ngf * 2, ngf * 4))
        self.blocks = nn.Sequential(
            *(ResnetBlock(ngf * 4, norm, padding, dropout) for _ in range(n_blocks))
        )
        self.up = nn.Sequential(*up(ngf * 4, ngf * 2), *up(ngf * 2, ngf))
        self.head = nn.Sequential(
            nn.Conv2d(ngf, out_channels, 7, padding=3, padding_mode="reflect"), nn.Tanh()
        )
        if norm == "spectral":
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.up(self.blocks(self.down(self.stem(x)))))


# --------------------------------------------------------------------------- SRResNet


def check_sr_scale(scale: int) -> int:
    if scale not in (2, 3, 4):
        raise ConfigError(f"data.scale: SRResNet upsamples by 2, 3 or 4, got {scale}")
    return scale


def check_sr_channels(in_channels: int, out_channels: int, name: str = "SRResNet") -> None:
    if in_channels != out_channels:
        raise ConfigError(
            f"model.in_channels/model.out_channels: {name} adds the upsampled input to its "
            f"output, so they must be equal, got {in_channels} -> {out_channels}"
        )


class ResidualBlockNoBN(nn.Module):
    """x + conv3x3(ReLU(conv3x3(x))), no batch norm (EDSR / MSRResNet)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


def _unit_range(value_range: str) -> bool:
    if value_range not in ("signed", "unit"):
        raise ValueError(f"value_range must be 'signed' ([-1, 1]) or 'unit' ([0, 1]), got {value_range!r}")
    return value_range == "unit"


class SRResNet(nn.Module):
    """MSRResNet, BasicSR's modified SRResNet (Wang et al. 2018, "ESRGAN" section 3).

    conv3x3 -> LeakyReLU(0.1) -> ``n_blocks`` residual blocks without BN -> pixel-shuffle
    upsampling (x4: two x2 stages; x2/x3: one stage), each conv -> shuffle -> LeakyReLU
    -> conv3x3 -> LeakyReLU -> conv3x3, plus the bilinearly upsampled input (global
    residual). Linear output. Every conv is Kaiming-normal initialised times 0.1 (BasicSR's
    init); the config's ``init``/``init_gain`` do not apply. 1,517,571 parameters at x4 with
    64 features, 16 blocks, 3 channels.

    Images come in and go out in [-1, 1], as everywhere in img2img. ``value_range="unit"``
    runs the layers on [0, 1] instead (input mapped to (x + 1) / 2, output back to 2y - 1),
    which is what weights trained by BasicSR expect.
    """

    def __init__(
        self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 16,
        scale: int = 4, value_range: str = "signed",
    ) -> None:
        super().__init__()
        check_sr_channels(in_channels, out_channels)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.scale, self.size_multiple = check_sr_scale(scale), 1
        self.min_size = 1
        self.unit_range = _unit_range(value_range)

        self.conv_first = nn.Conv2d(in_channels, ngf, 3, padding=1)
        self.body = nn.Sequential(*(ResidualBlockNoBN(ngf) for _ in range(n_blocks)))
        stages = [2, 2] if scale == 4 else [scale]
        self.upsample = nn.Sequential(
            *(layer for r in stages for layer in (
                nn.Conv2d(ngf, ngf * r * r, 3, padding=1),
                nn.PixelShuffle(r),
                nn.LeakyReLU(0.1),
            ))
        )
        self.conv_hr = nn.Conv2d(ngf, ngf, 3, padding=1)
        self.conv_last = nn.Conv2d(ngf, out_channels, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.1)
        scaled_kaiming_init(self, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unit_range:
            x = (x + 1) * 0.5
        feat = self.body(self.lrelu(self.conv_first(x)))
        out = self.conv_last(self.lrelu(self.conv_hr(self.upsample(feat))))
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        out = out + base
        return out * 2 - 1 if self.unit_range else out


class ResidualBlockBN(nn.Module):
    """x + BN(conv3x3(PReLU(BN(conv3x3(x))))) — the SRGAN paper's residual block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.PReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNetBN(nn.Module):
    """SRResNet as in the SRGAN paper (Ledig et al. 2017, figure 4).

    k9n64 conv -> PReLU -> ``n_blocks`` residual blocks (conv-BN-PReLU-conv-BN) -> conv-BN
    plus the stem's output (long skip) -> pixel-shuffle upsampling (conv3x3 to 256 channels,
    shuffle x2, PReLU; twice for x4, once with x3 for x3) -> k9 conv to the image. Linear
    output (the paper's figure has no final activation). Convs are Kaiming-normal
    initialised times 0.1 like :class:`SRResNet`; ``init``/``init_gain`` do not apply.
    ``value_range`` as for :class:`SRResNet`.
    """

    def __init__(
        self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 16,
        scale: int = 4, value_range: str = "signed",
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.scale, self.size_multiple = check_sr_scale(scale), 1
        self.min_size = 1
        self.unit_range = _unit_range(value_range)

        self.head = nn.Sequential(nn.Conv2d(in_channels, ngf, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(
            *(ResidualBlockBN(ngf) for _ in range(n_blocks)),
            nn.Conv2d(ngf, ngf, 3, padding=1, bias=False),
            nn.BatchNorm2d(ngf),
        )
        stages = [2, 2] if scale == 4 else [scale]
        self.upsample = nn.Sequential(
            *(layer for r in stages for layer in (
                nn.Conv2d(ngf, ngf * r * r, 3, padding=1),
                nn.PixelShuffle(r),
                nn.PReLU(),
            ))
        )
        self.tail = nn.Conv2d(ngf, out_channels, 9, padding=4)
        scaled_kaiming_init(self, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unit_range:
            x = (x + 1) * 0.5
        feat = self.head(x)
        out = self.tail(self.upsample(feat + self.body(feat)))
        return out * 2 - 1 if self.unit_range else out
