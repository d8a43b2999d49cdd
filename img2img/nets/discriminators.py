"""Discriminators: PatchGAN (n_layers), PixelGAN, multi-scale PatchGAN, VGG-style.

All return logits (no sigmoid): a map of shape (N, 1, h, w), or for
:class:`MultiScaleDiscriminator` a list of such maps, finest scale first.

Intermediate features (feature matching, pix2pixHD): a discriminator that can give them has
``forward_features(x) -> (logits, features)``, where ``logits`` is what ``forward(x)``
returns and ``features`` a list with one entry per scale (one for a single-scale D), each
the list of the outputs of its LeakyReLUs in order (a PatchGAN with ``n_layers`` gives
``n_layers + 1``, as pix2pixHD's ``getIntermFeat``). :func:`discriminator_features` asks a
network for them; :func:`gives_features` says whether it can.
"""

from __future__ import annotations

import torch
from torch import nn

from img2img.errors import ConfigError
from img2img.nets.layers import apply_spectral_norm, conv_bias, norm_layer, run_collecting

Features = list[list[torch.Tensor]]


def gives_features(net: nn.Module) -> bool:
    """Whether ``net`` (or the module a compile/DDP wrapper holds) has ``forward_features``."""
    inner = getattr(net, "_orig_mod", getattr(net, "module", net))
    return callable(getattr(inner, "forward_features", None))


def discriminator_features(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor | list[torch.Tensor], Features]:
    """``net``'s logits on ``x`` and its intermediate features per scale (see the module
    docstring); a ConfigError when ``net`` cannot give them."""
    if not gives_features(net):
        raise ConfigError(
            f"loss.feature_matching_weight: the {type(net).__name__} discriminator gives no "
            "intermediate features; use patchgan, patchgan_aa, pixelgan, multiscale or vgg, or set "
            "loss.feature_matching_weight=0"
        )
    inner = getattr(net, "_orig_mod", getattr(net, "module", net))
    return inner.forward_features(x)


class PatchGAN(nn.Module):
    """The pix2pix PatchGAN (``NLayerDiscriminator``): ``n_layers`` 3 is the 70x70 one,
    C64-C128-C256-C512 then a 1-channel conv.

    4x4 convs with padding 1, stride 2 except the last two; LeakyReLU 0.2; no norm on the
    first layer; widths double up to 8 x ``ndf``. A 256x256 input gives a 30x30 map.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        bias = conv_bias(norm)

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            conv = nn.Conv2d(cin, cout, 4, stride=stride, padding=1, bias=bias)
            return [conv, norm_layer(norm, cout), nn.LeakyReLU(0.2)]

        widths = [ndf * min(2**i, 8) for i in range(n_layers + 1)]
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        for i in range(1, n_layers):
            layers += block(widths[i - 1], widths[i], stride=2)
        layers += block(widths[n_layers - 1], widths[n_layers], stride=1)
        layers.append(nn.Conv2d(widths[n_layers], 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        if norm == "spectral":
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        logits, features = run_collecting(self.model, x)
        return logits, [features]


class PixelGAN(nn.Module):
    """The 1x1 PatchGAN (``PixelDiscriminator``): judges each pixel alone; the output map
    has the input's size."""

    def __init__(self, in_channels: int, ndf: int = 64, norm: str = "batch"):
        super().__init__()
        bias = conv_bias(norm)
        self.model = nn.Sequential(
            nn.Conv2d(in_channels, ndf, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            norm_layer(norm, ndf * 2),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )
        if norm == "spectral":
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        logits, features = run_collecting(self.model, x)
        return logits, [features]


class MultiScaleDiscriminator(nn.Module):
    """pix2pixHD's multi-scale discriminator: ``num_scales`` independent PatchGANs, the
    k-th seeing the input average-pooled k times (3x3, stride 2, padding 1,
    ``count_include_pad=False``). Returns their maps as a list, full resolution first."""

    def __init__(
        self,
        in_channels: int,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "batch",
        num_scales: int = 2,
    ):
        super().__init__()
        self.discriminators = nn.ModuleList(
            PatchGAN(in_channels, ndf, n_layers, norm) for _ in range(num_scales)
        )
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for i, discriminator in enumerate(self.discriminators):
            if i > 0:
                x = self.downsample(x)
            maps.append(discriminator(x))
        return maps

    def forward_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], Features]:
        maps, features = [], []
        for i, discriminator in enumerate(self.discriminators):
            if i > 0:
                x = self.downsample(x)
            logits, (scale_features,) = discriminator.forward_features(x)
            maps.append(logits)
            features.append(scale_features)
        return maps, features


class VGGStyleDiscriminator(nn.Module):
    """The SRGAN paper's discriminator (BasicSR's ``VGGStyleDiscriminator``) for 128x128
    inputs: five stages of [conv3x3 stride 1, conv4x4 stride 2] with widths 64-128-256-512-
    512, LeakyReLU 0.2, norm after every conv but the first, then dense 100 -> dense 1.

    Not fully convolutional: it takes exactly 128x128 images (``data.gt_size: 128``) and
    returns one logit per image, shaped (N, 1, 1, 1).
    """

    input_size = 128

    def __init__(self, in_channels: int, ndf: int = 64, norm: str = "batch"):
        super().__init__()
        bias = conv_bias(norm)

        def conv(cin: int, cout: int, kernel: int, stride: int) -> list[nn.Module]:
            layer = nn.Conv2d(cin, cout, kernel, stride, padding=1, bias=bias)
            return [layer, norm_layer(norm, cout), nn.LeakyReLU(0.2)]

        widths = [ndf, ndf * 2, ndf * 4, ndf * 8, ndf * 8]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 3, 1, 1), nn.LeakyReLU(0.2)]
        layers += conv(ndf, ndf, 4, 2)
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += conv(cin, cout, 3, 1) + conv(cout, cout, 4, 2)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(ndf * 8 * 4 * 4, 100),
            nn.LeakyReLU(0.2),
            nn.Linear(100, 1),
        )
        if norm == "spectral":
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ConfigError(
                f"the vgg discriminator takes {self.input_size}x{self.input_size} images "
                f"(data.gt_size: {self.input_size}), got {x.shape[-2]}x{x.shape[-1]}; set "
                "data.gt_size to 128 or use model.discriminator.name=patchgan"
            )
        x, features = run_collecting(self.features, x)
        x, head = run_collecting(self.classifier, x)
        return x.view(-1, 1, 1, 1), [features + head]
