"""The FID Inception-v3 (architecture, weights loading, messages) and FID/KID on a small
feature network, checked against formulas computed here with numpy/scipy."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file
from scipy import linalg
from torch import nn
from torch.nn import functional as F

from img2img.errors import UserError
from img2img.metrics import FidKid, fid, fid_kid
from img2img.metrics.fid import FID_WEIGHTS_URL, FIDInceptionV3, load_fid_inception


@pytest.fixture(scope="module")
def inception() -> FIDInceptionV3:
    torch.manual_seed(0)
    net = FIDInceptionV3()
    # He-normal convolutions and near-identity batch norms keep the signal alive through
    # the 94 layers (PyTorch's default init washes the input out: every image would get the
    # same features); non-trivial statistics make loading them visible.
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0, math.sqrt(2 / module.weight[0].numel()))
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.8, 1.2)
            module.weight.data.uniform_(0.8, 1.2)
            module.bias.data.uniform_(-0.1, 0.1)
    return net


def saved_weights(net: nn.Module, path, drop_batch_counts=True):
    state = {k: v.clone() for k, v in net.state_dict().items()}
    if drop_batch_counts:  # older files (like the pytorch-fid one may be) lack these
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    if str(path).endswith(".safetensors"):
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


# ----------------------------------------------------------------- architecture


def test_key_names_and_shapes_are_those_of_the_pytorch_fid_file():
    # pytorch-fid loads its weights file strictly into torchvision's inception_v3 with 1008
    # classes and no aux head (before swapping in its FID blocks, which keep the names).
    reference = torchvision.models.inception_v3(
        weights=None, num_classes=1008, aux_logits=False, init_weights=False
    )
    ours = {k: tuple(v.shape) for k, v in FIDInceptionV3().state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert ours == theirs
    assert ours["fc.weight"] == (1008, 2048)


def test_blocks_match_torchvision_except_the_fid_pooling(inception):
    reference = torchvision.models.inception_v3(
        weights=None, num_classes=1008, aux_logits=False, init_weights=False
    )
    reference.load_state_dict(inception.state_dict())
    reference.eval()
    torch.manual_seed(1)
    with torch.no_grad():
        # Identical blocks: the stem convolutions and the two reduction blocks (B, D).
        x = torch.randn(1, 3, 20, 20)
        assert torch.allclose(inception.Conv2d_1a_3x3(x), reference.Conv2d_1a_3x3(x), atol=1e-6)
        x = torch.randn(1, 288, 9, 9)
        assert torch.allclose(inception.Mixed_6a(x), reference.Mixed_6a(x), atol=1e-5)
        x = torch.randn(1, 768, 9, 9)
        assert torch.allclose(inception.Mixed_7a(x), reference.Mixed_7a(x), atol=1e-5)

        # A, C and the first E block average without the zero padding; the last E block
        # max-pools. Everything else in them is torchvision's.
        def no_pad_avg(t):
            return F.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=False)

        def max_pool(t):
            return F.max_pool2d(t, 3, stride=1, padding=1)

        for name, channels, pool in (
            ("Mixed_5b", 192, no_pad_avg),
            ("Mixed_6b", 768, no_pad_avg),
            ("Mixed_7b", 1280, no_pad_avg),
            ("Mixed_7c", 2048, max_pool),
        ):
            x = torch.randn(1, channels, 7, 7)
            ours, theirs = getattr(inception, name)(x), getattr(reference, name)(x)
            branch_pool = getattr(reference, name).branch_pool
            rest = ours.shape[1] - branch_pool.conv.out_channels
            assert torch.allclose(ours[:, :rest], theirs[:, :rest], atol=1e-5)
            assert torch.allclose(ours[:, rest:], branch_pool(pool(x)), atol=1e-5)
            assert not torch.allclose(ours[:, rest:], theirs[:, rest:], atol=1e-3)


def test_network_maps_images_to_2048_features_in_eval_mode(inception):
    inception.train()
    assert not inception.training
    assert not any(p.requires_grad for p in inception.parameters())
    torch.manual_seed(2)
    images = torch.rand(2, 3, 48, 40)
    with torch.no_grad():
        features = inception(images)
        assert features.shape == (2, 2048)
        assert torch.isfinite(features).all()
        # The features depend on the image (the random network is not degenerate).
        assert (features[0] - features[1]).norm() > 0.01 * features[0].norm()
    assert inception.num_features == 2048


def test_input_convention_is_pytorch_fids(inception):
    # pytorch-fid: bilinear resize to 299 (align_corners=False, no antialias), then 2x - 1.
    torch.manual_seed(3)
    images = torch.rand(1, 3, 40, 56)
    x = torch.nn.functional.interpolate(
        images, size=(299, 299), mode="bilinear", align_corners=False
    )
    x = 2 * x - 1
    with torch.no_grad():
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
            x = getattr(inception, name)(x)
        x = torch.nn.functional.max_pool2d(x, 3, stride=2)
        x = inception.Conv2d_4a_3x3(inception.Conv2d_3b_1x1(x))
        x = torch.nn.functional.max_pool2d(x, 3, stride=2)
        assert x.shape[-2:] == (35, 35)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(inception, "Mixed_" + name)(x)
        assert x.shape[1:] == (2048, 8, 8)
        expected = x.mean(dim=(2, 3))
        scale = expected.abs().max()
        assert torch.allclose(inception(images), expected, rtol=0, atol=1e-5 * scale)


# ----------------------------------------------------------------- weights


@pytest.fixture(scope="module")
def weights_pth(inception, tmp_path_factory):
    """The test network's weights as a .pth without batch counters, written once."""
    return saved_weights(inception, tmp_path_factory.mktemp("fid") / "weights.pth")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_with_the_expected_keys_load(inception, weights_pth, tmp_path, suffix):
    if suffix == ".pth":
        path = weights_pth
    else:  # this one keeps the batch counters
        path = saved_weights(inception, tmp_path / "w.safetensors", drop_batch_counts=False)
    net = load_fid_inception(path)
    loaded = net.state_dict()
    for key, value in inception.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded[key], value), key
    assert not net.training
    assert not any(p.requires_grad for p in net.parameters())


