"""The real-world degradation model on the device (img2img.data.degradations and its
steps): each stage's statistics, the draws' probabilities, determinism per seed, and the
config's checks."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import special

from img2img.config import load_config
from img2img.data.degradations import DegradationOptions, Noise, degrade, draw_batch, draw_image
from img2img.data.degrade_ops import add_noise, blur, gaussian_blur, random_crops, unsharp_mask
from img2img.data.jpeg import jpeg, quant_tables
from img2img.data.kernels import BLUR_KINDS, blur_row, make_kernels, pulse_row, sinc_row
from img2img.errors import ConfigError
from img2img.tasks import build_task
from tests.tiny import smooth_image


def _kernel(row):
    return make_kernels(torch.tensor([row], dtype=torch.float64))[0].double()


def _photo(size=96) -> torch.Tensor:
    from skimage import data

    img = data.astronaut()[100 : 100 + size, 150 : 150 + size]
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


# --------------------------------------------------------------------------- kernels


def test_every_kernel_kind_sums_to_one_and_is_zero_outside_its_size():
    rng = np.random.default_rng(0)
    rows = []
    for kind in BLUR_KINDS:
        for size in (7, 13, 21):
            rows.append(blur_row(kind, size, rng.uniform(0.2, 3), rng.uniform(0.2, 3), rng.uniform(-3, 3),
                                 rng.uniform(0.5, 4)))
    rows += [sinc_row(11, 2.0), sinc_row(21, 0.7), pulse_row()]
    kernels = make_kernels(torch.tensor(rows, dtype=torch.float64)).double()
    assert kernels.shape == (len(rows), 21, 21)
    torch.testing.assert_close(kernels.sum(dim=(1, 2)), torch.ones(len(rows), dtype=torch.float64), atol=1e-6, rtol=0)
    for row, k in zip(rows, kernels):
        half = (21 - int(row[1])) // 2
        if half:
            assert k[:half].abs().max() == 0 and k[:, -half:].abs().max() == 0


def test_isotropic_gaussian_is_the_outer_product_of_1d_gaussians():
    k = _kernel(blur_row("iso", 21, 2.0, 9.0, 1.0, 1.0))  # iso ignores sigma_y and theta
    x = torch.arange(-10, 11, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * 2.0**2))
    torch.testing.assert_close(k, torch.outer(g, g) / torch.outer(g, g).sum(), atol=1e-7, rtol=0)


def test_anisotropic_gaussian_has_the_covariance_of_its_sigmas_and_angle():
    sx, sy, theta = 2.5, 1.0, 0.6
    k = _kernel(blur_row("aniso", 21, sx, sy, theta, 1.0))
    y, x = torch.meshgrid(torch.arange(-10, 11.0), torch.arange(-10, 11.0), indexing="ij")
    cov = torch.tensor([[(k * x * x).sum(), (k * x * y).sum()], [(k * x * y).sum(), (k * y * y).sum()]])
    rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=torch.float64)
    expected = rot @ torch.diag(torch.tensor([sx**2, sy**2], dtype=torch.float64)) @ rot.T
    torch.testing.assert_close(cov.double(), expected, atol=0.03, rtol=0.02)


def test_generalized_and_plateau_kernels_follow_their_shape_parameter():
    gauss = _kernel(blur_row("iso", 21, 2.0, 2.0, 0, 1.0))
    torch.testing.assert_close(_kernel(blur_row("generalized_iso", 21, 2.0, 2.0, 0, 1.0)), gauss, atol=1e-7, rtol=0)
    # A larger beta flattens the top and cuts the tails (a box-like kernel); plateau has heavy tails.
    flat = _kernel(blur_row("generalized_iso", 21, 2.0, 2.0, 0, 4.0))
    assert flat[10, 10].item() == pytest.approx(flat[10, 11].item(), rel=0.01)
    assert flat[10, 13] < 1e-5 < gauss[10, 13]
    plateau = _kernel(blur_row("plateau_iso", 21, 2.0, 2.0, 0, 1.0))
    q = torch.tensor([0.0, 1.0, 4.0]) / 4.0  # at x = 0, 1, 2 on the centre row
    expected = (1 / (1 + q)) / (1 / (1 + q[0]))
    torch.testing.assert_close((plateau[10, 10:13] / plateau[10, 10]).float(), expected, atol=1e-6, rtol=0)


def test_sinc_kernel_is_the_circular_low_pass_filter():
    omega, size = 1.3, 15
    k = _kernel(sinc_row(size, omega))
    axis = np.arange(size) - size // 2
    r = np.hypot(axis[:, None], axis[None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = omega * special.j1(omega * r) / (2 * np.pi * r)
    ref[size // 2, size // 2] = omega**2 / (4 * np.pi)
    ref /= ref.sum()
    np.testing.assert_allclose(k[3:18, 3:18].numpy(), ref, atol=1e-7)
    assert k.min() < 0  # side lobes


def test_the_pulse_kernel_leaves_the_image_alone():
    x = torch.rand(2, 3, 30, 30)
    kernels = make_kernels(torch.tensor([pulse_row()] * 2, dtype=torch.float64))
    torch.testing.assert_close(blur(x, kernels), x, atol=1e-6, rtol=0)
    assert blur(x, kernels, support=1) is x


# --------------------------------------------------------------------------- noise, JPEG, USM


def test_gaussian_noise_has_its_sigma_and_grey_noise_is_one_field():
    x = torch.full((2, 3, 128, 128), 0.5)
    out = add_noise(x, [Noise(True, 20.0, 0.0, False, 1), Noise(True, 20.0, 0.0, True, 2)])
    colour, grey = out[0] - 0.5, out[1] - 0.5
    assert colour.std().item() == pytest.approx(20 / 255, rel=0.03)
    assert grey.std().item() == pytest.approx(20 / 255, rel=0.03)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert not torch.equal(colour[0], colour[1])


def test_poisson_noise_variance_follows_the_level_count():
    # 256 distinct 8-bit values -> 256 levels: var = scale^2 * value / 256.
    ramp = torch.arange(256.0).repeat(256, 1) / 255
    x = torch.stack([ramp, ramp.T, ramp.flip(1)])[None]
    scale = 0.5
    out = add_noise(x, [Noise(False, 0.0, scale, False, 7)])
    noise = out - x
    middle = (x > 0.3) & (x < 0.7)  # away from the clipping at 0 and 1
    ratio = (noise[middle] ** 2).mean() / (scale**2 * x[middle] / 256).mean()
    assert ratio.item() == pytest.approx(1.0, rel=0.05)


def test_jpeg_error_falls_with_quality_and_matches_a_real_encoder():
    photo = _photo()
    errors = [(jpeg(photo, [q]) - photo).pow(2).mean().sqrt().item() * 255 for q in (10, 30, 60, 95)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 3 < errors[0]
    img = (photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    for q in (30, 80):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=q, subsampling=2)
        pil = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1)[None].float() / 255
        ours = (jpeg(photo, [q]) - photo).pow(2).mean().sqrt()
        theirs = (pil - photo).pow(2).mean().sqrt()
        assert ours.item() == pytest.approx(theirs.item(), rel=0.1)
        assert (jpeg(photo, [q]) - pil).pow(2).mean().sqrt().item() * 255 < 3


def test_jpeg_tables_are_libjpegs_and_each_image_keeps_its_own_quality():
    luma, chroma = quant_tables(torch.tensor([50.0, 100.0, 10.0]))
    assert luma[0, 0].tolist() == [16, 11, 10, 16, 24, 40, 51, 61] and chroma[0, 7, 7] == 99
    assert luma[1].eq(1).all() and chroma[1].eq(1).all()
    assert luma[2, 0, 0] == 80  # 16 * 500 / 100
    photo = _photo(40)  # not a multiple of 16: padded and cropped back
    both = jpeg(torch.cat([photo, photo]), [20, 90])
    assert both.shape == (2, 3, 40, 40)
    torch.testing.assert_close(both[1:], jpeg(photo, [90]), atol=1e-6, rtol=0)


def test_unsharp_mask_adds_detail_only_where_there_is_some():
    import kornia

    x = torch.rand(1, 3, 60, 70)
    torch.testing.assert_close(gaussian_blur(x, 51, 8.0), kornia.filters.gaussian_blur2d(x, (51, 51), (8.0, 8.0)),
                               atol=1e-5, rtol=0)
    flat = torch.full((1, 3, 40, 40), 0.4)
    torch.testing.assert_close(unsharp_mask(flat), flat, atol=1e-6, rtol=0)
    photo = _photo()
    sharp = unsharp_mask(photo)
    detail = lambda im: (im[..., 1:, :] - im[..., :-1, :]).abs().mean()  # noqa: E731
    assert detail(sharp) > 1.1 * detail(photo)
    assert sharp.min() >= 0 and sharp.max() <= 1


# --------------------------------------------------------------------------- draws and the pipeline


def test_draws_follow_the_configured_probabilities():
    o = DegradationOptions()
    draws = [draw_image(seed, o) for seed in range(3000)]
    share = lambda flags: sum(flags) / len(flags)  # noqa: E731
    assert share([d.kernels[0][0] == 6 for d in draws]) == pytest.approx(0.1, abs=0.02)  # sinc, round 1
    assert share([d.kernels[1][0] == 7 for d in draws]) == pytest.approx(0.2, abs=0.025)  # no second blur
    assert share([d.kernels[2][0] == 6 for d in draws]) == pytest.approx(0.8, abs=0.025)  # final sinc
    assert share([d.noise[0].gaussian for d in draws]) == pytest.approx(0.5, abs=0.03)
    assert share([d.noise[1].grey for d in draws]) == pytest.approx(0.4, abs=0.03)
    qualities = [d.quality[0] for d in draws]
    assert 30 <= min(qualities) and max(qualities) <= 95
    sizes = {int(d.kernels[0][1]) for d in draws}
    assert sizes == set(range(7, 22, 2))
    ways = [draw_batch([s], o).resize[0][0] for s in range(3000)]
    assert share([f > 1 for f in ways]) == pytest.approx(0.2, abs=0.025)
    assert share([f == 1 for f in ways]) == pytest.approx(0.1, abs=0.02)
    assert min(ways) >= 0.15 and max(ways) <= 1.5


def test_degrade_is_deterministic_per_seed_and_shapes_the_crop():
    rng = np.random.default_rng(0)
    hr = torch.stack([torch.from_numpy(smooth_image(rng, 64, 64)).permute(2, 0, 1).float() / 255 for _ in range(3)])
    o = DegradationOptions()
    a = degrade(hr, [5, 6, 7], o, scale=4, crop=32)
    b = degrade(hr, torch.tensor([5, 6, 7]), o, scale=4, crop=32)
    for key in ("lr", "hr", "hr_usm"):
        assert torch.equal(a[key], b[key]), key
    assert a["lr"].shape == (3, 3, 8, 8) and a["hr"].shape == (3, 3, 32, 32)
    assert torch.equal(a["lr"], (a["lr"] * 255).round() / 255)  # 8-bit levels
    assert a["lr"].min() >= 0 and a["lr"].max() <= 1
    c = degrade(hr, [5, 6, 8], o, scale=4, crop=32)
    assert not torch.equal(a["lr"][2], c["lr"][2])
    whole = degrade(hr, [5, 6, 7], o, scale=2)
    assert whole["lr"].shape == (3, 3, 32, 32) and torch.equal(whole["hr"], hr)


def test_an_images_degradation_depends_on_its_own_seed_only():
    # With the batch-level choices fixed (keep the size, one mode, one order), an image's
    # LR is the same in any batch.
    o = dataclasses.replace(DegradationOptions(), resize_prob=[0, 0, 1], resize_prob2=[0, 0, 1],
                            resize_modes=["bilinear"], sinc_first_prob=1.0)
    rng = np.random.default_rng(1)
    hr = torch.stack([torch.from_numpy(smooth_image(rng, 48, 48)).permute(2, 0, 1).float() / 255 for _ in range(2)])
    alone = degrade(hr[:1], [11], o, scale=2)
    paired = degrade(hr, [11, 12], o, scale=2)
    torch.testing.assert_close(paired["lr"][:1], alone["lr"], atol=1.5 / 255, rtol=0)
    assert (paired["lr"][:1] != alone["lr"]).float().mean() < 0.01


def test_random_crops_cut_matching_windows():
    lr = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    hr = torch.nn.functional.interpolate(lr, scale_factor=2, mode="nearest")
    out = random_crops({"lr": lr, "hr": hr}, [(0.0, 0.99), (0.5, 0.0)], size=8, scale=2)
    assert torch.equal(out["lr"][0], lr[0, :, 0:4, 4:8]) and torch.equal(out["lr"][1], lr[1, :, 2:6, 0:4])
    torch.testing.assert_close(out["hr"], torch.nn.functional.interpolate(out["lr"], scale_factor=2, mode="nearest"))


def test_a_small_image_degrades_without_error():
    o = DegradationOptions()
    hr = torch.rand(2, 3, 8, 12)
    for seed in range(20):
        out = degrade(hr, [seed, seed + 100], o, scale=4)
        assert out["lr"].shape == (2, 3, 2, 3)


@pytest.mark.parametrize("key, value, message", [
    ("kernel_prob", [0.5, 0.5], "task_options.kernel_prob: 6 probabilities"),
    ("kernel_list2", ["iso", "box"], "task_options.kernel_list2: choose from"),
    ("resize_range", [1.2, 1.5], "task_options.resize_range: the range must hold 1"),
    ("jpeg_range2", [95, 30], "task_options.jpeg_range2: two numbers from 1 to 100, low first"),
    ("kernel_size_range", [8, 21], "task_options.kernel_size_range: two odd sides"),
    ("resize_modes", ["nearest"], "task_options.resize_modes: choose from area|bilinear|bicubic"),
    ("sinc_prob", 1.5, "task_options.sinc_prob: invalid value 1.5; must be <= 1.0"),
    ("crop_pad_size", 30, "task_options.crop_pad_size: 30 must be a multiple of data.scale"),
])
def test_a_wrong_degradation_setting_names_its_key(key, value, message):
    config = load_config(None, ["task=realesrgan", "model.generator.name=srvgg_compact", "data.gt_size=64",
                                f"task_options.{key}={value}"])
    with pytest.raises(ConfigError, match=message.replace("|", r"\|").replace("[", r"\[")):
        build_task(config)
