"""Anti-aliased sampling (Zhang 2019, "Making convolutional networks shift-invariant
again") and the networks of CUT's reference code that use it (Park et al. 2020).

- :class:`BlurDownsample`: a fixed binomial low-pass filter, then stride 2 (blur-pool).
- :class:`BlurUpsample`: stride-2 zero insertion through a fixed binomial filter.
- :class:`AntialiasedResnetGenerator`: the CycleGAN ResNet generator as CUT builds it,
  whose encoder layers can also be read out (``forward(x, feature_layers)``) for the
  PatchNCE loss.
- :class:`AntialiasedPatchGAN`: the 70x70 PatchGAN with blur-pool downsampling.

The filters are buffers that are not saved (``persistent=False``): they are fixed, not
learned, so a state dict holds only weights.
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
    run_collecting,
)

#: Binomial filter taps by size (rows of Pascal's triangle).
BINOMIAL = {1: [1.0], 2: [1.0, 1.0], 3: [1.0, 2.0, 1.0], 4: [1.0, 3.0, 3.0, 1.0], 5: [1.0, 4.0, 6.0, 4.0, 1.0]}


def pad_edges(x: torch.Tensor, p: int, mode: str = "reflect") -> torch.Tensor:
    """Pad height and width by ``p`` on each side, reflecting (edge not repeated) or
    replicating, as ``F.pad`` in those modes. Under CPU autocast the same values are made
    by slicing, so they keep ``x``'s dtype: autocast runs ``F.pad``'s reflect and replicate
    modes in float32 there, a round trip per layer under bf16."""
    if not (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")):
        return F.pad(x, (p, p, p, p), mode=mode)
    for dim in (3, 2):
        if mode == "reflect":
            lo, hi = x.narrow(dim, 1, p).flip(dim), x[(slice(None),) * dim + (slice(-p - 1, -1),)].flip(dim)
        else:
            lo, hi = x.narrow(dim, 0, 1), x[(slice(None),) * dim + (slice(-1, None),)]
            lo, hi = torch.cat([lo] * p, dim), torch.cat([hi] * p, dim)
        x = torch.cat([lo, x, hi], dim)
    return x


class EdgePad(nn.Module):
    """:func:`pad_edges` as a layer (the generator's 7x7 convolutions' reflection pad)."""

    def __init__(self, p: int, mode: str = "reflect") -> None:
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pad_edges(x, self.p, self.mode)


def binomial_filter(size: int) -> torch.Tensor:
    """The 2-D binomial filter of ``size`` x ``size`` taps, summing to 1."""
    taps = torch.tensor(BINOMIAL[size])
    filt = taps[:, None] * taps[None, :]
    return filt / filt.sum()


class BlurDownsample(nn.Module):
    """Reflection pad, then a depthwise 3x3 binomial blur with stride 2: ceil(H/2) x ceil(W/2)."""

    def __init__(self, channels: int, size: int = 3) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("filt", binomial_filter(size).expand(channels, 1, size, size).clone(),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        filt = self.filt.to(x.dtype)
        return F.conv2d(pad_edges(x, (self.size - 1) // 2), filt, stride=2, groups=x.shape[1])


class BlurUpsample(nn.Module):
    """x2 upsampling: replication pad by 1, a depthwise 4x4 binomial transposed conv with
    stride 2 (the filter times 4 keeps the mean), cropped to exactly 2H x 2W."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("filt", (binomial_filter(size) * 4).expand(channels, 1, size, size).clone(),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        filt = self.filt.to(x.dtype)
        padding = 1 + (self.size - 1) // 2
        x = pad_edges(x, 1, "replicate")
        if self.size % 2 == 0:  # the reference crops one row and column from each side: pad 1 more
            return F.conv_transpose2d(x, filt, stride=2, padding=padding + 1, groups=x.shape[1])
        return F.conv_transpose2d(x, filt, stride=2, padding=padding, groups=x.shape[1])[:, :, 1:, 1:]


