"""PSNR/SSIM as papers report them: cross-checks with scikit-image, hand-computed values,
the rounding / crop / Y conventions, numpy-torch agreement, and the accumulator."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import data
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from img2img.metrics import ImageMetrics, psnr, rgb_to_y, ssim

SK_SSIM = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)


def photo_pair(height=48, width=64, seed=0):
    """A crop of a CC0 sample photo and a blurred, noisy version of it (uint8 HxWx3)."""
    target = data.astronaut()[100 : 100 + height, 180 : 180 + width]
    rng = np.random.default_rng(seed)
    blurred = ndimage.uniform_filter(target.astype(np.float64), size=(3, 3, 1))
    pred = np.clip(np.round(blurred + rng.normal(0, 6, target.shape)), 0, 255).astype(np.uint8)
    return pred, target


def to_tensor(*images, dtype=torch.float64):
    """uint8 HxWx3 arrays -> one float Nx3xHxW tensor in [0, 1]."""
    batch = np.stack(images).astype(np.float64) / 255
    return torch.from_numpy(batch).permute(0, 3, 1, 2).to(dtype)


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Straight per-channel numpy/scipy SSIM (valid region), written from the definition."""
    taps = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    window = np.outer(taps, taps) / taps.sum() ** 2
    a = a.astype(np.float64).reshape(a.shape[0], a.shape[1], -1)
    b = b.astype(np.float64).reshape(b.shape[0], b.shape[1], -1)
    values = []
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]

        def filt(z):
            return ndimage.correlate(z, window, mode="constant")[5:-5, 5:-5]

        mx, my = filt(x), filt(y)
        vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(ssim_map.mean())
    return float(np.mean(values))


# ----------------------------------------------------------------- scikit-image cross-checks


def test_ssim_equals_skimage_mean_over_its_cropped_map():
    pred, target = photo_pair()
    ours = ssim(pred, target)
    # skimage filters the whole image (reflect padding) and averages the map after cutting
    # (win_size - 1) // 2 = 5 pixels from each edge: exactly the valid-mode map.
    theirs = sk_ssim(pred, target, win_size=11, channel_axis=2, **SK_SSIM)
    assert abs(ours - theirs) < 1e-12
    # Its default window for sigma 1.5 (truncate 3.5) is the same 11 taps.
    assert abs(ours - sk_ssim(pred, target, channel_axis=2, **SK_SSIM)) < 1e-12
    # The relationship, map by map: our valid map is skimage's full map cropped by 5 ...
    per_channel = []
    for c in range(3):
        _, full_map = sk_ssim(pred[..., c], target[..., c], full=True, **SK_SSIM)
        per_channel.append(full_map[5:-5, 5:-5].mean())
        # ... and its padded border really is different (so the crop matters).
        assert abs(full_map.mean() - full_map[5:-5, 5:-5].mean()) > 1e-4
    assert abs(ours - float(np.mean(per_channel))) < 1e-12


@pytest.mark.parametrize(
    "shape", [(11, 11), (18, 34), (28, 58), (43, 75), (47, 150), (90, 31), (75, 43)]
)
def test_ssim_matches_skimage_across_block_boundaries(shape):
    # Valid maps of 1x1, 8x24 (one block each way), 18x48, 33x65, 37x140, 80x21, 65x33:
    # exact multiples, remainders and sizes below one block of the 8-row and 24-column
    # blocks of the banded filter.
    rng = np.random.default_rng(sum(shape))
    target = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    pred = np.clip(target.astype(int) + rng.integers(-40, 41, target.shape), 0, 255).astype(
        np.uint8
    )
    theirs = sk_ssim(pred, target, channel_axis=2, **SK_SSIM)
    assert abs(ssim(pred, target) - theirs) < 1e-12
    assert abs(ssim(pred, target) - reference_ssim(pred, target)) < 1e-12


