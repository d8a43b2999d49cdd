"""Loss functions: GAN objectives, gradient penalties, pixel and perceptual losses, feature
matching, PatchNCE.

Every function returns an unweighted scalar; the task multiplies it by its weight from
``loss.*`` (``gan_weight``, ``pixel_weight``, ``gp_weight``, ``d_loss_scale`` ...).

GAN objectives (:class:`GANLoss`), for discriminator logits ``r`` on real and ``f`` on
fake images, each term a mean over all elements of the logit map:

=========  ======================================  ==============================
mode       discriminator loss                      generator loss
=========  ======================================  ==============================
vanilla    softplus(-r) + softplus(f)              softplus(-f)
           (BCE with logits: real 1, fake 0)       (BCE with logits: fake 1)
lsgan      (r - 1)^2 + f^2                         (f - 1)^2
wgangp     -r + f                                  -f
hinge      relu(1 - r) + relu(1 + f)               -f
=========  ======================================  ==============================

``ragan``: D pays softplus(-(r - E[f])) + softplus(f - E[r]), G pays (softplus(r - E[f]) +
softplus(-(f - E[r]))) / 2. It is ESRGAN's relativistic average GAN (Jolicoeur-Martineau 2018; Wang et al.
2018, eq. 1-2) with BCE, as BasicSR's ``ESRGANModel``: D judges whether a real image is
more realistic than the average fake and a fake less than the average real; E[.] is the
mean over all elements of the batch's logit map (a per-pixel map, e.g. ``unet_sn``'s, is
averaged as a whole). In D's terms the other side's mean carries no gradient (BasicSR
detaches it); G's loss needs D's logits on the real images too
(:meth:`GANLoss.generator_loss` with ``real_logits``), taken without gradient.

The discriminator loss is the plain sum of its real and fake terms
(:meth:`GANLoss.discriminator_terms` gives them apart, for logging); the reference code
halves it, which the task does with ``loss.d_loss_scale`` (0.5). WGAN-GP also needs
:func:`gradient_penalty` times ``loss.gp_weight``. A multi-scale discriminator's list of
maps gives the average of the per-map losses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from img2img.config import GAN_MODES, PIXEL_LOSSES
from img2img.errors import ConfigError
from img2img.nets.perceptual import VGGFeatureExtractor

Logits = torch.Tensor | Sequence[torch.Tensor]


def _as_list(logits: Logits) -> list[torch.Tensor]:
    return [logits] if isinstance(logits, torch.Tensor) else list(logits)


def _average(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(values).mean() if len(values) > 1 else values[0]


# --------------------------------------------------------------------------- GAN


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean binary cross-entropy of ``logits`` against a constant label."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class GANLoss:
    """One GAN objective (see the module docstring for the formulas)."""

    def __init__(self, mode: str = "vanilla") -> None:
        if mode not in GAN_MODES:
            raise ConfigError(f"loss.gan_mode: invalid value {mode!r}; allowed: {'|'.join(GAN_MODES)}")
        self.mode = mode

    def _real_term(self, x: torch.Tensor) -> torch.Tensor:
        """What D pays on real images."""
        x = x.float()
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(x, torch.ones_like(x))
        if self.mode == "lsgan":
            return F.mse_loss(x, torch.ones_like(x))
        if self.mode == "wgangp":
            return -x.mean()
        return F.relu(1.0 - x).mean()  # hinge

    def _fake_term(self, x: torch.Tensor) -> torch.Tensor:
        """What D pays on generated images."""
        x = x.float()
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(x, torch.zeros_like(x))
        if self.mode == "lsgan":
            return F.mse_loss(x, torch.zeros_like(x))
        if self.mode == "wgangp":
            return x.mean()
        return F.relu(1.0 + x).mean()  # hinge

    def _generator_term(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.mode in ("wgangp", "hinge"):
            return -x.mean()
        return self._real_term(x)  # vanilla, lsgan: fool D into calling fakes real

    @property
    def relativistic(self) -> bool:
        """Whether G's loss needs D's logits on real images (``ragan``)."""
        return self.mode == "ragan"

    def generator_loss(self, fake_logits: Logits, real_logits: Logits | None = None) -> torch.Tensor:
        """G's adversarial loss on D's logits for generated images (and, for ``ragan``,
        for the real ones, which are detached here)."""
        if not self.relativistic:
            return _average([self._generator_term(x) for x in _as_list(fake_logits)])
        if real_logits is None:
            raise ValueError("GANLoss('ragan').generator_loss needs real_logits")
        terms = []
        for r, f in zip(_as_list(real_logits), _as_list(fake_logits)):
            r, f = r.detach().float(), f.float()
            terms.append((_bce(r - f.mean(), 0.0) + _bce(f - r.mean(), 1.0)) / 2)
        return _average(terms)

    def discriminator_terms(
        self, real_logits: Logits, fake_logits: Logits
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """D's (real term, fake term), each averaged over scales; for separate logging."""
        if self.relativistic:
            pairs = list(zip(_as_list(real_logits), _as_list(fake_logits)))
            real = _average([_bce(r.float() - f.detach().float().mean(), 1.0) for r, f in pairs])
            fake = _average([_bce(f.float() - r.detach().float().mean(), 0.0) for r, f in pairs])
            return real, fake
        real = _average([self._real_term(x) for x in _as_list(real_logits)])
        fake = _average([self._fake_term(x) for x in _as_list(fake_logits)])
        return real, fake

    def __repr__(self) -> str:
        return f"GANLoss({self.mode!r})"


