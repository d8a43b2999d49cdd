"""VGG19 feature extractor for the perceptual loss (Johnson et al. 2016; SRGAN, ESRGAN).

Layers are named as in the papers: ``conv1_1`` .. ``conv5_4``, ``relu1_1`` .. ``relu5_4``,
``pool1`` .. ``pool5``. The extractor holds torchvision's ``vgg19().features`` layers (same
indices, so torchvision state dicts load as they are), truncated after the deepest layer
asked for, and is frozen: no gradients to its weights, always in eval mode.

Weights:

- ``"imagenet"``: torchvision's ``VGG19_Weights.IMAGENET1K_V1`` file (:data:`VGG19_IMAGENET_URL`),
  taken from torch.hub's cache (``<torch.hub.get_dir()>/checkpoints/vgg19-dcbb9e9d.pth``) or
  downloaded there. The file's SHA-256 must start with the hex digits in its name (torch.hub's
  convention), checked before it is read; it is read with
  :func:`img2img.files.read_weights_file`, never with torchvision's loader (which
  unpickles a cached file in full). Without network access, or when the cached file's hash
  is wrong, this is a :class:`UserError` that names the file and says to delete it or to pass
  a local file in ``loss.vgg_weights``.
- a path to a torchvision vgg19 state dict, ``.pth``/``.pt`` (read with
  ``torch.load(weights_only=True)``) or ``.safetensors``; keys with or without the
  ``features.`` prefix. Only the layers up to the deepest one used are needed. A file named
  ``vgg19-dcbb9e9d.pth`` must have that hash too.
- ``"none"``: random init (tests and offline demos; a warning is logged).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from img2img.errors import UserError
from img2img.log import get_logger

log = get_logger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Convolutions per block of VGG19 (configuration "E"), and their widths.
VGG19_BLOCKS = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))
# torchvision's VGG19_Weights.IMAGENET1K_V1; the hex digits in the file name begin its SHA-256.
VGG19_IMAGENET_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"


def vgg19_layer_names() -> list[str]:
    """Names of ``vgg19().features`` in order: conv1_1, relu1_1, conv1_2, ..., pool5."""
    names = []
    for block, (n_convs, _) in enumerate(VGG19_BLOCKS, start=1):
        for i in range(1, n_convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


VGG19_LAYERS = vgg19_layer_names()


def vgg19_features(num_layers: int = len(VGG19_LAYERS)) -> nn.Sequential:
    """The first ``num_layers`` layers of torchvision's ``vgg19().features`` (randomly
    initialised). ReLUs are not in place, so a conv output and its ReLU can both be read."""
    layers: list[nn.Module] = []
    cin = 3
    for n_convs, width in VGG19_BLOCKS:
        for _ in range(n_convs):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
            cin = width
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers[:num_layers])


def check_layer_names(names: Iterable[str]) -> list[str]:
    names = list(names)
    if not names:
        raise UserError("loss.perceptual_layers: name at least one VGG19 layer, e.g. conv5_4")
    for name in names:
        if name not in VGG19_LAYERS:
            raise UserError(
                f"loss.perceptual_layers: unknown VGG19 layer {name!r}; allowed: conv1_1 .. "
                "conv5_4, relu1_1 .. relu5_4, pool1 .. pool5"
            )
    return names


# --------------------------------------------------------------------------- weights


def _imagenet_names() -> tuple[str, str]:
    """The file name of the ImageNet VGG19 weights, and how the messages call them."""
    from img2img.pretrained import url_file_name

    name = url_file_name(VGG19_IMAGENET_URL)
    return name, f"torchvision's ImageNet VGG19 weights {name}"


def _imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet VGG19 state dict from torch.hub's cache (downloaded there if absent),
    its hash checked before it is read, read without unpickling anything but tensors."""
    from img2img.pretrained import fetch_hub_checkpoint

    name, what = _imagenet_names()
    fix = (f"download {name} where there is network access and pass its path: "
           f"loss.vgg_weights=/path/to/{name}")
    return _read_state(fetch_hub_checkpoint(VGG19_IMAGENET_URL, what, fix))


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A vgg19 state dict from a local file; a file with the name of torchvision's
    ImageNet file must have its hash."""
    if not path.is_file():
        raise UserError(
            f"loss.vgg_weights: file not found: {path} (give a torchvision vgg19 state dict "
            "as .pth or .safetensors, 'imagenet' or 'none')"
        )
    if path.suffix not in (".pth", ".pt", ".bin", ".safetensors"):
        raise UserError(f"loss.vgg_weights: {path} must end in .pth, .pt or .safetensors")
    from img2img.pretrained import check_named_hash

    name, what = _imagenet_names()
    check_named_hash(path, name, what, f"Replace it with a good copy from {VGG19_IMAGENET_URL} "
                     "(or give loss.vgg_weights another file)")
    return _read_state(path)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, read with the safe reader (nothing else unpickled)."""
    from img2img.files import read_weights_file

    try:
        state = read_weights_file(path)
    except ValueError as err:
        raise UserError(f"loss.vgg_weights: cannot read {path}: {err}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"loss.vgg_weights: {path} does not hold a state dict")
    return state


def load_vgg19_weights(features: nn.Sequential, weights: str) -> None:
    """Fill ``features`` from ``weights`` (``imagenet``, ``none`` or a file path)."""
    if weights == "none":
        log.warning("perceptual loss: VGG19 has random weights (loss.vgg_weights=none)")
        return
    if weights == "imagenet":
        state, source = _imagenet_state_dict(), "the ImageNet VGG19 weights"
    else:
        state, source = _read_weights_file(Path(weights)), str(weights)
    plain = {k.removeprefix("features."): v for k, v in state.items()}
    wanted = features.state_dict()
    for key, target in wanted.items():
        if key not in plain:
            raise UserError(
                f"loss.vgg_weights: {source} lacks the VGG19 weight 'features.{key}' (a "
                "torchvision vgg19 state dict is expected)"
            )
        if tuple(plain[key].shape) != tuple(target.shape):
            raise UserError(
                f"loss.vgg_weights: in {source}, 'features.{key}' has shape "
                f"{tuple(plain[key].shape)}, expected {tuple(target.shape)}"
            )
    features.load_state_dict({k: plain[k] for k in wanted})


# --------------------------------------------------------------------------- extractor


class VGGFeatureExtractor(nn.Module):
    """Frozen VGG19 that returns ``{layer name: features}`` for the layers asked for.

    ``input_range`` is the range of the images it is given, (-1, 1) inside img2img; they
    are mapped to [0, 1] and normalised with the ImageNet mean and std.
    """

    def __init__(
        self,
        layers: Iterable[str],
        weights: str = "imagenet",
        input_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__()
        self.layers = check_layer_names(layers)
        depth = max(VGG19_LAYERS.index(name) for name in self.layers) + 1
        self.features = vgg19_features(depth)
        load_vgg19_weights(self.features, weights)
        low, high = input_range
        if not high > low:
            raise UserError(f"input_range: expected (low, high) with high > low, got {input_range}")
        self.low, self.span = float(low), float(high - low)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatureExtractor:
        """Stays in eval mode: the extractor is frozen."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = ((x - self.low) / self.span - self.mean) / self.std
        wanted = set(self.layers)
        out = {}
        for name, layer in zip(VGG19_LAYERS, self.features):
            x = layer(x)
            if name in wanted:
                out[name] = x
        return out
