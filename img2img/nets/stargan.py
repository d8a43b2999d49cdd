"""The networks of StarGAN (Choi et al. 2018, "StarGAN: unified generative adversarial
networks for multi-domain image-to-image translation"), as its reference code builds them.

:class:`DomainResnetGenerator` reads an image with the target domain's one-hot map stacked
on its channels (``in_channels`` = image channels + number of domains; the task builds that
input): a 7x7 convolution to ``ngf`` channels, two 4x4 stride-2 convolutions doubling the
width, ``n_blocks`` residual blocks (two 3x3 convolutions), two 4x4 stride-2 transposed
convolutions halving it, a 7x7 convolution to the image and tanh. Every convolution has
zero padding and no bias, each is followed by instance norm with an affine scale and shift
and ReLU. (Zero padding matters: the reference notes that the constant label maps carry no
signal through reflection padding and instance norm. Its instance norm also tracks running
statistics that are never used, as its networks never leave train mode; here instance norm
always normalises with the image's own statistics, the same computation.) It is not the
zoo's CycleGAN ResNet: that one has reflection padding, 3x3 downsampling and biases.

:class:`DomainPatchDiscriminator` is a PatchGAN without normalisation: ``n_layers`` 4x4
stride-2 convolutions (with bias) from ``ndf`` channels, doubling, each followed by
LeakyReLU(0.01); then two heads on the same features: a 3x3 convolution to one channel
(the realness map) and a convolution whose kernel covers the whole remaining map
(``image_size / 2**n_layers``) to one logit per domain. Both heads have no bias. The
forward returns ``(realness map, domain logits N x domains)``.

Both keep PyTorch's default initialisation, as the reference does.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


class DomainResidualBlock(nn.Module):
    """x + (conv3x3, IN, ReLU, conv3x3, IN)(x), without biases."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), _norm(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DomainResnetGenerator(nn.Module):
    """StarGAN's generator (see the module docstring); input: image and domain maps stacked."""

    size_multiple = 4

    def __init__(self, in_channels: int, out_channels: int = 3, ngf: int = 64, n_blocks: int = 6) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, 1
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ngf, 7, padding=3, bias=False), _norm(ngf), nn.ReLU(inplace=True)]
        width = ngf
        for _ in range(2):
            layers += [nn.Conv2d(width, width * 2, 4, stride=2, padding=1, bias=False), _norm(width * 2),
                       nn.ReLU(inplace=True)]
            width *= 2
        layers += [DomainResidualBlock(width) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1, bias=False),
                       _norm(width // 2), nn.ReLU(inplace=True)]
            width //= 2
        layers += [nn.Conv2d(width, out_channels, 7, padding=3, bias=False), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DomainPatchDiscriminator(nn.Module):
    """StarGAN's discriminator (see the module docstring): ``(realness map, domain logits)``."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 6, domains: int = 5,
                 image_size: int = 128) -> None:
        super().__init__()
        kernel = image_size >> n_layers
        if kernel < 1 or kernel << n_layers != image_size:
            raise ValueError(f"the domain head needs an image side that is a multiple of 2**{n_layers} "
                             f"(got {image_size})")
        layers: list[nn.Module] = []
        width, cin = ndf, in_channels
        for _ in range(n_layers):
            layers += [nn.Conv2d(cin, width, 4, stride=2, padding=1), nn.LeakyReLU(0.01)]
            cin, width = width, width * 2
        self.in_channels, self.domains, self.image_size = in_channels, domains, image_size
        self.features = nn.Sequential(*layers)
        self.realness = nn.Conv2d(cin, 1, 3, padding=1, bias=False)
        self.classify = nn.Conv2d(cin, domains, kernel, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.realness(h), self.classify(h).mean((2, 3))  # 1 x 1 at image_size
