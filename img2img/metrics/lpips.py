"""LPIPS, the learned perceptual image patch similarity (Zhang et al. 2018, "The Unreasonable
Effectiveness of Deep Features as a Perceptual Metric"), version 0.1, with the AlexNet or
VGG16 backbone, as richzhang/PerceptualSimilarity's ``lpips.LPIPS(net=..., version="0.1")``.

For images x, y in [-1, 1]: both are shifted and scaled per channel (shift -0.030,
-0.088, -0.188; scale 0.458, 0.448, 0.450); the backbone's features are taken after five
ReLUs (AlexNet: relu1 .. relu5; VGG16: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3); each
feature vector is divided by its L2 norm over channels (+ 1e-10); the squared differences
are weighted per channel by a 1x1 conv without bias (the learned "linear layers"),
averaged over the positions, and summed over the five layers. 0: identical; lower is
more alike.

Weights come from two local files, as FID's do (nothing is downloaded but torchvision's
backbone into torch.hub's cache):

- the linear layers: the v0.1 file of the chosen backbone (``lpips/weights/v0.1/alex.pth``
  or ``vgg.pth`` in richzhang/PerceptualSimilarity, 6-7 KB; keys ``lin0.model.1.weight``
  .. ``lin4.model.1.weight``), given as ``eval.lpips_weights`` / ``--lpips-weights``; a
  file whose SHA-256 is not the published one's gets a warning (its numbers are not those
  of papers);
- the backbone: torchvision's ImageNet file (``alexnet-owt-7be5be79.pth`` or
  ``vgg16-397923af.pth``; ``imagenet`` takes it from torch.hub's cache, downloading it
  there when absent) or a local copy (``eval.lpips_backbone``), its hash checked when it
  has torchvision's name. Only its ``features.*`` tensors are used.

Every file is read with :func:`img2img.files.read_weights_file` (``weights_only``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from img2img.errors import UserError
from img2img.log import get_logger

log = get_logger(__name__)

NETS = ("alex", "vgg")
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10
#: torchvision's ImageNet backbones (the hex digits in each name begin its SHA-256).
BACKBONE_URLS = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
#: SHA-256 of the published v0.1 linear-layer files.
LINEAR_SHA256 = {
    "alex": "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    "vgg": "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
}
# The backbones as torchvision's ``features`` (same indices, so its state dicts load):
# ("conv", out channels, kernel, stride, padding), ("pool", kernel, stride).
_ALEX = [("conv", 64, 11, 4, 2), ("pool", 3, 2), ("conv", 192, 5, 1, 2), ("pool", 3, 2),
         ("conv", 384, 3, 1, 1), ("conv", 256, 3, 1, 1), ("conv", 256, 3, 1, 1)]
_VGG16 = [("conv", 64, 3, 1, 1), ("conv", 64, 3, 1, 1), ("pool", 2, 2),
          ("conv", 128, 3, 1, 1), ("conv", 128, 3, 1, 1), ("pool", 2, 2),
          *[("conv", 256, 3, 1, 1)] * 3, ("pool", 2, 2),
          *[("conv", 512, 3, 1, 1)] * 3, ("pool", 2, 2),
          *[("conv", 512, 3, 1, 1)] * 3]
#: The index in ``features`` of the ReLU after which each of the five taps is read.
TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
#: The smallest image side each backbone reaches its last tap on (AlexNet's 11x11 stride-4
#: conv and two 3x3 stride-2 pools; VGG16's four 2x2 pools).
MIN_SIDE = {"alex": 31, "vgg": 16}


def backbone_features(net: str) -> nn.Sequential:
    """torchvision's ``alexnet().features`` / ``vgg16().features`` up to the last tap
    (randomly initialised)."""
    layers: list[nn.Module] = []
    cin = 3
    for spec in _ALEX if net == "alex" else _VGG16:
        if spec[0] == "pool":
            layers.append(nn.MaxPool2d(spec[1], spec[2]))
            continue
        _, cout, kernel, stride, padding = spec
        layers += [nn.Conv2d(cin, cout, kernel, stride, padding), nn.ReLU()]
        cin = cout
    return nn.Sequential(*layers)


class LinearLayer(nn.Module):
    """One of LPIPS's "linear layers": dropout (inactive in eval) -> 1x1 conv to one
    channel, no bias (so its weight's key is ``model.1.weight``, as in the v0.1 files)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """LPIPS v0.1 (see the module docstring), frozen, in eval mode. ``forward(pred,
    target)`` takes N3HW images in [0, 1] and returns the N distances."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in NETS:
            raise UserError(f"eval.lpips: unknown backbone {net!r}; allowed: {'|'.join(NETS)}")
        self.net = net
        self.features = backbone_features(net)
        self.lin0, self.lin1, self.lin2, self.lin3, self.lin4 = (LinearLayer(c) for c in CHANNELS[net])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        """Stays in eval mode: the metric is frozen."""
        return super().train(False)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five unit-normalised feature maps of an image in [0, 1]."""
        x = ((x * 2 - 1) - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS[self.net]:
                out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS))
        return out

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        h, w = pred.shape[-2:]
        if min(h, w) < MIN_SIDE[self.net]:
            raise UserError(f"LPIPS ({self.net}) needs images of at least {MIN_SIDE[self.net]} "
                            f"pixels a side, got {w}x{h}")
        total = pred.new_zeros(pred.shape[0])
        lins = (self.lin0, self.lin1, self.lin2, self.lin3, self.lin4)
        for lin, a, b in zip(lins, self.taps(pred), self.taps(target)):
            total = total + lin((a - b).pow(2)).mean(dim=(1, 2, 3))
        return total


# --------------------------------------------------------------------------- weights


def _read(path: Path, what: str) -> dict[str, torch.Tensor]:
    from img2img.files import read_weights_file

    try:
        state = read_weights_file(path)
    except ValueError as err:
        raise UserError(f"{what}: cannot read {path}: {err}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{what}: {path} does not hold a state dict of tensors")
    return state


def _backbone_state(net: str, backbone: str) -> dict[str, torch.Tensor]:
    """torchvision's backbone state dict: ``imagenet`` (torch.hub's cache) or a file."""
    from img2img.pretrained import check_named_hash, fetch_hub_checkpoint, url_file_name

    url = BACKBONE_URLS[net]
    name = url_file_name(url)
    what = f"torchvision's ImageNet {'AlexNet' if net == 'alex' else 'VGG16'} weights {name}"
    fix = f"download {name} ({url}) where there is network access and pass eval.lpips_backbone=/path/to/{name}"
    if backbone == "imagenet":
        return _read(fetch_hub_checkpoint(url, what, fix), "eval.lpips_backbone")
    path = Path(backbone).expanduser()
    if not path.is_file():
        raise UserError(f"eval.lpips_backbone: file not found: {path} ({fix})")
    check_named_hash(path, name, what, f"Replace it with a good copy from {url}")
    return _read(path, "eval.lpips_backbone")


def _fill(module: nn.Module, state: dict[str, torch.Tensor], prefix: str, source: str, what: str) -> None:
    """Load ``module`` from ``state``'s ``prefix``-ed tensors; a UserError naming ``source``
    for a missing or misshapen one."""
    wanted = module.state_dict()
    picked = {}
    for key, target in wanted.items():
        value = state.get(prefix + key)
        if value is None:
            raise UserError(f"{what}: {source} lacks '{prefix}{key}'")
        if tuple(value.shape) != tuple(target.shape):
            raise UserError(f"{what}: in {source}, '{prefix}{key}' has shape {tuple(value.shape)}, "
                            f"expected {tuple(target.shape)}")
        picked[key] = value.float()
    module.load_state_dict(picked)


def load_lpips(
    net: str, weights: str | None, backbone: str = "imagenet", device: torch.device | str | None = None
) -> LPIPS:
    """LPIPS v0.1 with ``net``'s backbone (``backbone``: ``imagenet`` or a file) and the
    linear layers in ``weights`` (a local file; None is a UserError saying where to get it)."""
    metric = LPIPS(net)
    if not weights:
        raise UserError(
            f"eval.lpips: {net} needs the LPIPS v0.1 linear-layer file; download "
            f"lpips/weights/v0.1/{net}.pth from github.com/richzhang/PerceptualSimilarity and pass "
            f"eval.lpips_weights=/path/to/{net}.pth (img2img eval: --lpips-weights)"
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"eval.lpips_weights: file not found: {path}")
    _fill(metric.features, _backbone_state(net, backbone), "features.", backbone, "eval.lpips_backbone")
    lins = _read(path, "eval.lpips_weights")
    for i in range(len(CHANNELS[net])):
        _fill(getattr(metric, f"lin{i}"), lins, f"lin{i}.", str(path), "eval.lpips_weights")
    from img2img.pretrained import sha256_file

    if sha256_file(path) != LINEAR_SHA256[net]:
        log.warning("eval.lpips_weights: %s is not the published LPIPS v0.1 %s file; its numbers "
                    "are not comparable with papers'", path, net)
    return metric.to(device) if device is not None else metric
