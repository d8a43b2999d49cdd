"""Task-level loss details that the engine tests do not see."""

from __future__ import annotations

import torch

from img2img.config import load_config
from img2img.tasks import build_task


def test_colorization_perceptual_loss_sees_both_ab_channels():
    config = load_config(None, [
        "task=colorization", "loss.perceptual_weight=1", "loss.vgg_weights=none",
        "loss.perceptual_layers={conv2_2: 1.0}",
    ])
    task = build_task(config)
    task.setup_losses(torch.device("cpu"))
    torch.manual_seed(0)
    batch = task.prepare({"B": torch.rand(1, 3, 32, 32) * 2 - 1}, torch.device("cpu"))
    right = batch["B"].clone()
    assert float(task.generator_loss({}, batch, {"fake_B": right})["G_perceptual"]) < 1e-5
    for channel in (0, 1):  # a wrong a, then a wrong b, must both cost something
        wrong = right.clone()
        wrong[:, channel] += 0.3
        assert float(task.generator_loss({}, batch, {"fake_B": wrong})["G_perceptual"]) > 1e-3
