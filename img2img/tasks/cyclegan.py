"""CycleGAN (Zhu et al. 2017): unpaired translation with two generators and two critics.

``G_A``: A -> B, ``G_B``: B -> A. ``D_A`` tells real B from ``G_A(A)``, ``D_B`` real A from
``G_B(B)``. Generator objective (the recipe: LSGAN, cycle 10, identity 0.5)::

    GAN(D_A(G_A(A))) + GAN(D_B(G_B(B)))
    + cycle_weight * (|G_B(G_A(A)) - A| + |G_A(G_B(B)) - B|)
    + cycle_weight * identity_weight * (|G_A(B) - B| + |G_B(A) - A|)

Each discriminator sees fakes drawn through an image pool of ``loss.pool_size`` and its
loss is halved. G is updated before D at every step, as in the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from img2img.inference import forward_padded
from img2img.tasks.base import Batch, Nets, Pool, Task, to_unit


class CycleGANTask(Task):
    name = "cyclegan"
    d_first = False

    def forward(self, G: Nets, batch: Batch) -> Batch:
        A, B = batch["A"], batch["B"]
        out = {"fake_B": G["G_A"](A), "fake_A": G["G_B"](B)}
        out["rec_A"] = G["G_B"](out["fake_B"])
        out["rec_B"] = G["G_A"](out["fake_A"])
        if self.config.loss.identity_weight > 0:
            out["idt_A"] = G["G_A"](B)
            out["idt_B"] = G["G_B"](A)
        return out

    def generator_loss(self, D: Nets, batch: Batch, out: Batch) -> dict:
        loss = self.config.loss
        A, B = batch["A"], batch["B"]
        terms = {}
        if "D_A" in D and loss.gan_weight > 0:
            terms["G_A_GAN"] = self.g_gan_term(D["D_A"], out["fake_B"])
            terms["G_B_GAN"] = self.g_gan_term(D["D_B"], out["fake_A"])
        terms["cycle_A"] = loss.cycle_weight * F.l1_loss(out["rec_A"], A)
        terms["cycle_B"] = loss.cycle_weight * F.l1_loss(out["rec_B"], B)
        if "idt_A" in out:
            weight = loss.cycle_weight * loss.identity_weight
            terms["idt_A"] = weight * F.l1_loss(out["idt_A"], B)
            terms["idt_B"] = weight * F.l1_loss(out["idt_B"], A)
        return terms

    def discriminator_loss(self, D: Nets, batch: Batch, out: Batch, pool: Pool) -> dict:
        fake_B = pool("D_A", out["fake_B"].detach())
        fake_A = pool("D_B", out["fake_A"].detach())
        return {
            **self.d_terms(D["D_A"], batch["B"], fake_B, "D_A"),
            **self.d_terms(D["D_B"], batch["A"], fake_A, "D_B"),
        }

    def visuals(self, batch: Batch, out: Batch) -> list[torch.Tensor]:
        return [batch["A"], out["fake_B"], out["rec_A"], batch["B"], out["fake_A"], out["rec_B"]]

    unpaired = True

    def evaluate_batch(self, G: Nets, batch: Batch) -> dict[str, torch.Tensor]:
        """Unpaired: ``fake`` (G_A(A)) feeds FID/KID against the B images; the baseline is A
        itself."""
        A = batch["A"]
        return {"fake": to_unit(forward_padded(G["G_A"], A)), "baseline": to_unit(A)}
