"""Tiles that match the whole image: normalisation statistics gathered over the whole
image (instance norm), tiles aligned to the network's feature grid, an overlap derived
from the network's measured receptive field, and a warning when a tile and overlap cannot
reach 40 dB."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch

from img2img.config import load_config
from img2img.inference import Translator
from img2img.inference.passes import TARGET_DB, border_reach, needed_overlap
from img2img.inference.tiling import aligned_starts, core_bounds
from img2img.nets.normstats import NormStats, image_norm_layers
from img2img.nets.receptive import reach
from img2img.tasks import build_generators

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from bench_tiling import mosaic, psnr  # noqa: E402  (the figures in the README come from the same pieces)


def translator(*overrides: str, seed: int = 0) -> Translator:
    torch.manual_seed(seed)
    config = load_config(None, list(overrides))
    return Translator(config, build_generators(config), device="cpu")


class LargestTensor:
    """The largest tensor (elements) any module of a network outputs while attached."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.largest = 0
        self.handles = [m.register_forward_hook(self.hook) for m in net.modules()]

    def hook(self, module, inputs, output) -> None:
        self.largest = max(self.largest, output.numel(), *(i.numel() for i in inputs if torch.is_tensor(i)))

    def close(self) -> int:
        for h in self.handles:
            h.remove()
        return self.largest


@pytest.mark.slow
def test_resnet9_instance_norm_tiles_match_the_whole_image_with_tile_bounded_memory():
    t = translator("task=cyclegan", "model.generator.name=resnet_9blocks", "model.generator.ngf=4",
                   "model.generator.norm=instance")
    assert len(image_norm_layers(t.net)) == 23
    x = mosaic(1024)
    whole_probe = LargestTensor(t.net)
    whole = t(x)
    whole_largest = whole_probe.close()
    t.consistent_norm = False  # each tile with its own statistics: what tiling did before
    per_tile = psnr(t(x, tile=256, tile_overlap=32), whole)
    t.consistent_norm = True
    probe = LargestTensor(t.net)
    tiled = t(x, tile=256, tile_overlap=32, batch_size=2)
    tiled_largest = probe.close()
    consistent = psnr(tiled, whole)
    assert consistent >= 40, (consistent, per_tile)
    assert per_tile < 35 and consistent > per_tile + 15, (consistent, per_tile)
    # memory: what the network sees is two 256 px tiles at a time, never the whole image
    one_tile = LargestTensor(t.net)
    with torch.inference_mode():
        t.net(torch.zeros(2, 3, 256, 256))
    assert tiled_largest <= one_tile.close() and tiled_largest * 8 <= whole_largest


def test_norm_statistics_gathered_over_tiles_equal_the_whole_image():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), torch.nn.InstanceNorm2d(4),
                              torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
                              torch.nn.GroupNorm(2, 4)).eval()
    x = torch.rand(1, 3, 40, 56)
    starts = aligned_starts(56, 24, 8, 1)
    cores = core_bounds(starts, 24, 1, 56)
    assert [a + s for s, (a, _) in zip(starts, cores)] == [0, *[b + s for s, (_, b) in zip(starts, cores)][:-1]]
    with NormStats(net) as norm, torch.no_grad():
        passes = 0
        while not norm.complete:
            with norm.gathering():
                for s, (a, b) in zip(starts, cores):
                    norm.set_batch(["img"], [(0, 40, a, b)], (40, 24))
                    norm.call(net, x[..., s : s + 24])
            passes += 1
        assert passes == 2  # one layer per pass
        whole = net(x)
        norm.set_batch(["img"], [(0, 40, 0, 56)], (40, 56))
        with norm.applying():
            frozen = net(x)
    assert torch.allclose(frozen, whole, atol=1e-5)


def test_constant_images_normalise_to_exact_zeros():
    """A 1x1 image replicates to a constant map: instance norm must give exact zeros (the
    usual formula divides rounding noise by sqrt(eps)), so predictions are defined."""
    t = translator("task=cyclegan", "model.generator.name=resnet", "model.generator.n_blocks=2",
                   "model.generator.ngf=8", "model.generator.norm=instance")
    a = t(torch.full((1, 3, 1, 1), 0.71234))
    b = t(torch.full((1, 3, 9, 9), 0.71234))
    assert torch.allclose(a[..., 0, 0], b[..., 4, 4], atol=1e-6)


def test_overlap_from_the_receptive_field_and_the_warning(caplog):
    """A U-Net sees across a whole tile: the overlap it needs is measured from how its
    output changes near a tile border, used by default, and a tile or overlap too small
    for it gets one warning saying what would do."""
    t = translator("task=pix2pix", "model.generator.name=unet", "model.generator.num_downs=4",
                   "model.generator.ngf=16", "model.generator.norm=instance", "model.generator.init_gain=0.1")
    r = reach(t.net)
    assert 0 < r.extent < r.probe and r.error[0] > 0.1 and r.error[-1] == 0
    need = needed_overlap(r, t.size_multiple)
    assert need == 64 and 2 * border_reach(r) <= need
    x = mosaic(256)[:200, :232]
    whole = t(x)
    with caplog.at_level(logging.WARNING, logger="img2img"):
        auto = t(x, tile=128)  # the overlap the network needs
        assert not caplog.records
        short = t(x, tile=128, tile_overlap=16)
        small = t(x, tile=64)
    warnings = [rec.getMessage() for rec in caplog.records]
    assert len(warnings) == 2
    assert "tiles of 128 px overlapping by 16 px" in warnings[0] and "--tile-overlap 64" in warnings[0]
    assert "tiles of 64 px" in warnings[1] and "with tiles of at least 80 px" in warnings[1]
    assert psnr(auto, whole) >= TARGET_DB > max(psnr(short, whole), psnr(small, whole))
