"""Feature matching (pix2pixHD): discriminators' intermediate features, the loss against a
value computed by hand on a tiny D, the term every task with a D gets, and its errors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from img2img.config import load_config
from img2img.engine import Trainer
from img2img.errors import ConfigError
from img2img.losses import feature_matching_loss
from img2img.nets import MultiScaleDiscriminator, PatchGAN, build_discriminator
from img2img.nets.discriminators import discriminator_features, gives_features
from img2img.tasks import build_task
from tests.tiny import tiny_overrides


def tiny_patchgan(seed: int = 0) -> PatchGAN:
    torch.manual_seed(seed)
    return PatchGAN(2, ndf=2, n_layers=1, norm="none")  # conv-lrelu, conv-lrelu, conv


def by_hand(net: PatchGAN, x: torch.Tensor) -> list[torch.Tensor]:
    """The two LeakyReLU outputs of a 1-layer PatchGAN without norm, layer by layer."""
    c1, c2 = net.model[0], net.model[2]
    h1 = F.leaky_relu(F.conv2d(x, c1.weight, c1.bias, stride=2, padding=1), 0.2)
    h2 = F.leaky_relu(F.conv2d(h1, c2.weight, c2.bias, stride=1, padding=1), 0.2)
    return [h1, h2]


def test_patchgan_features_are_its_leaky_relu_outputs():
    net = tiny_patchgan()
    x = torch.randn(2, 2, 12, 12)
    logits, features = net.forward_features(x)
    assert torch.equal(logits, net(x))
    assert len(features) == 1 and len(features[0]) == 2  # n_layers + 1, as pix2pixHD
    for ours, hand in zip(features[0], by_hand(net, x)):
        assert torch.allclose(ours, hand, atol=1e-6)


def test_loss_against_a_hand_computed_value():
    net = tiny_patchgan()
    real, fake = torch.randn(1, 2, 8, 8), torch.randn(1, 2, 8, 8)
    (r1, r2), (f1, f2) = by_hand(net, real), by_hand(net, fake)
    # pix2pixHD: feat_weights = 4 / (n_layers + 1) = 2 per layer, D_weights = 1 (one scale).
    expected = 2 * ((f1 - r1).abs().mean() + (f2 - r2).abs().mean())
    value = feature_matching_loss(net.forward_features(real)[1], net.forward_features(fake)[1])
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    # Identical inputs match perfectly.
    same = net.forward_features(real)[1]
    assert feature_matching_loss(same, same).item() == 0.0


def test_multiscale_averages_the_scales_and_real_carries_no_gradient():
    torch.manual_seed(1)
    net = MultiScaleDiscriminator(2, ndf=2, n_layers=1, norm="none", num_scales=2)
    real = torch.randn(1, 2, 16, 16, requires_grad=True)
    fake = torch.randn(1, 2, 16, 16, requires_grad=True)
    logits, fr = net.forward_features(real)
    assert [m.shape for m in logits] == [m.shape for m in net(real)] and len(fr) == 2
    _, ff = net.forward_features(fake)
    per_scale = [feature_matching_loss([r], [f]) for r, f in zip(fr, ff)]
    total = feature_matching_loss(fr, ff)
    assert total.item() == pytest.approx((per_scale[0] + per_scale[1]).item() / 2, rel=1e-6)
    total.backward()
    assert real.grad is None and fake.grad is not None and fake.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["patchgan", "patchgan_aa", "pixelgan", "multiscale"])
def test_zoo_discriminators_give_features(name):
    cfg = load_config(None, [f"model.discriminator.name={name}", "model.discriminator.ndf=4",
                             "model.discriminator.n_layers=2"]).model.discriminator
    net = build_discriminator(cfg, 3)
    assert gives_features(net)
    x = torch.randn(1, 3, 32, 32)
    logits, features = discriminator_features(net, x)
    expected = net(x)
    for a, b in zip(logits if isinstance(logits, list) else [logits], expected if isinstance(expected, list) else [expected]):
        assert torch.equal(a, b)
    assert all(len(scale) >= 2 for scale in features)


def pix2pix_config(tmp_path, *extra):
    return load_config(None, tiny_overrides("pix2pix", tmp_path / "data", tmp_path / "run", *extra))


def test_pix2pix_generator_loss_gets_the_weighted_term(tmp_path):
    config = pix2pix_config(tmp_path, "loss.feature_matching_weight=10", "model.discriminator.n_layers=1",
                            "model.discriminator.norm=none")
    task = build_task(config)
    G, D = task.build_generators(), task.build_discriminators()
    torch.manual_seed(2)
    batch = {"A": torch.rand(2, 3, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1}
    out = task.forward(G, batch)
    terms = task.generator_loss(D, batch, out)
    assert set(terms) == {"G_GAN", "G_FM", "G_L1"}
    net = D["D"]
    real = torch.cat([batch["A"], batch["B"]], 1)  # conditional: D sees (A, B)
    fake = torch.cat([batch["A"], out["fake_B"]], 1)
    expected = 10 * 2 * sum((f - r).abs().mean() for f, r in zip(by_hand(net, fake), by_hand(net, real)))
    assert terms["G_FM"].item() == pytest.approx(expected.item(), rel=1e-5)
    # The GAN term is the one without feature matching.
    off = build_task(pix2pix_config(tmp_path, "model.discriminator.n_layers=1", "model.discriminator.norm=none"))
    plain = off.generator_loss(D, batch, out)
    assert "G_FM" not in plain and torch.equal(plain["G_GAN"], terms["G_GAN"])


def test_cyclegan_gets_one_term_per_discriminator(tmp_path):
    config = load_config(None, tiny_overrides("cyclegan", tmp_path, tmp_path / "run", "loss.feature_matching_weight=1"))
    task = build_task(config)
    G, D = task.build_generators(), task.build_discriminators()
    batch = {"A": torch.rand(1, 3, 32, 32) * 2 - 1, "B": torch.rand(1, 3, 32, 32) * 2 - 1}
    terms = task.generator_loss(D, batch, task.forward(G, batch))
    assert {"G_A_FM", "G_B_FM"} <= set(terms) and all(terms[k] > 0 for k in ("G_A_FM", "G_B_FM"))


def test_a_discriminator_without_features_is_refused(tmp_path):
    config = pix2pix_config(tmp_path, "loss.feature_matching_weight=10", "model.discriminator.name=unet_sn")
    with pytest.raises(ConfigError, match=r"loss.feature_matching_weight.*unet_sn"):
        build_task(config).build_discriminators()
    with pytest.raises(ConfigError, match="loss.feature_matching_weight.*none"):
        build_task(pix2pix_config(tmp_path, "loss.feature_matching_weight=1", "model.discriminator.name=none"))


def test_training_logs_the_term(tmp_path):
    from tests.tiny import make_task_data

    make_task_data(tmp_path / "data", "pix2pix", n_train=2, n_val=0, size=36)
    config = pix2pix_config(tmp_path, "loss.feature_matching_weight=10", "train.max_steps=2",
                            "model.discriminator.name=multiscale", "model.discriminator.num_scales=2")
    Trainer(config).fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    values = [r["loss/G_FM"] for r in rows if "loss/G_FM" in r]
    assert len(values) == 2 and all(v > 0 for v in values)