# --------------------------------------------------------------------------- penalties


def _input_gradients(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """d(sum of logits)/d(images), flattened per sample, kept differentiable."""
    (grad,) = torch.autograd.grad(
        outputs=logits.float().sum(), inputs=images, create_graph=True, retain_graph=True
    )
    return grad.reshape(grad.shape[0], -1)


def gradient_penalty(
    discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad_x D(x)||_2 - 1)^2] at x = a * real +
    (1 - a) * fake, a ~ U(0, 1) per sample.

    As in the pix2pix reference, the gradient is that of the sum of D's logit map. For a
    multi-scale D the penalty is averaged over its maps. The result is differentiable
    w.r.t. D's parameters (``create_graph=True``). The bare penalty is returned; the task
    multiplies it by ``loss.gp_weight`` (the paper's lambda = 10).
    """
    real, fake = real.detach(), fake.detach()
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
    penalties = []
    for logits in _as_list(discriminator(mixed)):
        grad = _input_gradients(logits, mixed)
        norm = torch.sqrt(grad.pow(2).sum(dim=1) + 1e-12)
        penalties.append((norm - 1.0).pow(2).mean())
    return _average(penalties)


def r1_penalty(real_logits: Logits, real_images: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E[||grad_x D(x)||_2^2] on real images, without the
    usual gamma / 2 (the task multiplies by ``loss.r1_weight``).

    ``real_images`` must have ``requires_grad=True`` before D is run on them. For a
    multi-scale D the penalty is averaged over its maps.
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty: call real_images.requires_grad_(True) before running D")
    penalties = [
        _input_gradients(logits, real_images).pow(2).sum(dim=1).mean()
        for logits in _as_list(real_logits)
    ]
    return _average(penalties)


# --------------------------------------------------------------------------- pixel


class CharbonnierLoss(nn.Module):
    """mean(sqrt((pred - target)^2 + eps^2)), a smooth L1 (Lai et al. 2017, eps = 1e-3)."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = pred.float() - target.float()
        return torch.sqrt(diff * diff + self.eps * self.eps).mean()


def pixel_loss(name: str) -> nn.Module:
    """``l1`` (mean absolute error), ``mse`` (mean squared error) or ``charbonnier``
    (:class:`CharbonnierLoss` with eps 1e-3); each ``module(pred, target)`` -> scalar."""
    if name == "l1":
        return nn.L1Loss()
    if name == "mse":
        return nn.MSELoss()
    if name == "charbonnier":
        return CharbonnierLoss()
    raise ConfigError(f"loss.pixel: invalid value {name!r}; allowed: {'|'.join(PIXEL_LOSSES)}")


# --------------------------------------------------------------------------- feature matching


def feature_matching_loss(real_features: Sequence[Sequence[torch.Tensor]],
                          fake_features: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """pix2pixHD's discriminator feature matching (Wang et al. 2018, eq. 4, as its
    ``loss_G_GAN_Feat``): for each scale ``s`` of the discriminator and each of its ``L_s``
    intermediate features, the mean absolute difference between the features of the fake and
    of the real input (the real ones carry no gradient), weighted ``4 / L_s`` per layer and
    ``1 / S`` per scale, i.e. ``4 x`` the mean over layers, averaged over the scales. With a
    PatchGAN of ``n_layers`` (``L = n_layers + 1``) this is pix2pixHD's ``feat_weights = 4 /
    (n_layers_D + 1)`` and ``D_weights = 1 / num_D``; its ``lambda_feat`` (10) is
    ``loss.feature_matching_weight``. Inputs: per scale, the list of feature maps
    (:func:`img2img.nets.discriminators.discriminator_features`). Float32 result."""
    if len(real_features) != len(fake_features) or not fake_features:
        raise ValueError(f"feature matching needs the same scales, got {len(real_features)} and {len(fake_features)}")
    total = fake_features[0][0].new_zeros((), dtype=torch.float32)
    for real_scale, fake_scale in zip(real_features, fake_features):
        layer_weight = 4.0 / len(fake_scale)
        for real, fake in zip(real_scale, fake_scale):
            total = total + layer_weight * F.l1_loss(fake.float(), real.detach().float())
    return total / len(fake_features)


# --------------------------------------------------------------------------- PatchNCE


def patch_nce_loss(query: torch.Tensor, key: torch.Tensor, images: int, temperature: float = 0.07) -> torch.Tensor:
    """PatchNCE (Park et al. 2020, eq. 2-3, as the CUT reference's ``PatchNCELoss``): each
    query patch must pick its own key (the input's patch at the same place) among the keys
    of the other patches of the *same image*, by cross-entropy over the similarities
    divided by ``temperature``.

    ``query`` and ``key`` are (``images`` * P) x C, image after image, unit length (what
    :class:`~img2img.nets.projection.PatchProjectionHead` gives). A query's own position
    among the negatives is masked with the similarity -10 before the division, as in the
    reference. The keys carry no gradient. Returns the mean over all query patches, in
    float32.
    """
    q = query.float().reshape(images, -1, query.shape[-1])
    k = key.detach().float().reshape(images, -1, key.shape[-1])
    positive = (q * k).sum(-1, keepdim=True)  # images x P x 1
    negative = torch.bmm(q, k.transpose(1, 2))  # images x P x P: other patches of the same image
    same = torch.eye(q.shape[1], dtype=torch.bool, device=q.device)
    negative = negative.masked_fill(same, -10.0)
    logits = torch.cat([positive, negative], dim=2).flatten(0, 1) / temperature
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)


# --------------------------------------------------------------------------- perceptual


class PerceptualLoss(nn.Module):
    """sum over layers of weight * criterion(VGG19_layer(pred), VGG19_layer(target)).

    ``layer_weights`` maps VGG19 layer names (``conv5_4``, ``relu2_2``, ...) to weights;
    layers with weight 0 are not computed. ``weights`` is ``imagenet``, ``none`` or a
    local file (see :mod:`img2img.nets.perceptual`). ``criterion`` is a :func:`pixel_loss`
    name. The target's features carry no gradient.
    """

    def __init__(
        self,
        layer_weights: dict[str, float],
        weights: str = "imagenet",
        criterion: str = "l1",
        input_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__()
        self.layer_weights = {k: float(w) for k, w in layer_weights.items() if w != 0}
        if not self.layer_weights:
            raise ConfigError(
                "loss.perceptual_layers: give at least one VGG19 layer a non-zero weight, "
                "e.g. {conv5_4: 1.0}"
            )
        self.vgg = VGGFeatureExtractor(self.layer_weights, weights, input_range)
        self.criterion = pixel_loss(criterion)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred_features = self.vgg(pred)
        with torch.no_grad():
            target_features = self.vgg(target.detach())
        total = pred.new_zeros((), dtype=torch.float32)
        for name, weight in self.layer_weights.items():
            total = total + weight * self.criterion(pred_features[name], target_features[name])
        return total
