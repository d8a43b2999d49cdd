"""Tasks: what is learned. One module per method; this file says which networks each has.

A task owns its networks (a dict of named modules), its generator and discriminator
losses, what it visualises and what it evaluates. The trainer owns how steps run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from img2img.config import Config


def build_generators(config: Config) -> dict[str, nn.Module]:
    """The generators of a config's task (what is exported and predicts), initialised.

    pix2pix, colorization, srgan: ``G``; cyclegan: ``G_A`` (A -> B) and ``G_B`` (B -> A).
    """
    from img2img.nets import build_generator

    gcfg = config.model.generator
    cin, cout = config.channels()
    if config.task == "cyclegan":
        return {"G_A": build_generator(gcfg, cin, cout), "G_B": build_generator(gcfg, cout, cin)}
    scale = config.data.scale if config.task == "srgan" else 1
    return {"G": build_generator(gcfg, cin, cout, scale=scale)}


def build_discriminators(config: Config) -> dict[str, nn.Module]:
    """The discriminators of a config's task (none when ``model.discriminator.name`` is
    ``none``, e.g. the SRResNet PSNR stage), initialised.

    pix2pix, colorization: a conditional ``D`` that sees input and output stacked on the
    channel axis. cyclegan: ``D_A`` judges B-domain images (real, or made by ``G_A``) and
    ``D_B`` judges A-domain images, as in the CycleGAN paper's code. srgan: ``D`` on HR
    images.
    """
    from img2img.nets import build_discriminator

    dcfg = config.model.discriminator
    if dcfg.name == "none":
        return {}
    cin, cout = config.channels()
    if config.task in ("pix2pix", "colorization"):
        return {"D": build_discriminator(dcfg, cin + cout)}
    if config.task == "cyclegan":
        return {"D_A": build_discriminator(dcfg, cout), "D_B": build_discriminator(dcfg, cin)}
    return {"D": build_discriminator(dcfg, cout)}


def build_networks(config: Config) -> dict[str, nn.Module]:
    """All named networks of a config's task: generators first, then discriminators."""
    return {**build_generators(config), **build_discriminators(config)}


# Explicit registry; each task module is imported only when its task is built, so one
# broken task module cannot break the others.
TASKS = {
    "pix2pix": ("img2img.tasks.pix2pix", "Pix2PixTask"),
    "cyclegan": ("img2img.tasks.cyclegan", "CycleGANTask"),
    "srgan": ("img2img.tasks.srgan", "SRGANTask"),
    "colorization": ("img2img.tasks.colorization", "ColorizationTask"),
}


def build_task(config: Config):
    """The :class:`~img2img.tasks.base.Task` object of ``config.task``."""
    import importlib

    module_name, class_name = TASKS[config.task]
    return getattr(importlib.import_module(module_name), class_name)(config)