def test_bad_weights_files_name_the_file(inception, tmp_path):
    # Right names and shapes, but each tensor a broadcast zero: tiny files, same checks.
    state = {
        k: torch.zeros((), dtype=v.dtype).expand(v.shape)
        for k, v in inception.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    tiny = tmp_path / "tiny.pth"
    torch.save(state, tiny)
    assert tiny.stat().st_size < 1_000_000
    assert load_fid_inception(tiny).fc.weight.shape == (1008, 2048)

    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in state.items() if k != "Mixed_6c.branch7x7_2.conv.weight"}, missing)
    with pytest.raises(
        UserError, match=r"missing\.pth.*missing keys: Mixed_6c\.branch7x7_2\.conv\.weight"
    ):
        load_fid_inception(missing)

    extra = tmp_path / "extra.pth"
    torch.save({**state, "AuxLogits.fc.weight": torch.zeros(1000, 768)}, extra)
    with pytest.raises(UserError, match=r"extra\.pth.*unexpected keys: AuxLogits\.fc\.weight"):
        load_fid_inception(extra)

    prefixed = tmp_path / "prefixed.pth"
    torch.save({"module." + k: v for k, v in state.items()}, prefixed)
    with pytest.raises(UserError, match=r"prefixed\.pth.*missing keys.*unexpected keys"):
        load_fid_inception(prefixed)

    shape = tmp_path / "shape.pth"
    torch.save({**state, "fc.weight": torch.zeros(1000, 2048)}, shape)
    with pytest.raises(
        UserError, match=r"shape\.pth.*fc\.weight \(1000, 2048\) \(expected \(1008, 2048\)\)"
    ):
        load_fid_inception(shape)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(UserError, match=r"garbage\.pth: not a PyTorch weights file") as err:
        load_fid_inception(garbage)
    assert "weights_only` set to `False`" not in str(err.value)  # torch's advice is not ours
    with pytest.raises(UserError, match=r"cannot read FID weights .*torn\.safetensors: not a valid safetensors file"):
        (tmp_path / "torn.safetensors").write_bytes(b"\x10\x00")
        load_fid_inception(tmp_path / "torn.safetensors")

    with pytest.raises(UserError, match=r"nowhere\.pth does not exist.*" + FID_WEIGHTS_URL):
        load_fid_inception(tmp_path / "nowhere.pth")


