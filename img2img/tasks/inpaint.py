"""Inpainting: fill a hole in a photo, as a paired GAN on generated holes.

Data: any folder of photos (as colorization). Each sample gets a hole mask
(:mod:`img2img.data.masks`): made from the sample's seed (DeepFill v2's free-form strokes
and rectangles, covering a share drawn from ``task_options.hole_share``), or read from
``task_options.val_masks`` (white = hole, matched by file stem) for the val split. A
validation image's made mask is seeded by its index, so evaluation is deterministic.

The generator (a U-Net or ResNet of the zoo, 4 channels in, 3 out) sees the image with the
hole filled by ``task_options.fill`` and the mask (1 = hole) as a fourth channel. Its
output is composited: the known pixels are the input's, bit for bit; the hole is the
prediction. The discriminator (``patchgan``; ``norm: spectral`` makes it DeepFill v2's
SN-PatchGAN style) sees the completed image and the mask.

Generator loss: ``hole_weight * L1_hole + valid_weight * L1_valid`` on the raw prediction
(each the mean over every pixel of the masked absolute error, as Liu et al. 2018's partial
convolution paper, whose weights 6 and 1 are the defaults), the GAN term ``gan_weight``
on the composite (and feature matching when ``loss.feature_matching_weight`` > 0), and the
VGG perceptual term on the composite when ``loss.perceptual_weight`` > 0.

Evaluation: PSNR/SSIM of the whole composite, and L1, hole-only PSNR, SSIM and L1
(:mod:`img2img.metrics.masked`), beside OpenCV's Telea inpainting (``cv2.inpaint``,
``INPAINT_TELEA``, radius ``task_options.telea_radius``) on the same masks. Prediction takes
the mask as an input beyond the image (``inference_inputs``: ``--mask`` on ``img2img
predict``, ``mask=`` in Python, a second ONNX input).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from img2img.data import splits
from img2img.data.masks import KINDS, MaskedPhotos
from img2img.errors import ConfigError, UserError
from img2img.nets.contract import forward_padded
from img2img.tasks.base import PAIRED_METRICS, Batch, Nets, Pool, Task, to_unit

HOLE_METRICS = ("l1", "psnr_hole", "ssim_hole", "l1_hole")
MASK_NOTE = ("second input 'mask': N x 1 x H x W float, 1 in the hole, 0 elsewhere; the network's input "
             "is the RGB image in [-1, 1] with the hole set to the fill value, and the mask as a 4th channel; "
             "the exported graph composites: known pixels are the input's")


@dataclass
class InpaintOptions:
    #: The share of the image the made holes cover: [lowest, highest], each in (0, 1).
    hole_share: list[float] = field(default_factory=lambda: [0.1, 0.5])
    #: The kinds of made holes, drawn uniformly: free_form (DeepFill v2 strokes), rectangle.
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    #: Weight of the L1 term on the hole (Liu et al. 2018: 6).
    hole_weight: float = field(default=6.0, metadata={"min": 0.0})
    #: Weight of the L1 term on the known pixels (Liu et al. 2018: 1).
    valid_weight: float = field(default=1.0, metadata={"min": 0.0})
    #: The value the hole is filled with in the generator's input, in [-1, 1] (0: mid grey).
    fill: float = field(default=0.0, metadata={"min": -1.0, "max": 1.0})
    #: A folder of masks for the val split (white = hole, matched by file stem); unset: made.
    val_masks: str | None = None
    #: The radius of OpenCV's Telea inpainting, the baseline (OpenCV's example: 3).
    telea_radius: int = field(default=3, metadata={"min": 1, "max": 64})


def telea(image01: torch.Tensor, mask: torch.Tensor, radius: int) -> torch.Tensor:
    """OpenCV's Telea inpainting of a 1 x 3 x H x W image in [0, 1] (8-bit levels) inside
    ``mask`` (1 x 1 x H x W); a UserError saying what to install when OpenCV is missing.
    It is given what the model is given, the image with the hole filled: OpenCV reads a
    little of the hole's pixels, and the original ones would leak the answer."""
    try:
        import cv2
    except ImportError:
        raise UserError("the inpainting baseline needs OpenCV: pip install opencv-python-headless") from None
    levels = (image01[0].permute(1, 2, 0).double().cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)
    holes = (mask[0, 0].cpu().numpy() > 0.5).astype(np.uint8) * 255
    filled = cv2.inpaint(np.ascontiguousarray(levels), holes, radius, cv2.INPAINT_TELEA)
    return torch.from_numpy(filled).permute(2, 0, 1)[None].to(image01.device, torch.float32) / 255


