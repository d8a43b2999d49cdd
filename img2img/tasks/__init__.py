"""Tasks: what is learned. One module per method; this file says which networks each has.

A task owns its networks (a dict of named modules), its generator and discriminator
losses, what it visualises and what it evaluates. The trainer owns how steps run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from img2img.config import Config


def generator_names(config: Config) -> list[str]:
    """The generators a task exports and predicts with."""
    return ["G_A", "G_B"] if config.task == "cyclegan" else ["G"]


def build_networks(config: Config) -> dict[str, nn.Module]:
    """The named networks of a config's task, initialised.

    - pix2pix, colorization: ``G`` (input -> output) and a conditional ``D`` that sees the
      input and the output stacked on the channel axis.
    - cyclegan: ``G_A`` (A -> B), ``G_B`` (B -> A), ``D_A`` (judges B-domain images, real or
      made by ``G_A``) and ``D_B`` (judges A-domain images), as in the CycleGAN paper's code.
    - srgan: ``G`` (SRResNet at ``data.scale``) and, unless the discriminator is ``none``
      (the PSNR stage), ``D`` on HR images.
    """
    from img2img.nets import build_discriminator, build_generator

    gcfg, dcfg = config.model.generator, config.model.discriminator
    cin, cout = config.channels()
    has_d = dcfg.name != "none"
    nets: dict[str, nn.Module] = {}
    if config.task in ("pix2pix", "colorization"):
        nets["G"] = build_generator(gcfg, cin, cout)
        if has_d:
            nets["D"] = build_discriminator(dcfg, cin + cout)
    elif config.task == "cyclegan":
        nets["G_A"] = build_generator(gcfg, cin, cout)
        nets["G_B"] = build_generator(gcfg, cout, cin)
        if has_d:
            nets["D_A"] = build_discriminator(dcfg, cout)
            nets["D_B"] = build_discriminator(dcfg, cin)
    elif config.task == "srgan":
        nets["G"] = build_generator(gcfg, cin, cout, scale=config.data.scale)
        if has_d:
            nets["D"] = build_discriminator(dcfg, cout)
    else:  # pragma: no cover - the config validator rejects other names
        raise ValueError(f"unknown task {config.task!r}")
    return nets