def test_no_weights_file_says_where_to_get_it_and_how_to_pass_it(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "empty_hub"))
    with pytest.raises(UserError) as info:
        load_fid_inception(None)
    message = str(info.value)
    assert FID_WEIGHTS_URL in message
    assert "pt_inception-2015-12-05-6726825d.pth" in message
    assert "eval.fid_weights" in message and "--fid-weights" in message


def test_a_copy_in_the_torch_hub_cache_is_used(inception, weights_pth, tmp_path, monkeypatch):
    # The cached copy's name carries its SHA-256 prefix (checked before it is read): give
    # the test file a name of that form.
    digest = hashlib.sha256(weights_pth.read_bytes()).hexdigest()
    monkeypatch.setattr(fid, "FID_WEIGHTS_NAME", f"pt_inception-2015-12-05-{digest[:8]}.pth")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / fid.FID_WEIGHTS_NAME).symlink_to(weights_pth)
    loaded = load_fid_inception(None)
    assert torch.equal(loaded.fc.bias, inception.fc.bias)


# ----------------------------------------------------------------- FID and KID


class TinyFeatures(nn.Module):
    """A small stand-in for Inception: two convolutions and a global pool, 16 features."""

    num_features = 16

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2),
            nn.Tanh(),
            nn.Conv2d(8, 16, 3, stride=2),
            nn.Tanh(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x):
        return self.body(x)


def image_set(n, seed, shift=0.0):
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=generator)
    images = nn.functional.interpolate(coarse, size=(24, 24), mode="bilinear")
    images = images + 0.05 * torch.rand(n, 3, 24, 24, generator=generator)
    return (images * 0.8 + shift).clamp(0, 1)


def numpy_fid(f1, f2):
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def numpy_kid(f1, f2):
    """Unbiased MMD^2 with the polynomial kernel (x.y / d + 1)^3 on whole sets."""
    d = f1.shape[1]

    def kernel(a, b):
        return (a @ b.T / d + 1) ** 3

    m = f1.shape[0]
    k11, k22, k12 = kernel(f1, f1), kernel(f2, f2), kernel(f1, f2)
    return float(
        (k11.sum() - np.trace(k11) + k22.sum() - np.trace(k22)) / (m * (m - 1)) - 2 * k12.mean()
    )


def features_of(net, images):
    with torch.no_grad():
        quantized = (images * 255).round().clamp(0, 255) / 255
        return net(quantized).double().numpy()


def test_fid_and_kid_match_the_formulas():
    net = TinyFeatures()
    real, fake = image_set(40, seed=1), image_set(40, seed=2, shift=0.1)
    result = fid_kid(real, fake, net, kid_subset_size=40, kid_subsets=3, batch_size=16)
    f_real, f_fake = features_of(net, real), features_of(net, fake)
    assert result["fid"] == pytest.approx(numpy_fid(f_real, f_fake), rel=1e-6)
    # Subsets of the whole set are permutations of it: every subset gives the same MMD.
    assert result["kid"] == pytest.approx(numpy_kid(f_real, f_fake), rel=1e-6)
    assert result["kid_std"] == pytest.approx(0, abs=1e-9)
    assert (result["real"], result["fake"], result["kid_subset_size"]) == (40, 40, 40)


def test_fid_and_kid_are_zero_for_identical_sets_and_grow_with_the_shift():
    net = TinyFeatures()
    real = image_set(48, seed=3)
    same = fid_kid(real, real.clone(), net, kid_subset_size=48, kid_subsets=2)
    scale = numpy_fid(features_of(net, real), features_of(net, image_set(48, seed=4)))
    assert abs(same["fid"]) < 1e-6 * scale
    # KID is an unbiased estimate: on identical sets it is O(1/n) around 0, not exactly 0.
    f_real = features_of(net, real)
    assert same["kid"] == pytest.approx(numpy_kid(f_real, f_real), rel=1e-6)
    scores = [
        fid_kid(real, image_set(48, seed=4, shift=s), net, kid_subset_size=24, kid_subsets=10)
        for s in (0.0, 0.05, 0.15, 0.3)
    ]
    fids, kids = [r["fid"] for r in scores], [r["kid"] for r in scores]
    assert fids[0] > 0 and all(a < b for a, b in zip(fids, fids[1:]))
    assert all(a < b for a, b in zip(kids, kids[1:])) and kids[-1] > 10 * scores[-1]["kid_std"]
    assert abs(same["kid"]) < 0.01 * kids[-1]


