"""Super-resolution: SRResNet (PSNR stage) and SRGAN (GAN stage) on one task.

G (SRResNet at ``data.scale``) maps LR (``A``) to HR (``B``). Generator objective::

    pixel_weight * L1(G(LR), HR) + perceptual_weight * VGG(G(LR), HR) + gan_weight * GAN

The PSNR stage has no discriminator (``model.discriminator.name: none``) and only the
pixel term; the GAN stage starts from its weights (``model.init_from``) and adds the
perceptual and adversarial terms. G is updated before D, as BasicSR's SRGAN model does.
Evaluation crops ``scale`` pixels from each border and reports RGB and Y numbers; the
baseline is MATLAB-bicubic upscaling of the LR input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from img2img.data import imresize
from img2img.inference import forward_padded
from img2img.tasks.base import Batch, Nets, Pool, Task, to_unit


class SRGANTask(Task):
    name = "srgan"
    d_first = False

    def forward(self, G: Nets, batch: Batch) -> Batch:
        return {"sr": G["G"](batch["A"])}

    def generator_loss(self, D: Nets, batch: Batch, out: Batch) -> dict:
        loss = self.config.loss
        sr, hr = out["sr"], batch["B"]
        terms = {}
        if loss.pixel_weight > 0:
            terms[f"G_{loss.pixel.upper()}"] = loss.pixel_weight * self.pixel(sr, hr)
        if self.perceptual is not None:
            terms["G_perceptual"] = loss.perceptual_weight * self.perceptual(sr, hr)
        if "D" in D and loss.gan_weight > 0:
            terms["G_GAN"] = self.g_gan_term(D["D"], sr)
        return terms

    def discriminator_loss(self, D: Nets, batch: Batch, out: Batch, pool: Pool) -> dict:
        return self.d_terms(D["D"], batch["B"], out["sr"], "D")

    def visuals(self, batch: Batch, out: Batch) -> list[torch.Tensor]:
        hr = batch["B"]
        nearest = F.interpolate(batch["A"].float(), size=hr.shape[-2:], mode="nearest")
        return [nearest, out["sr"].float().clamp(-1, 1), hr]

    def evaluate_batch(self, G: Nets, batch: Batch) -> dict[str, torch.Tensor]:
        lr, hr = batch["A"], batch["B"]
        scale = self.config.data.scale
        bicubic = imresize(to_unit(lr), scale=scale)
        return {
            "pred": to_unit(forward_padded(G["G"], lr)),
            "target": to_unit(hr),
            "baseline": bicubic.clamp(0, 1),
        }