def test_ssim_y_channel_matches_skimage_on_y_images():
    pred, target = photo_pair(40, 52, seed=3)
    theirs = sk_ssim(rgb_to_y(pred), rgb_to_y(target), **SK_SSIM)
    assert abs(ssim(pred, target, y_channel=True) - theirs) < 1e-12


def test_psnr_equals_skimage_exactly():
    pred, target = photo_pair()
    assert psnr(pred, target) == sk_psnr(target, pred, data_range=255)
    theirs_y = sk_psnr(rgb_to_y(target), rgb_to_y(pred), data_range=255)
    assert abs(psnr(pred, target, y_channel=True) - theirs_y) < 1e-10


# ----------------------------------------------------------------- hand-computed values


def test_psnr_of_a_constant_offset():
    target = np.full((20, 30, 3), 100, dtype=np.uint8)
    target[5:15, 5:25] = 200
    pred = target + np.uint8(5)
    expected = 10 * math.log10(255**2 / 25)
    assert abs(psnr(pred, target) - expected) < 1e-12
    assert abs(float(psnr(to_tensor(pred), to_tensor(target))[0]) - expected) < 1e-12
    # On Y, an offset of 5 in R, G and B is 5 * (65.481 + 128.553 + 24.966) / 255 in Y.
    y_offset = 5 * 219 / 255
    assert abs(psnr(pred, target, y_channel=True) - 10 * math.log10(255**2 / y_offset**2)) < 1e-9


def test_identical_images():
    pred, target = photo_pair()
    assert psnr(target, target) == math.inf
    assert abs(ssim(target, target) - 1.0) < 1e-12
    batch = to_tensor(pred, target, dtype=torch.float32)
    same = psnr(batch, batch)
    assert same.dtype == torch.float64 and torch.isinf(same).all()
    assert torch.allclose(ssim(batch, batch), torch.ones(2, dtype=torch.float64), atol=1e-7)
    # A completely different image is far from 1.
    assert ssim(pred, 255 - target) < 0.2


def test_y_of_white_black_and_primaries():
    img = np.zeros((2, 3, 3), dtype=np.uint8)
    img[0, 0] = 255  # white
    img[0, 2] = (255, 0, 0)
    img[1, 0] = (0, 255, 0)
    img[1, 1] = (0, 0, 255)
    y = rgb_to_y(img)
    assert y.shape == (2, 3) and y.dtype == np.float64
    assert y[0, 0] == pytest.approx(235, abs=1e-12)
    assert y[0, 1] == 16
    assert y[0, 2] == pytest.approx(16 + 65.481)
    assert y[1, 0] == pytest.approx(16 + 128.553)
    assert y[1, 1] == pytest.approx(16 + 24.966)
    # Float [0, 1] numpy and torch give the same, not rounded.
    assert np.allclose(rgb_to_y(img / 255.0), y, atol=1e-12)
    y_torch = rgb_to_y(to_tensor(img))
    assert y_torch.shape == (1, 1, 2, 3)
    assert np.allclose(y_torch[0, 0].numpy(), y, atol=1e-12)
    assert torch.allclose(
        rgb_to_y(torch.from_numpy(img).permute(2, 0, 1)[None]).double(), y_torch, atol=1e-4
    )
    assert y[0, 2] != round(y[0, 2])


def test_crop_border_crops_before_anything():
    target = np.full((32, 40, 3), 90, dtype=np.uint8)
    pred = target.copy()
    pred[:3] = 0
    pred[:, -3:] = 255
    assert psnr(pred, target) < 30
    assert ssim(pred, target) < 0.99
    assert psnr(pred, target, crop_border=3) == math.inf
    assert psnr(pred, target, crop_border=3, y_channel=True) == math.inf
    assert ssim(pred, target, crop_border=3) == pytest.approx(1.0, abs=1e-12)
    batch_p, batch_t = to_tensor(pred), to_tensor(target)
    assert torch.isinf(psnr(batch_p, batch_t, crop_border=3)).all()
    # Cropping equals scoring the cropped arrays.
    p2, t2 = photo_pair()
    assert psnr(p2, t2, crop_border=4) == psnr(p2[4:-4, 4:-4], t2[4:-4, 4:-4])
    assert ssim(p2, t2, crop_border=4) == ssim(p2[4:-4, 4:-4], t2[4:-4, 4:-4])