def test_streaming_equals_one_shot_and_kid_is_reproducible():
    net = TinyFeatures()
    real, fake = image_set(30, seed=5), image_set(30, seed=6, shift=0.05)
    one_shot = fid_kid(real, fake, net, kid_subset_size=10, kid_subsets=20, seed=7)
    stream = FidKid(net, kid_subset_size=10, kid_subsets=20, seed=7)
    for start in range(0, 30, 7):  # real and fake together, in uneven batches
        stream.update(real=real[start : start + 7], fake=fake[start : start + 7])
    streamed = stream.compute()
    assert streamed["fid"] == pytest.approx(one_shot["fid"], rel=1e-9)
    assert streamed["kid"] == pytest.approx(one_shot["kid"], rel=1e-9)
    assert streamed["kid_std"] == pytest.approx(one_shot["kid_std"], rel=1e-9)
    assert streamed["kid_std"] > 0
    # Batches given as an iterable work too, and the subset size shrinks to the data.
    batches = fid_kid(iter([real[:15], real[15:]]), [fake], net, kid_subsets=20, seed=7)
    assert batches["kid_subset_size"] == 30 and batches["fid"] == pytest.approx(one_shot["fid"])
    stream.reset()
    with pytest.raises(ValueError, match="at least 2 real and 2 generated"):
        stream.compute()


DISTRIBUTED_WORKER = """
import sys
import torch
import torch.distributed as dist
from torch import nn
from img2img.metrics import FidKid


class Flat(nn.Module):
    num_features = 12

    def forward(self, x):
        return x.flatten(1)


def shard_result(rank, init_file, features):
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=2)
    try:
        metric = FidKid(Flat(), kid_subset_size=1000, kid_subsets=2, quantize=False)
        for start in range(rank * 4, 30, 8):  # uneven shards: 16 and 14 images
            metric.update(
                real=features["real"][start : start + 4].view(-1, 3, 2, 2),
                fake=features["fake"][start : start + 4].view(-1, 3, 2, 2),
            )
        return metric.compute()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    features = torch.load(sys.argv[2], weights_only=True)
    torch.save(shard_result(1, sys.argv[1], features), sys.argv[3])
"""


