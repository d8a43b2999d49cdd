"""The task contract: everything a method knows, as hooks with defaults.

A task says *what* is learned; the engine, evaluation, inference, export, the data check
and the demo ask it and never name it. A new method is a subclass of :class:`Task` in one
file (registered with :func:`img2img.tasks.register`) plus its recipes. The defaults here
are those of paired, same-size translation with one generator ``G`` and one conditional
discriminator ``D``, on A|B data:

- **config**: :attr:`Options` (the dataclass of the config's ``task_options`` section,
  checked like every other key), :attr:`default_channels`, :meth:`check_config` (rules
  that span keys, checked when the task is built, before any work);
- **networks**: :meth:`build_generators`, :meth:`discriminator_channels`,
  :meth:`build_discriminators`, :attr:`directions` (which generator translates),
  :meth:`training_sizes` (what the networks see in training, checked before the first
  step), :attr:`uses_image_pool`, :meth:`build_extra_networks` (networks shaped by a batch);
- **data** (:mod:`img2img.tasks.data_hooks`): :meth:`collect_split` (find and check the files of a split, with a finder of
  :mod:`img2img.data.splits`), :meth:`make_dataset`, :meth:`build_dataset`,
  :meth:`eval_data` (the config pointed at a folder for ``img2img eval``);
- **images in and out** (:mod:`img2img.tasks.image_hooks`): :meth:`to_network` and :meth:`from_network` (RGB in [-1, 1] to
  the network's input and back: colorization's Lab split lives there), used alike by
  evaluation, the Translator and export; :meth:`check_translatable`, :meth:`export_notes`;
- **training**: :meth:`prepare`, :meth:`forward`, :meth:`generator_loss` and
  :meth:`discriminator_loss` (dicts of named, already weighted terms), :attr:`d_first`,
  :meth:`visuals` and :attr:`visual_labels`, :attr:`collapse_guard` and :attr:`collapse_pairs`;
- **evaluation**: :attr:`paired` (PSNR/SSIM against targets) or not (FID/KID against the
  reference domain), :meth:`metrics`, :attr:`baseline`, :meth:`crop_border`,
  :meth:`eval_count`, :meth:`eval_batch`, :meth:`eval_references`, :meth:`evaluate_batch`,
  :meth:`eval_input` (what the evaluation report shows as the input).

A task is told which networks to use for each training call, because the engine decides
which wrapper runs (the DDP-wrapped module where gradients flow, the plain module where a
frozen discriminator only scores a fake). Loss methods return a dict of named, already
weighted terms; the engine sums them, checks them, and steps the optimizers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from img2img.config import Config, build_section
from img2img.errors import ConfigError, UserError
from img2img.log import get_logger
from img2img.losses import (
    GANLoss,
    PerceptualLoss,
    feature_matching_loss,
    gradient_penalty,
    pixel_loss,
    r1_penalty,
)
from img2img.tasks.data_hooks import DataHooks
from img2img.tasks.image_hooks import ImageHooks, as_rgb

log = get_logger(__name__)

Nets = dict[str, nn.Module]
Batch = dict[str, torch.Tensor]
Pool = Callable[[str, torch.Tensor], torch.Tensor]

#: Metrics of a paired task (prediction against target) and of an unpaired one (the
#: distribution of outputs against the reference images).
PAIRED_METRICS = ("psnr", "ssim", "psnr_y", "ssim_y")
DISTRIBUTION_METRICS = ("fid", "kid", "is")


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped, float32."""
    return ((x.float() + 1) / 2).clamp_(0, 1)


def collate_one(sample: dict) -> dict:
    """One dataset sample as a batch of one."""
    return {k: (v.unsqueeze(0) if isinstance(v, torch.Tensor) else [v]) for k, v in sample.items()}


class TrainingSizes(NamedTuple):
    """What the networks see in training: the config key that sets it, the side at the
    generator's input and at the discriminator's, and the key's value per generator pixel
    (the scale for super-resolution), with a word for the generator's side (" LR")."""

    key: str
    generator: int
    discriminator: int
    per_pixel: int = 1
    note: str = ""


