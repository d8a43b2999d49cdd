"""Colorization: pix2pix from L to ab in Lab space.

The data set yields RGB photos (any folder of them); on the device each is split into L
(``L/50 - 1``) and ab (``ab/110``), as the reference colorization model does. G maps L
(1 channel) to ab (2 channels); D sees (L, ab). Predictions are recombined with the
input's L for viewing, metrics, prediction and export; the baseline is the grey image
(L with ab = 0).
"""

from __future__ import annotations

import torch

from img2img.data import splits
from img2img.data.color import lab_norm_to_rgb, rgb_to_lab_norm
from img2img.errors import ConfigError, UserError
from img2img.nets.contract import forward_padded
from img2img.tasks.base import Batch, Nets, as_rgb, to_unit
from img2img.tasks.pix2pix import Pix2PixTask

#: What an exported network takes and gives (ONNX metadata).
LAB_NOTE = (
    "input: Lab lightness normalised as L/50-1 (N1HW); output: ab/110 (N2HW); recombine the "
    "input L with the predicted ab and convert Lab (D65) to RGB"
)


class ColorizationTask(Pix2PixTask):
    name = "colorization"
    default_channels = (1, 2)
    image_keys = ("B",)
    baseline = "grey"
    output_uses_input = True
    visual_labels = ("input (L)", "output", "target")

    def check_config(self) -> None:
        super().check_config()
        if self.channels() != (1, 2):
            raise ConfigError(
                "model.in_channels/model.out_channels: colorization maps L (1 channel) to ab "
                f"(2 channels), got {self.channels()}; leave them unset"
            )

    # ------------------------------------------------------------------ data
    def collect_split(self, split: str, full_decode: bool = False) -> splits.SplitFiles | None:
        return splits.find_single(self.config, split, full_decode)

    def make_dataset(self, found: splits.SplitFiles):
        from img2img.data.datasets import PhotoDataset

        d = self.config.data
        return PhotoDataset(
            self._val_cut(found), preprocess=d.preprocess, load_size=d.load_size,
            crop_size=d.crop_size, flip=d.flip, train=found.split == "train",
            max_pixels=d.max_pixels, alpha=d.alpha,
        )

    # ------------------------------------------------------------------ images in and out
    def to_network(self, rgb: torch.Tensor, extra=None) -> torch.Tensor:
        return rgb_to_lab_norm(rgb)[0]

    def from_network(self, out: torch.Tensor, x: torch.Tensor | None = None, extra=None) -> torch.Tensor:
        return lab_norm_to_rgb(x, out.clamp(-1, 1))

    def check_translatable(self, net) -> None:
        cin, cout = int(getattr(net, "in_channels", 1)), int(getattr(net, "out_channels", 2))
        if (cin, cout) != (1, 2):
            raise UserError(f"a colorization network maps L to ab (1 -> 2 channels), this one is {cin} -> {cout}")

    def export_notes(self) -> dict[str, str]:
        return {"input_range": "[-1, 1]: Lab lightness as L/50 - 1, one channel (see 'colorization')",
                "colorization": LAB_NOTE}

    # ------------------------------------------------------------------ training
    def prepare(self, batch: dict, device: torch.device, channels_last: bool = False) -> Batch:
        batch = super().prepare(batch, device, channels_last)
        rgb = batch["B"]
        L, ab = rgb_to_lab_norm(rgb.float())
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return {
            **batch,
            "rgb": rgb,
            "A": L.contiguous(memory_format=fmt),
            "B": ab.contiguous(memory_format=fmt),
        }

    def perceptual_pair(self, batch: Batch, fake_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The perceptual loss compares colours: L recombined with the predicted ab (both
        channels), against the original RGB."""
        return lab_norm_to_rgb(batch["A"].float(), fake_B.float()), batch["rgb"]

    def visuals(self, batch: Batch, out: Batch) -> list[torch.Tensor]:
        L = batch["A"]
        fake_rgb = lab_norm_to_rgb(L.float(), out["fake_B"].detach().float())
        return [as_rgb(L), fake_rgb, batch["rgb"]]

    def evaluate_batch(self, G: Nets, batch: Batch) -> dict[str, torch.Tensor]:
        L = batch["A"]
        ab = forward_padded(G["G"], L).float()
        return {
            "pred": to_unit(lab_norm_to_rgb(L.float(), ab)),
            "target": to_unit(batch["rgb"]),
            "baseline": to_unit(lab_norm_to_rgb(L.float(), torch.zeros_like(ab))),
        }