@pytest.mark.slow
def test_distributed_fid_kid_equal_a_single_process(tmp_path):
    # Two gloo processes (this one is rank 0), each with part of the images: compute() on
    # either sees all of them.
    torch.manual_seed(12)
    real = torch.rand(30, 12, dtype=torch.float64)
    fake = torch.rand(30, 12, dtype=torch.float64) * 1.2 + 0.1
    features = {"real": real, "fake": fake}
    torch.save(features, tmp_path / "features.pt")
    script = tmp_path / "worker.py"
    script.write_text(DISTRIBUTED_WORKER)
    init_file, out = str(tmp_path / "init"), str(tmp_path / "rank1.pt")
    rank1 = subprocess.Popen(
        [sys.executable, str(script), init_file, str(tmp_path / "features.pt"), out],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    namespace: dict = {}
    exec(compile(DISTRIBUTED_WORKER, str(script), "exec"), namespace)
    try:
        rank0 = namespace["shard_result"](0, init_file, features)
    finally:
        output, _ = rank1.communicate(timeout=120)
    assert rank1.returncode == 0, output
    single = fid_kid(
        real.view(-1, 3, 2, 2),
        fake.view(-1, 3, 2, 2),
        namespace["Flat"](),
        kid_subsets=2,
        quantize=False,
    )
    assert single["fid"] == pytest.approx(numpy_fid(real.numpy(), fake.numpy()), rel=1e-9)
    for result in (rank0, torch.load(out, weights_only=True)):
        assert (result["real"], result["fake"], result["kid_subset_size"]) == (30, 30, 30)
        assert result["fid"] == pytest.approx(single["fid"], rel=1e-9)
        assert result["kid"] == pytest.approx(single["kid"], rel=1e-9)


def test_images_are_scored_at_uint8_levels():
    net = TinyFeatures()
    real, fake = image_set(20, seed=8), image_set(20, seed=9)
    levels = (fake * 255).round() / 255
    jitter = (
        levels
        + (torch.rand(levels.shape, generator=torch.Generator().manual_seed(0)) - 0.5) * 0.8 / 255
    )
    a = fid_kid(real, levels, net, kid_subset_size=10, kid_subsets=5)
    b = fid_kid(real, jitter, net, kid_subset_size=10, kid_subsets=5)
    assert a == b
    raw = fid_kid(real, jitter, net, kid_subset_size=10, kid_subsets=5, quantize=False)
    assert raw["fid"] != a["fid"]


def test_feature_network_must_say_its_size():
    with pytest.raises(ValueError, match="num_features"):
        FidKid(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    with pytest.raises(ValueError, match="Nx3xHxW"):
        FidKid(TinyFeatures()).update(real=torch.rand(2, 1, 16, 16))


UNEVEN_WORKER = """
import sys
import torch
import torch.distributed as dist
from torch import nn
from img2img.metrics import FidKid


class FlatWithClasses(nn.Module):
    num_features = 12

    def forward(self, x):
        return x.flatten(1)

    def class_logits(self, features):
        return features[:, :5] * 3


def shard_result(rank, init_file, images):
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=2)
    try:
        metric = FidKid(FlatWithClasses(), kid_subsets=2, quantize=False, is_splits=2)
        for j in range(rank, 5, 2):  # one image at a time, as the evaluation: 3 and 2 updates
            metric.update(real=images["real"][j : j + 1])
        for j in range(0, 5) if rank == 0 else []:  # every generated image on rank 0, none on rank 1
            metric.update(fake=images["fake"][j : j + 1], order=torch.tensor([j]))
        return metric.compute()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    images = torch.load(sys.argv[2], weights_only=True)
    torch.save(shard_result(1, sys.argv[1], images), sys.argv[3])
"""


@pytest.mark.slow
def test_distributed_scores_with_uneven_shards_equal_a_single_process(tmp_path):
    # An odd number of images over two processes gives them lists of different lengths, and
    # a process may have no generated image at all: KID and the Inception Score still gather.
    torch.manual_seed(13)
    images = {"real": torch.rand(5, 3, 2, 2, dtype=torch.float64),
              "fake": torch.rand(5, 3, 2, 2, dtype=torch.float64) * 1.2 + 0.1}
    torch.save(images, tmp_path / "images.pt")
    script = tmp_path / "worker.py"
    script.write_text(UNEVEN_WORKER)
    init_file, out = str(tmp_path / "init"), str(tmp_path / "rank1.pt")
    rank1 = subprocess.Popen([sys.executable, str(script), init_file, str(tmp_path / "images.pt"), out],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    namespace: dict = {}
    exec(compile(UNEVEN_WORKER, str(script), "exec"), namespace)
    try:
        rank0 = namespace["shard_result"](0, init_file, images)
    finally:
        output, _ = rank1.communicate(timeout=120)
    assert rank1.returncode == 0, output
    single = FidKid(namespace["FlatWithClasses"](), kid_subsets=2, quantize=False, is_splits=2)
    single.update(real=images["real"], fake=images["fake"])
    expected = single.compute()
    assert expected["is"] > 1.0
    for result in (rank0, torch.load(out, weights_only=True)):
        assert (result["real"], result["fake"], result["kid_subset_size"]) == (5, 5, 5)  # KID: every image
        assert result["fid"] == pytest.approx(expected["fid"], rel=1e-6)  # 5 images: a singular covariance
        for key in ("kid", "is", "is_std"):
            assert result[key] == pytest.approx(expected[key], rel=1e-9), key
