"""Losses: GAN objectives on hand-computed inputs, penalties, pixel and perceptual losses."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from img2img.config import DiscriminatorConfig
from img2img.errors import ConfigError, UserError
from img2img.losses import (
    CharbonnierLoss,
    GANLoss,
    PerceptualLoss,
    gradient_penalty,
    pixel_loss,
    r1_penalty,
)
from img2img.nets import PatchGAN, build_discriminator
from img2img.nets.perceptual import VGG19_LAYERS, VGGFeatureExtractor


def full(value: float, shape=(2, 1, 3, 3)) -> torch.Tensor:
    return torch.full(shape, float(value))


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def d_loss(gan: GANLoss, real_logits, fake_logits) -> torch.Tensor:
    """D's whole loss as the tasks form it: real term + fake term."""
    real, fake = gan.discriminator_terms(real_logits, fake_logits)
    return real + fake


# --------------------------------------------------------------------------- GAN objectives


def test_vanilla_with_zero_logits_costs_log2_per_term():
    gan = GANLoss("vanilla")
    assert gan.generator_loss(full(0)).item() == pytest.approx(math.log(2))
    real, fake = gan.discriminator_terms(full(0), full(0))
    assert real.item() == pytest.approx(math.log(2))
    assert fake.item() == pytest.approx(math.log(2))
    assert d_loss(gan, full(0), full(0)).item() == pytest.approx(2 * math.log(2))


def test_vanilla_is_bce_with_logits():
    gan = GANLoss("vanilla")
    # real 2 -> -log(sigmoid(2)) = softplus(-2); fake -1 -> -log(1 - sigmoid(-1)) = softplus(-1)
    d = d_loss(gan, full(2), full(-1)).item()
    assert d == pytest.approx(softplus(-2) + softplus(-1))
    assert gan.generator_loss(full(-1)).item() == pytest.approx(softplus(1))


def test_lsgan_is_squared_distance_to_the_labels():
    gan = GANLoss("lsgan")
    assert d_loss(gan, full(0.5), full(0.5)).item() == pytest.approx(0.25 + 0.25)
    assert d_loss(gan, full(1), full(0)).item() == pytest.approx(0.0)
    assert d_loss(gan, full(3), full(-2)).item() == pytest.approx(4 + 4)
    assert gan.generator_loss(full(0.25)).item() == pytest.approx(0.5625)


def test_hinge():
    gan = GANLoss("hinge")
    assert d_loss(gan, full(0.5), full(-0.5)).item() == pytest.approx(0.5 + 0.5)
    assert d_loss(gan, full(2), full(-3)).item() == pytest.approx(0.0)
    assert d_loss(gan, full(-1), full(1)).item() == pytest.approx(2 + 2)
    assert gan.generator_loss(full(0.7)).item() == pytest.approx(-0.7)


def test_wgan():
    gan = GANLoss("wgangp")
    real = torch.tensor([1.0, 3.0]).view(2, 1, 1, 1)
    fake = torch.tensor([-1.0, 0.0]).view(2, 1, 1, 1)
    assert d_loss(gan, real, fake).item() == pytest.approx(-0.5 - 2.0)
    assert gan.generator_loss(fake).item() == pytest.approx(0.5)


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "wgangp", "hinge"])
def test_list_inputs_are_averaged_over_scales(mode):
    gan = GANLoss(mode)
    real = [full(0.3, (2, 1, 8, 8)), full(-1.2, (2, 1, 3, 3))]
    fake = [full(0.9, (2, 1, 8, 8)), full(-0.4, (2, 1, 3, 3))]
    expected_d = sum(d_loss(gan, r, f) for r, f in zip(real, fake)) / 2
    expected_g = sum(gan.generator_loss(f) for f in fake) / 2
    assert d_loss(gan, real, fake).item() == pytest.approx(expected_d.item())
    assert gan.generator_loss(fake).item() == pytest.approx(expected_g.item())
    assert gan.generator_loss([fake[0]]).item() == pytest.approx(gan.generator_loss(fake[0]).item())


def test_unknown_gan_mode():
    with pytest.raises(ConfigError, match="loss.gan_mode: invalid value 'wgan'"):
        GANLoss("wgan")


