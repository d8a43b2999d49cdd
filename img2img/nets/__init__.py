"""The backbone zoo, built by name from the config through two explicit registries.

``GENERATORS`` and ``DISCRIMINATORS`` map each name allowed in the config to a small
function that turns the config section into a network. Names that fix a depth
(``unet_256``, ``resnet_9blocks``) ignore the config's ``num_downs``/``n_blocks``; the plain
names (``unet``, ``resnet``, ``srresnet``) read them (``resnet`` defaults to 9 blocks,
the SRResNets to 16).

Which generator keys apply: all read ``ngf``. U-Net and ResNet read ``norm`` and
``dropout``; only ResNet reads ``padding`` (its residual blocks). The SRResNets fix their
normalisation by name (``srresnet``: none, ``srresnet_bn``: batch norm) and ignore
``norm``, ``dropout`` and ``padding``; only they read ``value_range`` (``unit``: the
layers run on [0, 1] images, as BasicSR trains them).

Weight init (``init``, ``init_gain``) is applied by :func:`build_generator` and
:func:`build_discriminator` (see :func:`img2img.nets.layers.init_weights`), except for
the SRResNet generators, which keep BasicSR's MSRResNet init (Kaiming normal times 0.1,
zero biases) whatever ``init`` says.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from img2img.config import DiscriminatorConfig, GeneratorConfig
from img2img.errors import ConfigError
from img2img.nets.discriminators import (
    MultiScaleDiscriminator,
    PatchGAN,
    PixelGAN,
    VGGStyleDiscriminator,
)
from img2img.nets.generators import ResnetGenerator, SRResNet, SRResNetBN, UNetGenerator
from img2img.nets.layers import init_weights

__all__ = [
    "DISCRIMINATORS",
    "GENERATORS",
    "MultiScaleDiscriminator",
    "PatchGAN",
    "PixelGAN",
    "ResnetGenerator",
    "SRResNet",
    "SRResNetBN",
    "UNetGenerator",
    "VGGStyleDiscriminator",
    "build_discriminator",
    "build_generator",
    "init_weights",
]

SR_GENERATORS = ("srresnet", "srresnet_bn")


# --------------------------------------------------------------------------- generators


def _unet(cfg: GeneratorConfig, cin: int, cout: int, num_downs: int | None = None) -> nn.Module:
    depth = cfg.num_downs if num_downs is None else num_downs
    return UNetGenerator(cin, cout, depth, cfg.ngf, cfg.norm, cfg.dropout)


def _resnet(cfg: GeneratorConfig, cin: int, cout: int, n_blocks: int | None = None) -> nn.Module:
    if n_blocks is None:
        n_blocks = 9 if cfg.n_blocks is None else cfg.n_blocks
    elif cfg.n_blocks is not None and cfg.n_blocks != n_blocks:
        raise ConfigError(
            f"model.generator.n_blocks: {cfg.n_blocks} conflicts with {cfg.name} "
            f"({n_blocks} blocks); leave it unset, or use name 'resnet' to choose the depth"
        )
    return ResnetGenerator(cin, cout, n_blocks, cfg.ngf, cfg.norm, cfg.dropout, cfg.padding)


def _srresnet(cfg: GeneratorConfig, cin: int, cout: int, scale: int) -> nn.Module:
    n_blocks = 16 if cfg.n_blocks is None else cfg.n_blocks
    return SRResNet(cin, cout, cfg.ngf, n_blocks, scale, cfg.value_range)


def _srresnet_bn(cfg: GeneratorConfig, cin: int, cout: int, scale: int) -> nn.Module:
    n_blocks = 16 if cfg.n_blocks is None else cfg.n_blocks
    return SRResNetBN(cin, cout, cfg.ngf, n_blocks, scale, cfg.value_range)


GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "unet_128": partial(_unet, num_downs=7),
    "unet_256": partial(_unet, num_downs=8),
    "unet": _unet,
    "resnet_6blocks": partial(_resnet, n_blocks=6),
    "resnet_9blocks": partial(_resnet, n_blocks=9),
    "resnet": _resnet,
    "srresnet": _srresnet,
    "srresnet_bn": _srresnet_bn,
}


def _unknown(kind: str, name: str, registry: dict) -> ConfigError:
    return ConfigError(
        f"model.{kind}.name: unknown {kind} {name!r}; allowed: {'|'.join(registry)}"
    )


def build_generator(
    cfg: GeneratorConfig, in_channels: int, out_channels: int, scale: int = 1
) -> nn.Module:
    """The generator ``cfg.name``, initialised. ``scale`` is the SR factor (2, 3 or 4) for
    the SRResNets and must be 1 for the others."""
    if cfg.name not in GENERATORS:
        raise _unknown("generator", cfg.name, GENERATORS)
    if cfg.name in SR_GENERATORS:
        return GENERATORS[cfg.name](cfg, in_channels, out_channels, scale)
    if cfg.value_range != "signed":
        raise ConfigError(
            f"model.generator.value_range: 'unit' ([0, 1] inside the network, for BasicSR "
            f"weights) applies to srresnet and srresnet_bn, not {cfg.name}"
        )
    if scale != 1:
        raise ConfigError(
            f"model.generator.name: {cfg.name} keeps the image size and cannot upsample "
            f"x{scale}; use srresnet or srresnet_bn"
        )
    net = GENERATORS[cfg.name](cfg, in_channels, out_channels)
    return init_weights(net, cfg.init, cfg.init_gain)


# --------------------------------------------------------------------------- discriminators


def _patchgan(cfg: DiscriminatorConfig, cin: int) -> nn.Module:
    return PatchGAN(cin, cfg.ndf, cfg.n_layers, cfg.norm)


def _pixelgan(cfg: DiscriminatorConfig, cin: int) -> nn.Module:
    return PixelGAN(cin, cfg.ndf, cfg.norm)


def _multiscale(cfg: DiscriminatorConfig, cin: int) -> nn.Module:
    return MultiScaleDiscriminator(cin, cfg.ndf, cfg.n_layers, cfg.norm, cfg.num_scales)


def _vgg(cfg: DiscriminatorConfig, cin: int) -> nn.Module:
    return VGGStyleDiscriminator(cin, cfg.ndf, cfg.norm)


DISCRIMINATORS: dict[str, Callable[[DiscriminatorConfig, int], nn.Module]] = {
    "patchgan": _patchgan,
    "pixelgan": _pixelgan,
    "multiscale": _multiscale,
    "vgg": _vgg,
}


def build_discriminator(cfg: DiscriminatorConfig, in_channels: int) -> nn.Module:
    """The discriminator ``cfg.name`` for ``in_channels``-channel inputs, initialised."""
    if cfg.name == "none":
        raise ConfigError(
            "model.discriminator.name is 'none': this config has no discriminator to build"
        )
    if cfg.name not in DISCRIMINATORS:
        raise _unknown("discriminator", cfg.name, DISCRIMINATORS)
    net = DISCRIMINATORS[cfg.name](cfg, in_channels)
    return init_weights(net, cfg.init, cfg.init_gain)
