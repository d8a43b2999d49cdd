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

The ESRGAN-family SR generators (``rrdbnet``, ``srvgg_compact``, ``span``) always run their
layers on [0, 1] images (the original code's convention, so original weights import and
exports load in spandrel) and ignore ``value_range``, ``norm``, ``dropout``, ``padding``
and ``init``: they keep their reference init. ``ngf`` is their feature width (RRDBNet and
the compact net: 64; SPAN: 48, which its recipes set). ``n_blocks`` is RRDBNet's number of
RRDBs (unset: 23) and the compact net's number of body convs (unset: 16, the reference's
default; realesr-general-x4v3 has 32); SPAN has a fixed six blocks and refuses it.
``growth`` is RRDBNet's dense growth (unset: 32); other generators refuse it.
The discriminators ``unet_sn`` (Real-ESRGAN's U-Net with its own spectral norm; reads
``ndf``) and ``vgg128`` (ESRGAN's VGG-style discriminator with batch norm; reads ``ndf``)
keep PyTorch's default init, as their reference code, and ignore ``norm``/``init``.

CUT's networks (:mod:`img2img.nets.antialias`): ``resnet_aa`` (reads ``n_blocks``, unset:
9) and ``resnet_9blocks_aa`` are the ResNet generator as one flat list of layers whose
encoder outputs can be read out, with blur-pool down/upsampling when ``antialias`` (the
only generator that reads it; false: strided and transposed convolutions);
``patchgan_aa`` is the PatchGAN with blur-pool downsampling (``patchgan`` is the switch).

StarGAN's networks (:mod:`img2img.nets.stargan`): ``stargan_resnet`` (reads ``ngf`` and
``n_blocks``, unset: 6; its input channels are the image's plus one per domain) and
``stargan_patchgan`` (reads ``ndf`` and ``n_layers``; built with the number of domains
and the training image side, which its task passes to :func:`build_discriminator`). Both
keep PyTorch's default init, as their reference code, and ignore ``norm``/``init``.

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
from img2img.nets.antialias import AntialiasedPatchGAN, AntialiasedResnetGenerator
from img2img.nets.discriminators import (
    MultiScaleDiscriminator,
    PatchGAN,
    PixelGAN,
    VGGStyleDiscriminator,
)
from img2img.nets.generators import ResnetGenerator, SRResNet, SRResNetBN, UNetGenerator
from img2img.nets.layers import init_weights
from img2img.nets.rrdb import RRDBNet
from img2img.nets.span import SPAN
from img2img.nets.srvgg import SRVGGNetCompact
from img2img.nets.stargan import DomainPatchDiscriminator, DomainResnetGenerator
from img2img.nets.unet_sn import UNetDiscriminatorSN

__all__ = [
    "DISCRIMINATORS",
    "AntialiasedPatchGAN",
    "AntialiasedResnetGenerator",
    "DomainPatchDiscriminator",
    "DomainResnetGenerator",
    "GENERATORS",
    "MultiScaleDiscriminator",
    "PatchGAN",
    "PixelGAN",
    "RRDBNet",
    "ResnetGenerator",
    "SPAN",
    "SRVGGNetCompact",
    "SRResNet",
    "SRResNetBN",
    "UNetDiscriminatorSN",
    "UNetGenerator",
    "VGGStyleDiscriminator",
    "build_discriminator",
    "build_generator",
    "init_weights",
]

SR_GENERATORS = ("srresnet", "srresnet_bn", "rrdbnet", "srvgg_compact", "span")
#: Discriminators that keep their reference code's init (``init``/``init_gain`` do not apply).
SELF_INIT_DISCRIMINATORS = ("unet_sn", "vgg128", "stargan_patchgan")
#: Generators that keep their reference code's init (besides the SR ones).
SELF_INIT_GENERATORS = ("stargan_resnet",)


# --------------------------------------------------------------------------- generators


def _unet(cfg: GeneratorConfig, cin: int, cout: int, num_downs: int | None = None) -> nn.Module:
    depth = cfg.num_downs if num_downs is None else num_downs
    return UNetGenerator(cin, cout, depth, cfg.ngf, cfg.norm, cfg.dropout)


def _resnet_aa(cfg: GeneratorConfig, cin: int, cout: int, n_blocks: int | None = None) -> nn.Module:
    if n_blocks is None:
        n_blocks = 9 if cfg.n_blocks is None else cfg.n_blocks
    elif cfg.n_blocks is not None and cfg.n_blocks != n_blocks:
        raise ConfigError(f"model.generator.n_blocks: {cfg.n_blocks} conflicts with {cfg.name} "
                          f"({n_blocks} blocks); leave it unset, or use name 'resnet_aa' to choose the depth")
    return AntialiasedResnetGenerator(cin, cout, n_blocks, cfg.ngf, cfg.norm, cfg.dropout, cfg.padding,
                                      cfg.antialias)


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


def _rrdbnet(cfg: GeneratorConfig, cin: int, cout: int, scale: int) -> nn.Module:
    n_blocks = 23 if cfg.n_blocks is None else cfg.n_blocks
    return RRDBNet(cin, cout, cfg.ngf, n_blocks, 32 if cfg.growth is None else cfg.growth, scale=scale)