class _Block(nn.Module):
    """x + [pad - conv3x3 - norm - ReLU - (dropout 0.5) - pad - conv3x3 - norm](x), padded
    by ``padding`` (reflect and replicate with :class:`EdgePad`, zero by the conv); the ReLU
    works in place (the norm's backward does not need its output), as in the reference."""

    def __init__(self, channels: int, norm: str, padding: str, dropout: bool) -> None:
        super().__init__()
        mode, bias = padding_mode(padding), conv_bias(norm)

        def conv() -> list[nn.Module]:
            if mode == "zeros":
                return [nn.Conv2d(channels, channels, 3, padding=1, bias=bias)]
            return [EdgePad(1, mode), nn.Conv2d(channels, channels, 3, bias=bias)]

        layers = [*conv(), norm_layer(norm, channels), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [*conv(), norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class AntialiasedResnetGenerator(nn.Module):
    """CUT's ResNet generator: c7s1-64, d128, d256, n x R256, u128, u64, c7s1-3, tanh, as
    one flat list of layers (``self.layers``), in the reference code's order, so that
    layer ids mean what they mean there (for ResNet-9 with anti-aliasing: 0 the padded
    input, 4 and 8 the two downsampling convolutions, 12 and 16 the first and fifth
    residual blocks).

    With ``antialias`` each downsampling step is conv3x3 (stride 1) - norm - ReLU -
    :class:`BlurDownsample` and each upsampling step :class:`BlurUpsample` - conv3x3 -
    norm - ReLU; without it they are the CycleGAN generator's stride-2 conv and
    transposed conv (the reference's ``--no_antialias --no_antialias_up``). Either way it
    has as many parameters as :class:`~img2img.nets.generators.ResnetGenerator`
    (11,378,179 for ResNet-9 at 64 features, 3 -> 3 channels).

    ``forward(x)`` translates; ``forward(x, feature_layers)`` runs only up to the last of
    ``feature_layers`` and returns those layers' outputs, in order (the encoder
    features PatchNCE compares); with ``encode_only=False`` it translates and returns
    ``(output, features)``, the features read on the way.
    """

    def __init__(self, in_channels: int, out_channels: int, n_blocks: int = 9, ngf: int = 64,
                 norm: str = "instance", dropout: bool = False, padding: str = "reflect",
                 antialias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.scale, self.size_multiple = 1, 4
        self.min_size = 8  # reflection padding by 1 in the blocks needs 2x2 after two steps down
        bias = conv_bias(norm)

        def unit(conv: nn.Module, channels: int) -> list[nn.Module]:
            return [conv, norm_layer(norm, channels), nn.ReLU(inplace=True)]

        layers = [EdgePad(3), *unit(nn.Conv2d(in_channels, ngf, 7, bias=bias), ngf)]
        for c in (ngf, ngf * 2):  # down: c -> 2c
            if antialias:
                layers += [*unit(nn.Conv2d(c, 2 * c, 3, padding=1, bias=bias), 2 * c), BlurDownsample(2 * c)]
            else:
                layers += unit(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), 2 * c)
        layers += [_Block(ngf * 4, norm, padding, dropout) for _ in range(n_blocks)]
        for c in (ngf * 4, ngf * 2):  # up: c -> c/2
            if antialias:
                layers += [BlurUpsample(c), *unit(nn.Conv2d(c, c // 2, 3, padding=1, bias=bias), c // 2)]
            else:
                conv = nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias)
                layers += unit(conv, c // 2)
        layers += [EdgePad(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.layers = nn.Sequential(*layers)
        if norm == "spectral":
            apply_spectral_norm(self)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def check_feature_layers(self, ids: list[int] | tuple[int, ...], key: str) -> None:
        """A ConfigError naming ``key`` unless ``ids`` are increasing layer ids of this network."""
        ids = list(ids)
        if not ids or ids != sorted(set(ids)) or ids[0] < 0 or ids[-1] >= self.num_layers:
            raise ConfigError(
                f"{key}: {ids} must be increasing layer ids from 0 to {self.num_layers - 1} "
                f"(this generator has {self.num_layers} layers)"
            )

    def forward(self, x: torch.Tensor, feature_layers: list[int] | tuple[int, ...] | None = None,
                encode_only: bool = True):
        if not feature_layers:
            return self.layers(x)
        wanted, feats = set(feature_layers), []
        stop = max(feature_layers) + 1 if encode_only else len(self.layers)
        for i in range(stop):
            x = self.layers[i](x)
            if i in wanted:
                # The next layer may be an in-place ReLU: keep what was read out as it was.
                following = self.layers[i + 1] if i + 1 < stop else None
                in_place = isinstance(following, nn.ReLU) and following.inplace
                feats.append(x.clone() if in_place else x)
        return feats if encode_only else (x, feats)


class AntialiasedPatchGAN(nn.Module):
    """The PatchGAN of CUT's reference code: as :class:`~img2img.nets.discriminators.PatchGAN`
    (``n_layers`` 3: C64-C128-C256-C512, then a 1-channel map), but each stride-2 4x4 conv
    is a stride-1 4x4 conv followed by :class:`BlurDownsample` (after its LeakyReLU).
    Same parameters as the PatchGAN; a 256x256 input gives a 30x30 map as well."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        bias = conv_bias(norm)
        widths = [ndf * min(2**i, 8) for i in range(n_layers + 1)]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, padding=1), nn.LeakyReLU(0.2),
                                   BlurDownsample(ndf)]
        for i in range(1, n_layers):
            layers += [nn.Conv2d(widths[i - 1], widths[i], 4, padding=1, bias=bias), norm_layer(norm, widths[i]),
                       nn.LeakyReLU(0.2), BlurDownsample(widths[i])]
        layers += [nn.Conv2d(widths[n_layers - 1], widths[n_layers], 4, padding=1, bias=bias),
                   norm_layer(norm, widths[n_layers]), nn.LeakyReLU(0.2),
                   nn.Conv2d(widths[n_layers], 1, 4, padding=1)]
        self.model = nn.Sequential(*layers)
        if norm == "spectral":
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
        """Logits and the outputs of the LeakyReLUs (before their blur-pool), as PatchGAN's."""
        logits, features = run_collecting(self.model, x)
        return logits, [features]
