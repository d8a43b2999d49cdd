"""What every task shares: the GAN objective, the discriminator step, and evaluation output.

A task is told which networks to use for each call, because the trainer decides which
wrapper runs (the DDP-wrapped module where gradients flow, the plain module where a
frozen discriminator only scores a fake). Loss methods return a dict of named, already
weighted terms; the trainer sums them, checks them, and steps the optimizers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from img2img.config import Config
from img2img.losses import GANLoss, PerceptualLoss, gradient_penalty, pixel_loss, r1_penalty

Nets = dict[str, nn.Module]
Batch = dict[str, torch.Tensor]
Pool = Callable[[str, torch.Tensor], torch.Tensor]


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped, float32."""
    return ((x.float() + 1) / 2).clamp_(0, 1)


def as_rgb(x: torch.Tensor) -> torch.Tensor:
    """Show a 1- or 2-channel image as RGB (grey; for 2 channels, the first one)."""
    if x.shape[1] == 3:
        return x
    return x[:, :1].expand(-1, 3, -1, -1)


class Task:
    """Base class of the four tasks."""

    name: ClassVar[str]
    #: pix2pix updates D before G; CycleGAN and SRGAN update G first (as their references do).
    d_first: ClassVar[bool] = False
    #: keys of a batch that hold images (moved to the device, made channels_last).
    image_keys: ClassVar[tuple[str, ...]] = ("A", "B")

    def __init__(self, config: Config) -> None:
        self.config = config
        self.gan = GANLoss(config.loss.gan_mode)
        self.pixel = pixel_loss(config.loss.pixel)
        self.perceptual: PerceptualLoss | None = None

    # ------------------------------------------------------------------ set-up
    def setup_losses(self, device: torch.device) -> None:
        """Build the loss networks training needs (the VGG of the perceptual loss)."""
        loss = self.config.loss
        if loss.perceptual_weight > 0:
            self.perceptual = PerceptualLoss(
                loss.perceptual_layers, weights=loss.vgg_weights, input_range=(-1.0, 1.0)
            ).to(device)

    def prepare(
        self, batch: dict, device: torch.device, channels_last: bool = False
    ) -> Batch:
        """Move the images of a collated batch to the device (task-specific conversions in
        subclasses, e.g. RGB -> Lab)."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        out = dict(batch)
        for key in self.image_keys:
            if key in batch:
                out[key] = batch[key].to(device, non_blocking=True).contiguous(memory_format=fmt)
        return out

    # ------------------------------------------------------------------ training
    def forward(self, G: Nets, batch: Batch) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def generator_loss(self, D: Nets, batch: Batch, out: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def discriminator_loss(
        self, D: Nets, batch: Batch, out: Batch, pool: Pool
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def d_terms(
        self, net: nn.Module, real: torch.Tensor, fake: torch.Tensor, prefix: str
    ) -> dict[str, torch.Tensor]:
        """One discriminator's loss terms ``d_loss_scale * real term`` and ``d_loss_scale *
        fake term`` (logged as ``<D>_real`` and ``<D>_fake``), plus the
        gradient penalty for ``wgangp`` and the R1 penalty when ``r1_weight > 0``."""
        loss = self.config.loss
        fake = fake.detach()
        if loss.r1_weight > 0:
            real = real.detach().requires_grad_(True)
        real_logits = net(real)
        fake_logits = net(fake)
        real_term, fake_term = self.gan.discriminator_terms(real_logits, fake_logits)
        terms = {f"{prefix}_real": loss.d_loss_scale * real_term, f"{prefix}_fake": loss.d_loss_scale * fake_term}
        if loss.gan_mode == "wgangp" and loss.gp_weight > 0:
            terms[f"{prefix}_gp"] = loss.gp_weight * gradient_penalty(net, real.detach(), fake)
        if loss.r1_weight > 0:
            terms[f"{prefix}_r1"] = loss.r1_weight * r1_penalty(real_logits, real)
        return terms

    def g_gan_term(self, net: nn.Module, fake: torch.Tensor) -> torch.Tensor:
        return self.config.loss.gan_weight * self.gan.generator_loss(net(fake))

    def visuals(self, batch: Batch, out: Batch) -> list[torch.Tensor]:
        """Columns of the sample grid, each N x 3 x H x W in [-1, 1]."""
        raise NotImplementedError  # pragma: no cover - abstract

    # ------------------------------------------------------------------ evaluation
    def evaluate_batch(self, G: Nets, batch: Batch) -> dict[str, torch.Tensor]:
        """Predictions on whole validation images, in [0, 1] RGB: ``pred`` and ``target``
        (paired tasks) and ``baseline`` (the trivial answer a model must beat)."""
        raise NotImplementedError  # pragma: no cover - abstract