def _srvgg_compact(cfg: GeneratorConfig, cin: int, cout: int, scale: int) -> nn.Module:
    n_convs = 16 if cfg.n_blocks is None else cfg.n_blocks
    return SRVGGNetCompact(cin, cout, cfg.ngf, n_convs, scale)


def _span(cfg: GeneratorConfig, cin: int, cout: int, scale: int) -> nn.Module:
    if cfg.n_blocks is not None:
        raise ConfigError("model.generator.n_blocks: span has a fixed six blocks; leave it unset")
    return SPAN(cin, cout, cfg.ngf, scale)


def _stargan_resnet(cfg: GeneratorConfig, cin: int, cout: int) -> nn.Module:
    return DomainResnetGenerator(cin, cout, cfg.ngf, 6 if cfg.n_blocks is None else cfg.n_blocks)


GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "unet_128": partial(_unet, num_downs=7),
    "unet_256": partial(_unet, num_downs=8),
    "unet": _unet,
    "resnet_6blocks": partial(_resnet, n_blocks=6),
    "resnet_9blocks": partial(_resnet, n_blocks=9),
    "resnet": _resnet,
    "resnet_9blocks_aa": partial(_resnet_aa, n_blocks=9),
    "resnet_aa": _resnet_aa,
    "srresnet": _srresnet,
    "srresnet_bn": _srresnet_bn,
    "rrdbnet": _rrdbnet,
    "srvgg_compact": _srvgg_compact,
    "span": _span,
    "stargan_resnet": _stargan_resnet,
}


def _unknown(kind: str, name: str, registry: dict) -> ConfigError:
    return ConfigError(
        f"model.{kind}.name: unknown {kind} {name!r}; allowed: {'|'.join(registry)}"
    )


def build_generator(
    cfg: GeneratorConfig, in_channels: int, out_channels: int, scale: int = 1
) -> nn.Module:
    """The generator ``cfg.name``, initialised. ``scale`` is the SR factor for the SR
    generators (:data:`SR_GENERATORS`) and must be 1 for the others."""
    if cfg.name not in GENERATORS:
        raise _unknown("generator", cfg.name, GENERATORS)
    if cfg.growth is not None and cfg.name != "rrdbnet":
        raise ConfigError(f"model.generator.growth: only rrdbnet has dense growth channels, not {cfg.name}; "
                          "leave it unset")
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
            f"x{scale}; use one of {'|'.join(SR_GENERATORS)}"
        )
    net = GENERATORS[cfg.name](cfg, in_channels, out_channels)
    return net if cfg.name in SELF_INIT_GENERATORS else init_weights(net, cfg.init, cfg.init_gain)


# --------------------------------------------------------------------------- discriminators


def _patchgan(cfg: DiscriminatorConfig, cin: int) -> nn.Module:
    return PatchGAN(cin, cfg.ndf, cfg.n_layers, cfg.norm)


def _patchgan_aa(cfg: DiscriminatorConfig, cin: int) -> nn.Module:
    return AntialiasedPatchGAN(cin, cfg.ndf, cfg.n_layers, cfg.norm)


def _pixelgan(cfg: DiscriminatorConfig, cin: int) -> nn.Module:
    return PixelGAN(cin, cfg.ndf, cfg.norm)


def _multiscale(cfg: DiscriminatorConfig, cin: int) -> nn.Module:
    return MultiScaleDiscriminator(cin, cfg.ndf, cfg.n_layers, cfg.norm, cfg.num_scales)


def _vgg(cfg: DiscriminatorConfig, cin: int) -> nn.Module:
    return VGGStyleDiscriminator(cin, cfg.ndf, cfg.norm)


def _unet_sn(cfg: DiscriminatorConfig, cin: int) -> nn.Module:
    return UNetDiscriminatorSN(cin, cfg.ndf)


def _vgg128(cfg: DiscriminatorConfig, cin: int) -> nn.Module:
    return VGGStyleDiscriminator(cin, cfg.ndf, "batch")


def _stargan_patchgan(cfg: DiscriminatorConfig, cin: int, domains: int = 2, image_size: int = 128) -> nn.Module:
    return DomainPatchDiscriminator(cin, cfg.ndf, cfg.n_layers, domains, image_size)


DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "patchgan": _patchgan,
    "patchgan_aa": _patchgan_aa,
    "pixelgan": _pixelgan,
    "multiscale": _multiscale,
    "vgg": _vgg,
    "unet_sn": _unet_sn,
    "vgg128": _vgg128,
    "stargan_patchgan": _stargan_patchgan,
}


def build_discriminator(cfg: DiscriminatorConfig, in_channels: int, **shape: int) -> nn.Module:
    """The discriminator ``cfg.name`` for ``in_channels``-channel inputs, initialised;
    ``shape``: what a discriminator with a classifier head needs to know (``domains``,
    ``image_size``), passed to its builder."""
    if cfg.name == "none":
        raise ConfigError(
            "model.discriminator.name is 'none': this config has no discriminator to build"
        )
    if cfg.name not in DISCRIMINATORS:
        raise _unknown("discriminator", cfg.name, DISCRIMINATORS)
    net = DISCRIMINATORS[cfg.name](cfg, in_channels, **shape)
    if cfg.name in SELF_INIT_DISCRIMINATORS:
        return net
    return init_weights(net, cfg.init, cfg.init_gain)
