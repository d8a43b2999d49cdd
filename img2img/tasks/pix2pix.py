"""pix2pix (Isola et al. 2017): a conditional GAN from A to B with an L1 term.

G maps A to B; the conditional discriminator D sees (A, B) stacked on the channel axis.
Objective: ``gan_weight * GAN(D(A, G(A)))  +  pixel_weight * L1(G(A), B)`` (the recipe:
vanilla GAN, 100 x L1), and optionally a perceptual term. The discriminator loss is halved
(``loss.d_loss_scale``). As in the reference, D is updated before G at every step.

Data: A|B images side by side, or ``A/`` and ``B/`` folders matched by name (the
defaults of :class:`~img2img.tasks.base.Task`). The baseline is the identity (the input
itself, when it has the target's shape).
"""

from __future__ import annotations

import torch

from img2img.nets.contract import forward_padded
from img2img.tasks.base import Batch, Nets, Pool, Task, as_rgb, to_unit


class Pix2PixTask(Task):
    name = "pix2pix"
    d_first = True

    def forward(self, G: Nets, batch: Batch) -> Batch:
        return {"fake_B": G["G"](batch["A"])}

    def discriminator_loss(self, D: Nets, batch: Batch, out: Batch, pool: Pool) -> dict:
        real = torch.cat([batch["A"], batch["B"]], dim=1)
        fake = torch.cat([batch["A"], out["fake_B"]], dim=1)
        return self.d_terms(D["D"], real, fake, "D")

    def generator_loss(self, D: Nets, batch: Batch, out: Batch) -> dict:
        loss = self.config.loss
        fake_B, real_B = out["fake_B"], batch["B"]
        terms = {}
        if "D" in D and loss.gan_weight > 0:
            terms |= self.g_adversarial(D["D"], torch.cat([batch["A"], fake_B], dim=1),
                                        torch.cat([batch["A"], real_B], dim=1))
        if loss.pixel_weight > 0:
            terms[f"G_{loss.pixel.upper()}"] = loss.pixel_weight * self.pixel(fake_B, real_B)
        if self.perceptual is not None:
            terms["G_perceptual"] = loss.perceptual_weight * self.perceptual(
                *self.perceptual_pair(batch, fake_B)
            )
        return terms

    def perceptual_pair(self, batch: Batch, fake_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, target) as RGB in [-1, 1] for the VGG perceptual loss."""
        return as_rgb(fake_B), as_rgb(batch["B"])

    def visuals(self, batch: Batch, out: Batch) -> list[torch.Tensor]:
        return [as_rgb(batch["A"]), as_rgb(out["fake_B"]), as_rgb(batch["B"])]

    def evaluate_batch(self, G: Nets, batch: Batch) -> dict[str, torch.Tensor]:
        A, B = batch["A"], batch["B"]
        result = {"pred": to_unit(as_rgb(forward_padded(G["G"], A))), "target": to_unit(as_rgb(B))}
        if A.shape[1] == B.shape[1] and A.shape[-2:] == B.shape[-2:]:
            result["baseline"] = to_unit(as_rgb(A))  # the identity
        return result