def test_gan_losses_give_gradients_to_the_logits():
    logits = torch.zeros(1, 1, 2, 2, requires_grad=True)
    GANLoss("vanilla").generator_loss(logits).backward()
    # d softplus(-x)/dx at 0 = -1/2, spread over 4 elements by the mean
    torch.testing.assert_close(logits.grad, torch.full_like(logits, -0.125))


# --------------------------------------------------------------------------- penalties


def linear_critic(weights: list[float]) -> nn.Conv2d:
    """D(x) = w . x at every pixel: its input gradient is w at every pixel, known exactly."""
    conv = nn.Conv2d(len(weights), 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weights).view(1, -1, 1, 1))
    return conv


def test_gradient_penalty_of_a_linear_critic_is_known():
    critic = linear_critic([0.1, 0.2, 0.2])  # ||w|| = 0.3; the logit map sums 4x4 pixels
    real, fake = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    grad_norm = 0.3 * math.sqrt(16)
    expected = (grad_norm - 1) ** 2
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(expected, rel=1e-5)


def test_gradient_penalty_is_positive_and_differentiable_for_d():
    torch.manual_seed(0)
    d = PatchGAN(3, ndf=8, n_layers=2, norm="none")
    real, fake = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32, requires_grad=True)
    penalty = gradient_penalty(d, real, fake)
    assert penalty.ndim == 0 and penalty.item() > 0
    penalty.backward()
    # every conv weight shapes the input gradient, so each gets a gradient from the penalty
    # (the biases do not: a constant shift does not change the input gradient)
    weights = [m.weight for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert all(torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0 for w in weights)
    assert fake.grad is None  # the interpolates are detached from G


def test_gradient_penalty_handles_multiscale_lists():
    d = build_discriminator(
        DiscriminatorConfig(name="multiscale", ndf=4, n_layers=2, norm="none", num_scales=2), 3
    )
    penalty = gradient_penalty(d, torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    assert penalty.item() > 0
    penalty.backward()
    for scale in d.discriminators:
        assert scale.model[0].weight.grad.abs().sum() > 0


def test_r1_penalty_of_a_linear_critic_is_known():
    critic = linear_critic([0.1, 0.2, 0.2])
    real = torch.randn(2, 3, 4, 4, requires_grad=True)
    penalty = r1_penalty(critic(real), real)
    # grad per pixel is w: squared norm 0.09 per pixel, 16 pixels
    assert penalty.item() == pytest.approx(0.09 * 16, rel=1e-5)
    penalty.backward()
    assert critic.weight.grad.abs().sum() > 0


def test_r1_penalty_averages_lists_and_needs_requires_grad():
    critic = linear_critic([0.3, 0.4])
    real = torch.randn(1, 2, 4, 4, requires_grad=True)
    pooled = nn.functional.avg_pool2d(real, 2)
    logits = [critic(real), critic(pooled)]
    # full-size map: 16 pixels x 0.25; pooled map: grad w/4 on each of 16 inputs -> 16 x 0.25/16
    assert r1_penalty(logits, real).item() == pytest.approx((4.0 + 0.25) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(critic(real.detach()), real.detach())


# --------------------------------------------------------------------------- pixel losses


def test_pixel_losses_on_known_inputs():
    pred = torch.tensor([0.0, 1.0, -2.0, 0.5])
    target = torch.tensor([0.0, 0.0, 0.0, 0.0])
    assert pixel_loss("l1")(pred, target).item() == pytest.approx(3.5 / 4)
    assert pixel_loss("mse")(pred, target).item() == pytest.approx(5.25 / 4)
    eps = 1e-3
    expected = sum(math.sqrt(d * d + eps * eps) for d in (0.0, 1.0, -2.0, 0.5)) / 4
    assert pixel_loss("charbonnier")(pred, target).item() == pytest.approx(expected)
    assert CharbonnierLoss(eps=0.5)(pred[:1], target[:1]).item() == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="loss.pixel: invalid value 'l2'"):
        pixel_loss("l2")


# --------------------------------------------------------------------------- perceptual


def test_vgg_layer_names_follow_torchvision_indices():
    assert len(VGG19_LAYERS) == 37
    assert VGG19_LAYERS[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert VGG19_LAYERS.index("conv5_4") == 34 and VGG19_LAYERS[-1] == "pool5"


def test_perceptual_loss_with_random_vgg(caplog):
    torch.manual_seed(0)
    loss = PerceptualLoss({"relu1_2": 1.0, "conv2_1": 0.5, "pool3": 0.0}, weights="none")
    assert len(loss.vgg.features) == VGG19_LAYERS.index("conv2_1") + 1  # truncated
    assert "pool3" not in loss.vgg.layers  # zero weight: not computed
    assert all(not p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.vgg.training
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(x, x.clone()).item() == 0.0
    pred = (x + 0.1 * torch.randn_like(x)).requires_grad_(True)
    value = loss(pred, x)
    assert value.item() > 0
    value.backward()
    assert pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())


def test_perceptual_input_range_maps_to_imagenet_normalisation():
    a = VGGFeatureExtractor(["conv1_1"], weights="none", input_range=(-1, 1))
    b = VGGFeatureExtractor(["conv1_1"], weights="none", input_range=(0, 1))
    b.load_state_dict(a.state_dict())
    x01 = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(a(x01 * 2 - 1)["conv1_1"], b(x01)["conv1_1"])


def test_perceptual_rejects_unknown_layers_and_empty_weights():
    with pytest.raises(UserError, match="unknown VGG19 layer 'conv6_1'"):
        PerceptualLoss({"conv6_1": 1.0}, weights="none")
    with pytest.raises(ConfigError, match="non-zero weight"):
        PerceptualLoss({"conv5_4": 0.0}, weights="none")


@pytest.fixture(scope="module")
def torchvision_vgg_features() -> dict[str, torch.Tensor]:
    """The ``features.*`` part of a randomly initialised torchvision vgg19's state dict."""
    from torchvision.models import vgg19

    torch.manual_seed(1)
    model = vgg19(weights=None)
    return {k: v for k, v in model.state_dict().items() if k.startswith("features.")}


def test_vgg_weights_from_a_pth_file(tmp_path, torchvision_vgg_features):
    path = tmp_path / "vgg19.pth"
    torch.save(torchvision_vgg_features, path)
    extractor = VGGFeatureExtractor(["relu3_4", "conv1_2"], weights=str(path))
    for index in (0, 2, 5, 7, 10, 12, 14, 16):  # every conv up to conv3_4
        torch.testing.assert_close(
            extractor.features[index].weight, torchvision_vgg_features[f"features.{index}.weight"]
        )
        torch.testing.assert_close(
            extractor.features[index].bias, torchvision_vgg_features[f"features.{index}.bias"]
        )


def test_vgg_weights_from_safetensors_without_prefix(tmp_path, torchvision_vgg_features):
    from safetensors.torch import save_file

    path = tmp_path / "vgg19.safetensors"
    plain = {k.removeprefix("features."): v.contiguous() for k, v in torchvision_vgg_features.items()}
    save_file(plain, str(path))
    loss = PerceptualLoss({"conv5_4": 1.0}, weights=str(path))
    torch.testing.assert_close(loss.vgg.features[34].weight, plain["34.weight"])
    torch.testing.assert_close(loss.vgg.features[0].weight, plain["0.weight"])


def test_vgg_weights_file_errors(tmp_path, torchvision_vgg_features):
    partial = {k: v for k, v in torchvision_vgg_features.items() if not k.startswith("features.2.")}
    path = tmp_path / "partial.pth"
    torch.save(partial, path)
    with pytest.raises(UserError, match=r"partial.pth lacks .*'features\.2\.weight'"):
        VGGFeatureExtractor(["conv2_1"], weights=str(path))
    # the missing layer is not needed for conv1_1 alone
    VGGFeatureExtractor(["conv1_1"], weights=str(path))
    with pytest.raises(UserError, match="loss.vgg_weights: file not found"):
        VGGFeatureExtractor(["conv1_1"], weights=str(tmp_path / "missing.pth"))
    odd = tmp_path / "vgg.npz"
    odd.write_bytes(b"x")
    with pytest.raises(UserError, match=r"must end in \.pth"):
        VGGFeatureExtractor(["conv1_1"], weights=str(odd))


def test_imagenet_weights_offline_say_to_pass_a_local_file(tmp_path, monkeypatch):
    # No cached copy, and a proxy that refuses connections: the download fails for sure.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(UserError, match="loss.vgg_weights="):
        PerceptualLoss({"conv1_1": 1.0}, weights="imagenet")