class Task(DataHooks, ImageHooks):
    """A method; subclasses override the hooks whose defaults do not fit."""

    name: ClassVar[str]
    #: The dataclass of the ``task_options`` config section (None: the task takes none).
    Options: ClassVar[type | None] = None
    #: (input channels, output channels) of the generator when the config leaves them unset.
    default_channels: ClassVar[tuple[int, int]] = (3, 3)
    #: Update D before G at every step (pix2pix) or after (CycleGAN, SRGAN).
    d_first: ClassVar[bool] = False
    #: Keys of a batch that hold images (moved to the device, made channels_last).
    image_keys: ClassVar[tuple[str, ...]] = ("A", "B")
    #: Discriminators see fakes through a history of generated images (CycleGAN).
    uses_image_pool: ClassVar[bool] = False
    #: Which generator translates in each direction a user can ask for.
    directions: ClassVar[dict[str, str]] = {"AtoB": "G"}
    #: Evaluation compares each prediction with its target (PSNR/SSIM); False: the
    #: outputs as a distribution against the reference images (FID/KID).
    paired: ClassVar[bool] = True
    #: The trivial answer a model must beat, by name (computed in :meth:`evaluate_batch`).
    baseline: ClassVar[str] = "identity"
    #: Column titles of the sample grids (:meth:`visuals`).
    visual_labels: ClassVar[tuple[str, ...]] = ("input", "output", "target")
    #: :meth:`from_network` needs the input image too (colorization keeps the input's L).
    output_uses_input: ClassVar[bool] = False
    #: Watch generated images for collapse (None: when unpaired): output key -> its input's key,
    #: and what the warning adds to the usual remedies.
    collapse_guard: ClassVar[bool | None] = None
    collapse_pairs: ClassVar[dict[str, str]] = {"fake_B": "A", "fake_A": "B"}
    collapse_hint: ClassVar[str] = ""
    #: The ``loss.gan_mode`` values the task supports (``ragan``: it gives ``real`` to :meth:`g_gan_term`).
    gan_modes: ClassVar[tuple[str, ...]] = ("vanilla", "lsgan", "wgangp", "hinge")

    def __init__(self, config: Config) -> None:
        self.config = config
        self.options = self.read_options()
        self.check_config()
        self.gan = GANLoss(config.loss.gan_mode)
        self.pixel = pixel_loss(config.loss.pixel)
        self.perceptual: PerceptualLoss | None = None

    # ------------------------------------------------------------------ config
    def read_options(self) -> Any:
        """The ``task_options`` section as the task's :attr:`Options` dataclass."""
        given = self.config.task_options
        if self.Options is None:
            if given:
                raise ConfigError(f"task_options: the {self.name} task takes no options, got {sorted(given)}")
            return None
        return build_section(self.Options, given, "task_options.")

    def channels(self) -> tuple[int, int]:
        """(input channels, output channels) of the generator."""
        model = self.config.model
        cin = model.in_channels if model.in_channels is not None else self.default_channels[0]
        cout = model.out_channels if model.out_channels is not None else self.default_channels[1]
        return cin, cout

    def check_config(self) -> None:
        """Rules that span keys; a ConfigError naming the key. The default: the metric
        that picks the best model must be one this task reports; the GAN objective one it supports."""
        if self.config.loss.gan_mode not in self.gan_modes:
            raise ConfigError(f"loss.gan_mode: the {self.name} task supports {'|'.join(self.gan_modes)}")
        if self.config.loss.feature_matching_weight > 0 and self.config.model.discriminator.name == "none":
            raise ConfigError("loss.feature_matching_weight: feature matching compares the discriminator's "
                              "features, and model.discriminator.name is none; set a discriminator or the weight to 0")
        e = self.config.eval
        if e.every and e.metric not in self.metrics():
            kind = "paired targets" if e.metric in PAIRED_METRICS else "FID weights and unpaired data"
            kind = "eval.lpips: alex or vgg, and paired targets" if e.metric == "lpips" else kind
            raise ConfigError(
                f"eval.metric: {e.metric} needs {kind}; the {self.name} task evaluates "
                f"{' or '.join(self.metrics())}: set eval.metric={self.metrics()[0]}"
            )

    def metrics(self) -> tuple[str, ...]:
        """The metrics evaluation reports for this task (and ``eval.metric`` may pick); lpips
        when ``eval.lpips`` is set."""
        lpips = ("lpips",) if self.config.eval.lpips != "off" else ()
        return PAIRED_METRICS + lpips if self.paired else DISTRIBUTION_METRICS

    # ------------------------------------------------------------------ networks
    @property
    def scale(self) -> int:
        """Output side / input side of the generators (1 but for super-resolution)."""
        return 1

    def build_generators(self) -> Nets:
        """The generators (what is exported and predicts), initialised."""
        from img2img.nets import build_generator

        cin, cout = self.channels()
        return {"G": build_generator(self.config.model.generator, cin, cout, scale=self.scale)}

    def discriminator_channels(self) -> dict[str, int]:
        """Each discriminator's input channels. The default conditional ``D`` sees input
        and output stacked on the channel axis."""
        cin, cout = self.channels()
        return {"D": cin + cout}

    def build_discriminators(self) -> Nets:
        """The discriminators, initialised; none when ``model.discriminator.name`` is
        ``none`` (a pixel-loss-only stage)."""
        from img2img.nets import build_discriminator

        dcfg = self.config.model.discriminator
        if dcfg.name == "none":
            return {}
        nets = {name: build_discriminator(dcfg, c) for name, c in self.discriminator_channels().items()}
        self.check_feature_matching(nets)
        return nets

    def check_feature_matching(self, D: Nets) -> None:
        """With ``loss.feature_matching_weight`` > 0, a ConfigError naming the key when one of
        ``D`` cannot give intermediate features."""
        from img2img.nets.discriminators import gives_features

        if self.config.loss.feature_matching_weight > 0:
            for name, net in D.items():
                if not gives_features(net):
                    raise ConfigError(
                        f"loss.feature_matching_weight: the discriminator {name} "
                        f"({type(net).__name__}, model.discriminator.name={self.config.model.discriminator.name}) "
                        "gives no intermediate features; use patchgan, patchgan_aa, pixelgan, multiscale "
                        "or vgg, or set loss.feature_matching_weight=0"
                    )

    def build_extra_networks(self, G: Nets, first_batch: Callable[[], Batch]) -> dict[str, Nets]:
        """Networks shaped by what ``G`` makes of ``first_batch()``, by optimizer ("G"/"D"): none."""
        return {}

    def generator_for(self, direction: str = "AtoB") -> str:
        """The name of the generator that translates in ``direction``."""
        if direction not in ("AtoB", "BtoA"):
            raise UserError(f"direction: invalid value {direction!r}; allowed: AtoB|BtoA")
        if direction not in self.directions:
            raise UserError(
                f"direction {direction} does not apply to this {self.name} model: it has one "
                f"generator, translating {' and '.join(self.directions)} (a paired model's "
                "direction is fixed by data.direction at training)"
            )
        return self.directions[direction]

    def training_sizes(self) -> TrainingSizes | None:
        """What the networks see in training, or None when the images keep their own
        (varying) sizes. The default: the crop of a cropping preprocess."""
        d = self.config.data
        if d.preprocess not in ("resize_and_crop", "crop", "scale_width_and_crop"):
            return None
        return TrainingSizes("data.crop_size", d.crop_size, d.crop_size)

    # ------------------------------------------------------------------ set-up
    def setup_losses(self, device: torch.device) -> None:
        """Build the loss networks training needs (the VGG of the perceptual loss)."""
        loss = self.config.loss
        if loss.perceptual_weight > 0:
            self.perceptual = PerceptualLoss(
                loss.perceptual_layers, weights=loss.vgg_weights, input_range=(-1.0, 1.0)
            ).to(device)

    def prepare(self, batch: dict, device: torch.device, channels_last: bool = False) -> Batch:
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

    def critic_forward(self, G: Nets, batch: Batch) -> Batch:
        """What a discriminator-only update needs of the generators (``train.d_steps_per_g_step``
        > 1: every update of a step but the last), run without gradient; the default: :meth:`forward`."""
        return self.forward(G, batch)

    def generator_loss(self, D: Nets, batch: Batch, out: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def discriminator_loss(self, D: Nets, batch: Batch, out: Batch, pool: Pool) -> dict[str, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def d_terms(self, net: nn.Module, real: torch.Tensor, fake: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
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

    def g_gan_term(self, net: nn.Module, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """``gan_weight`` x G's GAN loss; ``ragan`` also takes D's (detached) logits on ``real``."""
        real_logits = net(real.detach()) if self.gan.relativistic else None
        return self.config.loss.gan_weight * self.gan.generator_loss(net(fake), real_logits)

    def g_adversarial(self, net: nn.Module, fake: torch.Tensor, real: torch.Tensor,
                      name: str = "G_GAN") -> dict[str, torch.Tensor]:
        """G's adversarial terms against discriminator ``net``, whose input is ``fake`` for the
        generated and ``real`` for the real images (conditional inputs stacked as ``D`` sees
        them): ``name`` (:meth:`g_gan_term`) and, when ``loss.feature_matching_weight`` > 0,
        ``name`` with FM for GAN (``G_FM``): ``feature_matching_weight`` x
        :func:`~img2img.losses.feature_matching_loss` of D's features on ``fake`` against
        those on ``real`` (no gradient). With the weight 0 this is exactly :meth:`g_gan_term`."""
        from img2img.nets.discriminators import discriminator_features

        loss = self.config.loss
        if loss.feature_matching_weight == 0:
            return {name: self.g_gan_term(net, fake, real)}
        fake_logits, fake_features = discriminator_features(net, fake)
        with torch.no_grad():
            real_logits, real_features = discriminator_features(net, real.detach())
        gan = self.gan.generator_loss(fake_logits, real_logits if self.gan.relativistic else None)
        return {name: loss.gan_weight * gan,
                name.replace("GAN", "FM"): loss.feature_matching_weight * feature_matching_loss(real_features, fake_features)}

    def visuals(self, batch: Batch, out: Batch) -> list[torch.Tensor]:
        """Columns of the sample grid (titled by :attr:`visual_labels`), each N x 3 x H x W
        in [-1, 1]."""
        raise NotImplementedError  # pragma: no cover - abstract

    # ------------------------------------------------------------------ evaluation
    def crop_border(self) -> int:
        """Pixels cut from each edge before PSNR/SSIM (``eval.crop_border`` when set)."""
        given = self.config.eval.crop_border
        return given if given is not None else 0

    def eval_count(self, dataset: Any) -> int:
        """How many evaluation samples ``dataset`` holds."""
        return len(dataset)

    def eval_batch(self, dataset: Any, index: int, device: torch.device) -> tuple[Batch, str]:
        """Evaluation sample ``index`` as a prepared batch of one, and its name."""
        sample = dataset[index]
        name = str(sample.get("B_path", sample.get("A_path", index)))
        return self.prepare(collate_one(sample), device), name

    def eval_references(self, dataset: Any) -> tuple[int, Callable[[int], torch.Tensor]] | None:
        """For an unpaired task: how many reference images the FID/KID statistics take,
        and a function giving image ``j`` (CHW in [-1, 1]); None for a paired task."""
        return None

    def eval_reference_groups(self, dataset: Any) -> list[str] | None:
        """For an unpaired task whose outputs fall into groups, each scored against its own
        references (a multi-domain model's target domains): the group of each reference
        image, and :meth:`evaluate_batch` names each output row's in ``groups``; None: one
        distribution (the default)."""
        return None

    def evaluate_batch(self, G: Nets, batch: Batch) -> dict[str, torch.Tensor]:
        """Predictions on whole validation images, in [0, 1] RGB: ``pred`` and ``target``
        (paired) or ``fake`` (unpaired), and ``baseline`` (the trivial answer, when the
        task has one for this batch)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def eval_input(self, batch: Batch) -> torch.Tensor | None:
        """The input of an evaluation sample as N3HW RGB in [0, 1], for the evaluation
        report's thumbnails (the default: ``A``, grey for one channel)."""
        return to_unit(as_rgb(batch["A"])) if "A" in batch else None


