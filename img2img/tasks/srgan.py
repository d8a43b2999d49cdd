"""Super-resolution: SRResNet (PSNR stage) and SRGAN (GAN stage) on one task.

G (SRResNet at ``data.scale``) maps LR (``A``) to HR (``B``). Generator objective::

    pixel_weight * L1(G(LR), HR) + perceptual_weight * VGG(G(LR), HR) + gan_weight * GAN

The PSNR stage has no discriminator (``model.discriminator.name: none``) and only the
pixel term; the GAN stage starts from its weights (``model.init_from``) and adds the
perceptual and adversarial terms. G is updated before D, as BasicSR's SRGAN model does.

Data: HR images; LR made on the fly with MATLAB-compatible bicubic, or read from
``data.lr_root`` (``img2img eval --lr-dir``). Evaluation crops ``scale`` pixels from each
border and reports RGB and Y numbers; the baseline is MATLAB-bicubic upscaling of the LR
input.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from img2img.config import Config
from img2img.data import imresize, splits
from img2img.data.sr import check_gt_size
from img2img.errors import ConfigError
from img2img.nets.contract import forward_padded
from img2img.tasks.base import Batch, Nets, Pool, Task, TrainingSizes, to_unit


class SRGANTask(Task):
    name = "srgan"
    d_first = False
    baseline = "bicubic"
    visual_labels = ("LR (nearest)", "SR", "HR")

    #: The generators the task trains.
    sr_generators: ClassVar[tuple[str, ...]] = ("srresnet", "srresnet_bn")

    def check_config(self) -> None:
        super().check_config()
        c = self.config
        if c.model.generator.name not in self.sr_generators:
            raise ConfigError(
                f"model.generator.name: the {self.name} task needs "
                f"{' or '.join(self.sr_generators)}, got {c.model.generator.name!r}"
            )

    # ------------------------------------------------------------------ networks
    @property
    def scale(self) -> int:
        return self.config.data.scale

    def discriminator_channels(self) -> dict[str, int]:
        return {"D": self.channels()[1]}

    def training_sizes(self) -> TrainingSizes:
        gt = self.config.data.gt_size
        return TrainingSizes("data.gt_size", gt // self.scale, gt, per_pixel=self.scale, note=" LR")

    # ------------------------------------------------------------------ data
    def collect_split(self, split: str, full_decode: bool = False) -> splits.SplitFiles | None:
        if split == "train":  # the training crop (the model itself takes any size)
            check_gt_size(self.config.data.gt_size, self.config.data.scale)
        return splits.find_sr(self.config, split, full_decode)

    def make_dataset(self, found: splits.SplitFiles):
        from img2img.data.sr import SRDataset

        d = self.config.data
        return SRDataset(
            self._val_cut(found), scale=d.scale, gt_size=d.gt_size, flip=d.flip, rot90=d.rot90,
            train=found.split == "train", max_pixels=d.max_pixels, alpha=d.alpha,
        )

    def eval_data(self, data_dir: str, lr_dir: str | None = None) -> Config:
        """``data_dir`` holds the HR images; ``lr_dir`` the matching LR files (else LR is
        made with MATLAB-compatible bicubic). A data root is scored on its val split only."""
        from img2img.data.layouts import eval_split

        split = "." if lr_dir else eval_split(Path(data_dir), self.config.data.val_split)
        data = dataclasses.replace(self.config.data, root=str(data_dir), val_split=split,
                                   preprocess="none", lr_root=lr_dir, max_val_images=0)
        return dataclasses.replace(self.config, data=data)

    # ------------------------------------------------------------------ training
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
            terms |= self.g_adversarial(D["D"], sr, hr)
        return terms

    def discriminator_loss(self, D: Nets, batch: Batch, out: Batch, pool: Pool) -> dict:
        return self.d_terms(D["D"], batch["B"], out["sr"], "D")

    def visuals(self, batch: Batch, out: Batch) -> list[torch.Tensor]:
        hr = batch["B"]
        nearest = F.interpolate(batch["A"].float(), size=hr.shape[-2:], mode="nearest")
        return [nearest, out["sr"].float().clamp(-1, 1), hr]

    # ------------------------------------------------------------------ evaluation
    def crop_border(self) -> int:
        """The scale, as the super-resolution literature reports (``eval.crop_border``
        overrides it)."""
        given = self.config.eval.crop_border
        return given if given is not None else self.scale

    def evaluate_batch(self, G: Nets, batch: Batch) -> dict[str, torch.Tensor]:
        lr, hr = batch["A"], batch["B"]
        bicubic = imresize(to_unit(lr), scale=self.scale)
        return {
            "pred": to_unit(forward_padded(G["G"], lr)),
            "target": to_unit(hr),
            "baseline": bicubic.clamp(0, 1),
        }