# ----------------------------------------------------------------- conventions and paths


def test_numpy_and_torch_paths_agree():
    pairs = [photo_pair(48, 64, seed) for seed in range(3)]
    preds = [p for p, _ in pairs]
    targets = [t for _, t in pairs]
    for y_channel in (False, True):
        for crop in (0, 4):
            kw = dict(crop_border=crop, y_channel=y_channel)
            np_psnr = np.array([psnr(p, t, **kw) for p, t in pairs])
            np_ssim = np.array([ssim(p, t, **kw) for p, t in pairs])
            p64, t64 = to_tensor(*preds), to_tensor(*targets)
            assert np.abs(psnr(p64, t64, **kw).numpy() - np_psnr).max() < 1e-6
            assert np.abs(ssim(p64, t64, **kw).numpy() - np_ssim).max() < 1e-6
            p32, t32 = p64.float(), t64.float()
            assert np.abs(psnr(p32, t32, **kw).numpy() - np_psnr).max() < 2e-3
            assert np.abs(ssim(p32, t32, **kw).numpy() - np_ssim).max() < 2e-5
            if not y_channel:  # integer levels: float32 PSNR is exact
                assert np.array_equal(psnr(p32, t32, **kw).numpy(), np_psnr)


def test_float32_stays_close_on_smooth_bright_images():
    # Large, nearly equal second moments: where E[x^2] - mu^2 loses digits in float32.
    yy, xx = np.mgrid[0:64, 0:64]
    base = 242 + 8 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    target = np.clip(np.round(np.stack([base, base - 4, base - 9], -1)), 0, 255).astype(np.uint8)
    rng = np.random.default_rng(5)
    pred = np.clip(target.astype(int) + rng.integers(-1, 2, target.shape), 0, 255).astype(np.uint8)
    exact = ssim(pred, target)
    for y_channel in (False, True):
        exact = ssim(pred, target, y_channel=y_channel)
        approx = float(
            ssim(to_tensor(pred).float(), to_tensor(target).float(), y_channel=y_channel)[0]
        )
        assert abs(approx - exact) < 2e-5


def test_float_prediction_scores_like_its_uint8_save():
    torch.manual_seed(0)
    _, target = photo_pair()
    t = to_tensor(target, dtype=torch.float32)
    pred = (t + 0.03 * torch.randn_like(t)).clamp(0, 1)  # not on the uint8 grid
    saved = (pred * 255).round().clamp(0, 255).to(torch.uint8)  # what a PNG writer stores
    saved_np = saved[0].permute(1, 2, 0).numpy()
    for y_channel in (False, True):
        kw = dict(crop_border=2, y_channel=y_channel)
        float_psnr, float_ssim = float(psnr(pred, t, **kw)[0]), float(ssim(pred, t, **kw)[0])
        assert float(psnr(saved, t, **kw)[0]) == float_psnr
        assert float(ssim(saved, t, **kw)[0]) == float_ssim
        # The float64 numpy route gives the same number within float32's rounding.
        assert abs(psnr(saved_np, target, **kw) - float_psnr) < 2e-3
        assert abs(ssim(saved_np, target, **kw) - float_ssim) < 2e-5
    # Anything within 0.45 of the same level, and anything beyond 0 or 1, scores the same.
    levels = saved.float() / 255
    jitter = levels + (torch.rand_like(pred) - 0.5) * 0.9 / 255
    jitter = torch.where(saved == 255, jitter + 0.3, torch.where(saved == 0, jitter - 0.3, jitter))
    assert torch.equal(psnr(jitter, t), psnr(pred, t))
    assert torch.equal(ssim(jitter, t), ssim(pred, t))
    assert torch.equal(ssim(levels, t), ssim(pred, t))
    assert not torch.equal(ssim(pred + 0.6 / 255, t), ssim(pred, t))


