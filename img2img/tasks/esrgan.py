"""ESRGAN-family super-resolution on bicubic (MATLAB) LR: the SR task for any SR generator
(``rrdbnet``, ``srvgg_compact``, ``span``, the SRResNets) and any discriminator, with the
relativistic average GAN (``loss.gan_mode: ragan``) ESRGAN trains with.

G (at ``data.scale``) maps LR (``A``) to HR (``B``). Generator objective, as BasicSR's
``ESRGANModel.optimize_parameters``::

    pixel_weight * L1(G(LR), HR) + perceptual_weight * VGG(G(LR), HR)
        + gan_weight * (BCE(D(HR) - E[D(G(LR))], 0) + BCE(D(G(LR)) - E[D(HR)], 1)) / 2

and D's, halved by ``loss.d_loss_scale`` (0.5)::

    BCE(D(HR) - E[D(G(LR))], 1) + BCE(D(G(LR)) - E[D(HR)], 0)

where E is the batch mean of the other side's logits, without gradient (see
:mod:`img2img.losses`). G is updated before D. The other GAN objectives work as in the
srgan task (Real-ESRGAN's U-Net discriminator uses ``vanilla`` on its per-pixel map).

Two stages, as the paper: the PSNR-oriented network (``model.discriminator.name: none``,
L1 only; ``configs/esrgan/rrdb_psnr_x4.yaml``), then the GAN stage from its weights
(``model.init_from``; ``configs/esrgan/esrgan_x4.yaml``). Data, evaluation (crop
``scale`` pixels, RGB and Y numbers, MATLAB-bicubic baseline) and LR from
``data.lr_root`` are those of the srgan task.
"""

from __future__ import annotations

from img2img.config import GAN_MODES
from img2img.tasks.srgan import SRGANTask


class ESRGANTask(SRGANTask):
    """The srgan task's data, steps and evaluation, widened to every SR generator and to
    the relativistic objective (its G term gets the HR batch, :meth:`Task.g_gan_term`)."""

    name = "esrgan"
    gan_modes = GAN_MODES
    sr_generators = ("rrdbnet", "srvgg_compact", "span", "srresnet", "srresnet_bn")