class InpaintTask(Task):
    name = "inpaint"
    Options = InpaintOptions
    default_channels = (4, 3)
    d_first = True
    image_keys = ("B",)
    baseline = "telea"
    output_uses_input = True
    inference_inputs: ClassVar[dict[str, str]] = {"mask": "spatial"}
    visual_labels = ("input", "output", "target")

    def check_config(self) -> None:
        super().check_config()
        o = self.options
        if self.channels() != (4, 3):
            raise ConfigError("model.in_channels/model.out_channels: inpainting maps the image and its mask "
                              f"(4 channels) to RGB (3), got {self.channels()}; leave them unset")
        if len(o.hole_share) != 2 or not 0 < o.hole_share[0] <= o.hole_share[1] < 1:
            raise ConfigError(f"task_options.hole_share: two shares 0 < low <= high < 1, got {o.hole_share}")
        bad = [k for k in o.kinds if k not in KINDS]
        if bad or not o.kinds:
            raise ConfigError(f"task_options.kinds: choose from {'|'.join(KINDS)}, got {o.kinds}")

    def metrics(self) -> tuple[str, ...]:
        return PAIRED_METRICS + HOLE_METRICS + (("lpips",) if self.config.eval.lpips != "off" else ())

    def discriminator_channels(self) -> dict[str, int]:
        return {"D": 4}  # the completed image and the mask

    # ------------------------------------------------------------------ data
    def collect_split(self, split: str, full_decode: bool = False) -> splits.SplitFiles | None:
        return splits.find_single(self.config, split, full_decode)

    def make_dataset(self, found: splits.SplitFiles):
        from img2img.data.datasets import PhotoDataset

        d, o = self.config.data, self.options
        photos = PhotoDataset(self._val_cut(found), preprocess=d.preprocess, load_size=d.load_size,
                              crop_size=d.crop_size, flip=d.flip, train=found.split == "train",
                              max_pixels=d.max_pixels, alpha=d.alpha)
        masks = o.val_masks if found.split == "val" else None
        return MaskedPhotos(photos, o.hole_share, o.kinds, mask_dir=masks)

    # ------------------------------------------------------------------ images in and out
    def to_network(self, rgb: torch.Tensor, extra: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        mask = self._mask(extra, rgb)
        hole = mask > 0.5
        filled = torch.where(hole, torch.full_like(rgb, self.options.fill), rgb)
        return torch.cat([filled, hole.to(rgb.dtype)], dim=1)

    def from_network(self, out: torch.Tensor, x: torch.Tensor | None = None,
                     extra: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The composite: the prediction in the hole (the mask channel of ``x``), the input elsewhere."""
        if x is None:
            raise ValueError("inpainting composites with its input: pass x")
        return torch.where(x[:, 3:4] > 0.5, out.to(x.dtype), x[:, :3])

    def _mask(self, extra: dict[str, torch.Tensor] | None, rgb: torch.Tensor) -> torch.Tensor:
        if not extra or "mask" not in extra:
            raise UserError("an inpainting model needs the hole mask: pass mask= (Python) or --mask (predict)")
        mask = extra["mask"].to(rgb.device)
        if mask.shape[-2:] != rgb.shape[-2:]:
            raise UserError(f"the mask is {mask.shape[-1]}x{mask.shape[-2]} but the image is "
                            f"{rgb.shape[-1]}x{rgb.shape[-2]}; a mask must have its image's size")
        return mask[:, :1] if mask.shape[1] == 1 else (mask.mean(dim=1, keepdim=True) > 0.5).to(rgb.dtype)

    def encode_input(self, name: str, value: Any) -> torch.Tensor:
        """A mask (file image, array, tensor) as 1 x H x W {0, 1}: white (channel mean above 1/2) is the hole."""
        from img2img.data.masks import hole_of

        mask = super().encode_input(name, value)
        return hole_of(mask.mean(dim=0, keepdim=True), name).float()

    def check_translatable(self, net) -> None:
        cin, cout = int(getattr(net, "in_channels", 4)), int(getattr(net, "out_channels", 3))
        if (cin, cout) != (4, 3):
            raise UserError(f"an inpainting network maps image + mask to RGB (4 -> 3 channels), this one is {cin} -> {cout}")

    def export_notes(self) -> dict[str, str]:
        return {"input_range": "[-1, 1] (x = 2 * rgb01 - 1), with the mask as a second input", "inpainting": MASK_NOTE}

    # ------------------------------------------------------------------ training
    def prepare(self, batch: dict, device: torch.device, channels_last: bool = False) -> Batch:
        batch = super().prepare(batch, device, channels_last)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        mask = batch["mask"].to(device, non_blocking=True).float()
        x = self.to_network(batch["B"], {"mask": mask})
        return {**batch, "mask": mask, "A": x.contiguous(memory_format=fmt)}

    def forward(self, G: Nets, batch: Batch) -> Batch:
        raw = G["G"](batch["A"])
        return {"raw": raw, "fake_B": self.from_network(raw, batch["A"])}

    def discriminator_loss(self, D: Nets, batch: Batch, out: Batch, pool: Pool) -> dict:
        mask = batch["mask"].to(batch["B"].dtype)
        real = torch.cat([batch["B"], mask], dim=1)
        fake = torch.cat([out["fake_B"], mask.to(out["fake_B"].dtype)], dim=1)
        return self.d_terms(D["D"], real, fake, "D")

    def generator_loss(self, D: Nets, batch: Batch, out: Batch) -> dict:
        loss, o = self.config.loss, self.options
        target, mask = batch["B"], batch["mask"]
        error = (out["raw"].float() - target.float()).abs()
        terms = {}
        if "D" in D and loss.gan_weight > 0:
            m = mask.to(out["fake_B"].dtype)
            terms |= self.g_adversarial(D["D"], torch.cat([out["fake_B"], m], dim=1),
                                        torch.cat([target, mask.to(target.dtype)], dim=1))
        if o.hole_weight > 0:
            terms["G_L1_hole"] = o.hole_weight * (error * mask).mean()
        if o.valid_weight > 0:
            terms["G_L1_valid"] = o.valid_weight * (error * (1 - mask)).mean()
        if self.perceptual is not None:
            terms["G_perceptual"] = loss.perceptual_weight * self.perceptual(out["fake_B"], target)
        return terms

    def visuals(self, batch: Batch, out: Batch) -> list[torch.Tensor]:
        shown = torch.where(batch["mask"] > 0.5, torch.ones_like(batch["B"]), batch["B"])  # the hole in white
        return [shown, out["fake_B"].detach(), batch["B"]]

    # ------------------------------------------------------------------ evaluation
    def evaluate_batch(self, G: Nets, batch: Batch) -> dict[str, Any]:
        from img2img.metrics.masked import region_scores

        x, mask = batch["A"], batch["mask"]
        pred = to_unit(self.from_network(forward_padded(G["G"], x), x))
        target = to_unit(batch["B"])
        known = to_unit(x[:, :3])
        baseline = telea(known, mask, self.options.telea_radius)
        baseline = torch.where(mask > 0.5, baseline, known)  # Telea keeps the known levels; exact here
        return {"pred": pred, "target": target, "baseline": baseline,
                "scores": {"model": region_scores(pred, target, mask),
                           "baseline": region_scores(baseline, target, mask)}}

    def eval_input(self, batch: Batch) -> torch.Tensor | None:
        return to_unit(torch.where(batch["mask"] > 0.5, torch.ones_like(batch["B"]), batch["B"]))