def test_an_image_scores_the_same_in_any_batch():
    pairs = [photo_pair(40, 50, seed) for seed in range(5)]
    p = to_tensor(*[a for a, _ in pairs], dtype=torch.float32)
    t = to_tensor(*[b for _, b in pairs], dtype=torch.float32)
    # An image scores exactly the same whatever else is in its batch (so a distributed
    # evaluation with other batch sizes gives the same numbers).
    batch_ssim = ssim(p, t)
    singles = torch.cat([ssim(p[i : i + 1], t[i : i + 1]) for i in range(5)])
    assert torch.equal(batch_ssim, singles)
    pairs_of_two = torch.cat([ssim(p[i : i + 2], t[i : i + 2]) for i in range(0, 5, 2)])
    assert torch.equal(batch_ssim, pairs_of_two)
    assert torch.equal(ssim(p[[3, 0]], t[[3, 0]]), batch_ssim[[3, 0]])
    assert torch.equal(psnr(p, t), torch.cat([psnr(p[i : i + 1], t[i : i + 1]) for i in range(5)]))


def test_grayscale_inputs():
    pred, target = photo_pair()
    gp, gt = pred[..., 1], target[..., 1]
    value = psnr(gp, gt)
    assert psnr(gp[..., None], gt[..., None]) == value
    assert value == sk_psnr(gt, gp, data_range=255)
    assert psnr(gp, gt, y_channel=True) == value  # a gray image is its own Y
    assert abs(ssim(gp, gt) - sk_ssim(gp, gt, **SK_SSIM)) < 1e-12
    tensor = torch.from_numpy(np.stack([gp, gt])[:, None] / 255.0)
    assert abs(float(ssim(tensor[:1], tensor[1:])[0]) - ssim(gp, gt)) < 1e-12


