"""Building blocks shared by the networks: the norm factory, spectral norm, weight init.

Norms (``generator.norm`` / ``discriminator.norm``):

- ``batch``: ``BatchNorm2d`` (affine, running statistics).
- ``instance``: ``InstanceNorm2d`` without affine parameters and without running
  statistics, as in the CycleGAN/pix2pix reference code.
- ``none``: no normalisation.
- ``spectral``: every convolution (and linear layer) of the network is wrapped in spectral
  normalisation (Miyato et al. 2018); no other normalisation.

Convolutions that feed a norm layer have a bias exactly when that norm has no affine shift
of its own, i.e. the bias is off only for ``batch`` (:func:`conv_bias`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from img2img.errors import ConfigError

NORMS = ("batch", "instance", "none", "spectral")
INITS = ("normal", "xavier", "kaiming", "orthogonal")
PADDINGS = {"reflect": "reflect", "replicate": "replicate", "zero": "zeros"}

WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ConfigError(f"norm: invalid value {norm!r}; allowed: {'|'.join(NORMS)}")
    return norm


def norm_layer(norm: str, channels: int) -> nn.Module:
    """The normalisation layer that follows a convolution with ``channels`` outputs."""
    check_norm(norm)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


def conv_bias(norm: str) -> bool:
    """Whether a convolution followed by ``norm`` needs its own bias (not for batch norm,
    whose affine shift would cancel it)."""
    return check_norm(norm) != "batch"


def padding_mode(padding: str) -> str:
    """``generator.padding`` (reflect|replicate|zero) as a ``Conv2d`` ``padding_mode``."""
    if padding not in PADDINGS:
        raise ConfigError(
            f"generator.padding: invalid value {padding!r}; allowed: {'|'.join(PADDINGS)}"
        )
    return PADDINGS[padding]


def apply_spectral_norm(net: nn.Module) -> nn.Module:
    """Wrap the weight of every convolution and linear layer of ``net`` in spectral norm."""
    for module in net.modules():
        if isinstance(module, WEIGHTED) and not parametrize.is_parametrized(module, "weight"):
            spectral_norm(module)
    return net


def has_spectral_norm(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight")


# --------------------------------------------------------------------------- init


def _weight_init(init: str, gain: float) -> Callable[[torch.Tensor], object]:
    if init == "normal":
        return lambda w: nn.init.normal_(w, 0.0, gain)
    if init == "xavier":
        return lambda w: nn.init.xavier_normal_(w, gain=gain)
    if init == "kaiming":
        return lambda w: nn.init.kaiming_normal_(w, a=0, mode="fan_in")
    if init == "orthogonal":
        return lambda w: nn.init.orthogonal_(w, gain=gain)
    raise ConfigError(f"init: invalid value {init!r}; allowed: {'|'.join(INITS)}")


def _init_weight(module: nn.Module, fill: Callable[[torch.Tensor], object]) -> None:
    """Fill ``module.weight``; a spectrally normalised weight gets its underlying tensor
    filled and its power-iteration vectors re-estimated for the new values."""
    if has_spectral_norm(module):
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        fill(module.weight)
        spectral_norm(module)
    else:
        fill(module.weight)


@torch.no_grad()
def init_weights(net: nn.Module, init: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise ``net`` in place as the pix2pix/CycleGAN reference does.

    Conv, transposed conv and linear weights: ``normal`` N(0, gain); ``xavier`` Xavier
    normal with ``gain``; ``kaiming`` Kaiming normal (fan_in, a=0; ``gain`` is not used);
    ``orthogonal`` with ``gain``. Their biases are 0. BatchNorm weights N(1, gain), biases 0.
    Other parameters (e.g. PReLU slopes) keep their defaults.
    """
    fill = _weight_init(init, gain)
    for module in net.modules():
        if isinstance(module, WEIGHTED):
            _init_weight(module, fill)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
    return net


@torch.no_grad()
def scaled_kaiming_init(net: nn.Module, scale: float = 0.1) -> nn.Module:
    """BasicSR's ``default_init_weights``: Kaiming normal (fan_in) times ``scale`` for every
    conv and linear weight, biases 0; BatchNorm weight 1, bias 0."""
    for module in net.modules():
        if isinstance(module, WEIGHTED):
            _init_weight(module, lambda w: w.copy_(nn.init.kaiming_normal_(w) * scale))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return net


def run_collecting(layers: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``x`` through ``layers``; return the output and the output of every LeakyReLU on
    the way (a discriminator's intermediate features, for feature matching)."""
    features = []
    for layer in layers:
        x = layer(x)
        if isinstance(layer, nn.LeakyReLU):
            features.append(x)
    return x, features
