"""Real-ESRGAN: blind super-resolution trained on LR made on the fly, on the training
device, by the second-order real-world degradation model
(:mod:`img2img.data.degradations`), from HR photos alone.

Two stages, as Real-ESRGAN's ``options/train_realesrnet_x4plus.yml`` then
``train_realesrgan_x4plus.yml``:

- **Real-ESRNet** (``model.discriminator.name: none``): L1 only, PSNR-oriented;
- **Real-ESRGAN** (from its weights, ``model.init_from``)::

      pixel_weight * L1(G(LR), HR') + perceptual_weight * VGG(G(LR), HR') + gan_weight * GAN

  with the ``unet_sn`` discriminator (a per-pixel realness map, ``vanilla`` BCE) and the
  perceptual loss on pre-activation VGG19 features (``conv1_2`` .. ``conv5_4``). G is
  updated before D, and D's real images are the plain HR.

``HR'`` is the target: the HR crop sharpened by an unsharp mask (``gt_usm``) for the L1
and perceptual terms (``l1_gt_usm``, ``percep_gt_usm``) and not for D (``gan_gt_usm``),
as Real-ESRGAN. Any SR generator of the zoo trains here (``rrdbnet`` for x4plus, the
compact ``srvgg_compact``, ``span``).

Data: HR images (``data.root/train``, ``val``). A training sample is a
``task_options.crop_pad_size`` crop (Real-ESRGAN: 400) with its seed; :meth:`prepare`
degrades the batch on the device and cuts a ``data.gt_size`` crop and its LR. Evaluation
degrades each whole held-out image the same way every time (its seed is its index) and
scores G against the plain HR, beside MATLAB-bicubic upscaling of the same LR; with
``img2img eval --lr-dir`` (or ``data.lr_root``) real LR files are used instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from img2img.config import GAN_MODES
from img2img.data import imresize, splits
from img2img.data.degradations import DegradationOptions, degrade
from img2img.errors import ConfigError
from img2img.nets.contract import forward_padded
from img2img.tasks.base import Batch, Nets, Pool, collate_one, to_unit
from img2img.tasks.srgan import SRGANTask


@dataclass
class RealESRGANOptions(DegradationOptions):
    """The degradation (every key of DegradationOptions) and which target each loss sees."""

    #: The side of the HR crop that is degraded before the gt_size crop is cut from it (Real-ESRGAN: 400).
    crop_pad_size: int = field(default=400, metadata={"min": 1, "max": 8192})
    #: The L1 term's target is the sharpened HR.
    l1_gt_usm: bool = True
    #: The perceptual term's target is the sharpened HR.
    percep_gt_usm: bool = True
    #: D's real images are the sharpened HR.
    gan_gt_usm: bool = False


class RealESRGANTask(SRGANTask):
    name = "realesrgan"
    Options = RealESRGANOptions
    gan_modes = GAN_MODES
    sr_generators = ("rrdbnet", "srvgg_compact", "span", "srresnet", "srresnet_bn")
    visual_labels = ("LR (nearest)", "SR", "target")

    def check_config(self) -> None:
        super().check_config()
        c, o = self.config, self.options
        o.check("task_options.")
        if self.channels() != (3, 3):
            raise ConfigError(f"model.in_channels/out_channels: the {self.name} task degrades RGB photos "
                              f"(3 -> 3), got {self.channels()[0]} -> {self.channels()[1]}")
        if o.crop_pad_size % c.data.scale or o.crop_pad_size < c.data.gt_size:
            raise ConfigError(
                f"task_options.crop_pad_size: {o.crop_pad_size} must be a multiple of data.scale "
                f"({c.data.scale}) and at least data.gt_size ({c.data.gt_size})"
            )

    # ------------------------------------------------------------------ data
    def collect_split(self, split: str, full_decode: bool = False) -> splits.SplitFiles | None:
        if split == "train" and self.config.data.lr_root:
            raise ConfigError(
                f"data.lr_root: the {self.name} task makes its training LR on the device from HR "
                "photos; LR files apply to evaluation only (img2img eval --lr-dir): remove data.lr_root"
            )
        return super().collect_split(split, full_decode)

    def make_dataset(self, found: splits.SplitFiles):
        from img2img.data.hr_crops import HRCropDataset

        d = self.config.data
        return HRCropDataset(
            self._val_cut(found), scale=d.scale, crop_size=self.options.crop_pad_size, flip=d.flip,
            rot90=d.rot90, train=found.split == "train", max_pixels=d.max_pixels, alpha=d.alpha,
        )

    def degraded(self, batch: dict, device: torch.device, crop: int | None, channels_last: bool = False) -> Batch:
        """``A`` (LR), ``B`` (HR) and ``B_usm`` (the sharpened HR), in [-1, 1] on ``device``:
        the LR made from ``B`` and the batch's seeds, cut to a ``crop`` HR window when
        given; a batch that brings its LR files is only moved."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        hr = batch["B"].to(device, non_blocking=True).float()
        if "A" in batch:
            images = {"A": batch["A"].to(device).float(), "B": hr, "B_usm": hr}
        else:
            made = degrade(to_unit(hr), batch["seed"], self.options, self.scale, crop)
            images = {"A": made["lr"], "B": made["hr"], "B_usm": made["hr_usm"]}
            images = {k: v * 2 - 1 for k, v in images.items()}
        out = {k: v for k, v in batch.items() if k not in images}
        out.update({k: v.contiguous(memory_format=fmt) for k, v in images.items()})
        return out

    def prepare(self, batch: dict, device: torch.device, channels_last: bool = False) -> Batch:
        return self.degraded(batch, device, self.config.data.gt_size, channels_last)

    # ------------------------------------------------------------------ training
    def _target(self, batch: Batch, sharpened: bool) -> torch.Tensor:
        return batch["B_usm"] if sharpened else batch["B"]

    def generator_loss(self, D: Nets, batch: Batch, out: Batch) -> dict:
        loss, o = self.config.loss, self.options
        sr = out["sr"]
        terms = {}
        if loss.pixel_weight > 0:
            terms[f"G_{loss.pixel.upper()}"] = loss.pixel_weight * self.pixel(sr, self._target(batch, o.l1_gt_usm))
        if self.perceptual is not None:
            target = self._target(batch, o.percep_gt_usm)
            terms["G_perceptual"] = loss.perceptual_weight * self.perceptual(sr, target)
        if "D" in D and loss.gan_weight > 0:
            terms |= self.g_adversarial(D["D"], sr, self._target(batch, o.gan_gt_usm))
        return terms

    def discriminator_loss(self, D: Nets, batch: Batch, out: Batch, pool: Pool) -> dict:
        return self.d_terms(D["D"], self._target(batch, self.options.gan_gt_usm), out["sr"], "D")

    def visuals(self, batch: Batch, out: Batch) -> list[torch.Tensor]:
        nearest, sr, _ = super().visuals(batch, out)
        return [nearest, sr, self._target(batch, self.options.l1_gt_usm)]

    # ------------------------------------------------------------------ evaluation
    def eval_batch(self, dataset: Any, index: int, device: torch.device) -> tuple[Batch, str]:
        """Held-out image ``index`` whole, degraded from the seed ``index`` (the same LR at
        every evaluation), or with its LR file."""
        sample = dataset[index]
        return self.degraded(collate_one(sample), device, crop=None), str(sample["B_path"])

    def evaluate_batch(self, G: Nets, batch: Batch) -> dict[str, torch.Tensor]:
        lr, hr = batch["A"], batch["B"]
        return {
            "pred": to_unit(forward_padded(G["G"], lr)),
            "target": to_unit(hr),
            "baseline": imresize(to_unit(lr), scale=self.scale).clamp(0, 1),
        }


__all__ = ["RealESRGANOptions", "RealESRGANTask"]
