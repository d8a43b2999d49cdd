"""Colorization: pix2pix from L to ab in Lab space.

The data set yields RGB images; on the device each is split into L (``L/50 - 1``) and ab
(``ab/110``), as the reference colorization model does. G maps L (1 channel) to ab
(2 channels); D sees (L, ab). Predictions are recombined with the input's L for viewing and
metrics; the baseline is the grey image (L with ab = 0).
"""

from __future__ import annotations

import torch

from img2img.data.color import lab_norm_to_rgb, rgb_to_lab_norm
from img2img.inference import forward_padded
from img2img.tasks.base import Batch, Nets, as_rgb, to_unit
from img2img.tasks.pix2pix import Pix2PixTask


class ColorizationTask(Pix2PixTask):
    name = "colorization"
    image_keys = ("B",)

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