def test_errors_name_the_problem():
    pred, target = photo_pair()
    with pytest.raises(ValueError, match=r"\(48, 64, 3\).*\(48, 60, 3\)"):
        psnr(pred, target[:, :60])
    with pytest.raises(ValueError, match=r"\(1, 3, 48, 64\).*\(1, 3, 48, 60\)"):
        ssim(to_tensor(pred), to_tensor(target[:, :60]))
    with pytest.raises(ValueError, match="crop_border=24"):
        psnr(pred, target, crop_border=24)
    with pytest.raises(ValueError, match="crop_border"):
        psnr(pred, target, crop_border=-1)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(pred, target, crop_border=19)  # leaves 10x26
    assert math.isfinite(ssim(pred, target, crop_border=18))  # leaves 12x28
    with pytest.raises(TypeError, match="uint8"):
        psnr(pred / 255.0, target / 255.0)
    with pytest.raises(TypeError, match="both be numpy arrays or both torch tensors"):
        psnr(pred, to_tensor(target))
    with pytest.raises(ValueError, match="NxCxHxW"):
        psnr(to_tensor(pred)[0], to_tensor(target)[0])
    with pytest.raises(ValueError, match="1 or 3 channels"):
        psnr(torch.rand(1, 2, 16, 16), torch.rand(1, 2, 16, 16), y_channel=True)
    with pytest.raises(ValueError, match="HxWx3"):
        rgb_to_y(pred[..., :2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    pairs = [photo_pair(48, 64, seed) for seed in range(3)]
    p = to_tensor(*[a for a, _ in pairs], dtype=torch.float32)
    t = to_tensor(*[b for _, b in pairs], dtype=torch.float32)
    for y_channel in (False, True):
        on_gpu = ssim(p.cuda(), t.cuda(), y_channel=y_channel)
        assert on_gpu.device.type == "cuda"
        assert torch.allclose(on_gpu.cpu(), ssim(p, t, y_channel=y_channel), atol=2e-5, rtol=0)
        assert torch.allclose(
            psnr(p.cuda(), t.cuda(), y_channel=y_channel).cpu(), psnr(p, t, y_channel=y_channel)
        )


# ----------------------------------------------------------------- accumulator


def make_batches():
    pairs = [photo_pair(36, 44, seed) for seed in range(7)]
    pred = to_tensor(*[a for a, _ in pairs], dtype=torch.float32)
    target = to_tensor(*[b for _, b in pairs], dtype=torch.float32)
    names = [f"img_{i}.png" for i in range(7)]
    return pred, target, names


def test_image_metrics_rows_and_means():
    pred, target, names = make_batches()
    acc = ImageMetrics(crop_border=2)
    acc.update(pred[:3], target[:3], names[:3])
    acc.update(pred[3:], target[3:], names[3:])
    rows = acc.per_image()
    assert [r["name"] for r in rows] == names
    assert set(rows[0]) == {"name", "psnr", "ssim", "psnr_y", "ssim_y"}
    expect = {
        "psnr": psnr(pred, target, crop_border=2),
        "ssim": ssim(pred, target, crop_border=2),
        "psnr_y": psnr(pred, target, crop_border=2, y_channel=True),
        "ssim_y": ssim(pred, target, crop_border=2, y_channel=True),
    }
    for key, values in expect.items():
        assert [r[key] for r in rows] == pytest.approx(values.tolist(), abs=1e-9)
    result = acc.compute()
    assert result["images"] == 7
    for key, values in expect.items():
        assert result[key] == pytest.approx(float(values.mean()), abs=1e-9)
    plain = ImageMetrics(y_channel_too=False)
    plain.update(pred, target)
    assert set(plain.compute()) == {"psnr", "ssim", "images"}
    assert [r["name"] for r in plain.per_image()] == [None] * 7


def test_image_metrics_merge_equals_single_process():
    pred, target, names = make_batches()
    single = ImageMetrics(crop_border=1)
    single.update(pred, target, names)

    # Two "processes" with a padded, interleaved split (image 0 scored twice), as a
    # distributed sampler gives; their states travel pickled, as gather_object sends them.
    rank0, rank1 = ImageMetrics(crop_border=1), ImageMetrics(crop_border=1)
    order0, order1 = [0, 2, 4, 6], [1, 3, 5, 0]
    rank0.update(pred[order0], target[order0], [names[i] for i in order0])
    for i in order1:  # batch size 1 on this one
        rank1.update(pred[i : i + 1], target[i : i + 1], [names[i]])
    states = [pickle.loads(pickle.dumps(r.state())) for r in (rank0, rank1)]
    merged = ImageMetrics(crop_border=1).merge(states)
    assert len(merged.per_image()) == 7
    assert merged.compute() == single.compute()
    assert sorted(r["name"] for r in merged.per_image()) == sorted(names)
    # Without names nothing can be recognised as a duplicate: the padding is counted.
    anon = ImageMetrics(crop_border=1).merge(
        [dict(s, rows=[dict(r, name=None) for r in s["rows"]]) for s in states]
    )
    assert anon.compute()["images"] == 8
    with pytest.raises(ValueError, match="crop_border"):
        ImageMetrics(crop_border=0).merge(states)
    with pytest.raises(ValueError, match="before any update"):
        ImageMetrics().compute()
    with pytest.raises(ValueError, match="names"):
        ImageMetrics().update(pred[:2], target[:2], names=["a"])


def test_importing_the_package_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, img2img.metrics as m; assert 'torch' not in sys.modules, 'torch imported'; "
        "assert {'psnr', 'ssim', 'ImageMetrics', 'FidKid', 'load_fid_inception'} <= set(m.__all__)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
