"""The backbone zoo: shapes, exact parameter counts, norms, init, registries, export."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from img2img import config as config_module
from img2img.config import DiscriminatorConfig, GeneratorConfig
from img2img.errors import ConfigError
from img2img.nets import (
    DISCRIMINATORS,
    GENERATORS,
    MultiScaleDiscriminator,
    PatchGAN,
    build_discriminator,
    build_generator,
)
from img2img.nets.layers import has_spectral_norm, init_weights


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def gen(name: str, scale: int = 1, cin: int = 3, cout: int = 3, **kw) -> nn.Module:
    kw.setdefault("ngf", 8)
    return build_generator(GeneratorConfig(name=name, **kw), cin, cout, scale)


def disc(name: str = "patchgan", cin: int = 3, **kw) -> nn.Module:
    kw.setdefault("ndf", 8)
    return build_discriminator(DiscriminatorConfig(name=name, **kw), cin)


# --------------------------------------------------------------------------- registries


def test_registries_cover_the_config_names():
    assert set(GENERATORS) == set(config_module.GENERATORS)
    assert set(DISCRIMINATORS) == set(config_module.DISCRIMINATORS) - {"none"}


def test_unknown_or_conflicting_names_are_config_errors():
    with pytest.raises(ConfigError, match="'nope'.*allowed: unet_128"):
        build_generator(GeneratorConfig(name="nope"), 3, 3)
    with pytest.raises(ConfigError, match="'nope'.*allowed: patchgan"):
        build_discriminator(DiscriminatorConfig(name="nope"), 3)
    with pytest.raises(ConfigError, match="no discriminator"):
        build_discriminator(DiscriminatorConfig(name="none"), 3)
    with pytest.raises(ConfigError, match="n_blocks: 6 conflicts with resnet_9blocks"):
        build_generator(GeneratorConfig(name="resnet_9blocks", n_blocks=6), 3, 3)
    with pytest.raises(ConfigError, match="cannot upsample x4"):
        build_generator(GeneratorConfig(name="unet", num_downs=3, ngf=4), 3, 3, scale=4)
    with pytest.raises(ConfigError, match="data.scale.*2, 3 or 4, got 1"):
        build_generator(GeneratorConfig(name="srresnet", ngf=4, n_blocks=1), 3, 3, scale=1)
    with pytest.raises(ConfigError, match="must be equal, got 1 -> 3"):
        build_generator(GeneratorConfig(name="srresnet", ngf=4, n_blocks=1), 1, 3, scale=2)
    with pytest.raises(ConfigError, match="norm: invalid value 'group'"):
        PatchGAN(3, 8, 3, norm="group")


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("name", "kw", "shape", "multiple"),
    [
        ("unet", {"num_downs": 5}, (2, 3, 32, 64), 32),
        ("unet", {"num_downs": 5}, (1, 3, 96, 32), 32),
        ("unet", {"num_downs": 3, "norm": "instance"}, (1, 3, 24, 40), 8),
        ("unet_128", {}, (1, 3, 128, 256), 128),
        ("resnet", {"n_blocks": 2}, (2, 3, 36, 20), 4),
        ("resnet_6blocks", {"padding": "replicate"}, (1, 3, 20, 44), 4),
        ("resnet", {"n_blocks": 1, "padding": "zero", "norm": "none"}, (1, 3, 8, 12), 4),
    ],
)
def test_image_to_image_generators_keep_size_and_range(name, kw, shape, multiple):
    net = gen(name, **kw)
    assert (net.size_multiple, net.scale, net.in_channels, net.out_channels) == (multiple, 1, 3, 3)
    y = net(torch.randn(shape) * 5)
    assert y.shape == shape
    assert y.abs().max() <= 1.0


def test_generators_map_channel_counts():
    x = torch.randn(1, 1, 32, 32)
    assert gen("unet", cin=1, cout=2, num_downs=5)(x).shape == (1, 2, 32, 32)
    assert gen("resnet", cin=1, cout=2, n_blocks=1)(x).shape == (1, 2, 32, 32)


@pytest.mark.parametrize("name", ["srresnet", "srresnet_bn"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_sr_generators_upsample(name, scale):
    net = gen(name, scale=scale, n_blocks=2)
    assert (net.scale, net.size_multiple) == (scale, 1)
    y = net(torch.randn(2, 3, 7, 9))
    assert y.shape == (2, 3, 7 * scale, 9 * scale)


def test_srresnet_is_a_residual_over_bilinear_upsampling_with_linear_output():
    net = gen("srresnet", scale=2, n_blocks=1)
    with torch.no_grad():
        net.conv_last.weight.zero_()
        net.conv_last.bias.zero_()
    x = torch.rand(1, 3, 5, 6) * 4 - 2  # outside [-1, 1]: no tanh clamps it
    expected = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear")
    torch.testing.assert_close(net(x), expected)
    assert net(x).abs().max() > 1.0


def test_unet_dropout_sits_in_the_inner_512_channel_decoder_steps():
    def dropouts(net):
        return [m for m in net.modules() if isinstance(m, nn.Dropout)]

    assert len(dropouts(gen("unet_256", dropout=True))) == 3
    assert len(dropouts(gen("unet_128", dropout=True))) == 2
    assert dropouts(gen("unet_256", dropout=False)) == []
    assert len(dropouts(gen("resnet", n_blocks=3, dropout=True))) == 3


# --------------------------------------------------------------------------- discriminators


def test_patchgan_70x70_gives_a_30x30_map_for_256_input():
    net = disc("patchgan", n_layers=3, ndf=4)
    assert net(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    assert net(torch.randn(2, 3, 64, 96)).shape == (2, 1, 6, 10)


def test_pixelgan_map_has_the_input_size():
    assert disc("pixelgan", cin=6)(torch.randn(2, 6, 20, 28)).shape == (2, 1, 20, 28)


def test_multiscale_returns_one_shrinking_map_per_scale():
    net = disc("multiscale", num_scales=3, ndf=4)
    assert isinstance(net, MultiScaleDiscriminator)
    maps = net(torch.randn(2, 3, 128, 96))
    assert [m.shape for m in maps] == [(2, 1, 14, 10), (2, 1, 6, 4), (2, 1, 2, 1)]
    assert len({id(d) for d in net.discriminators}) == 3


def test_multiscale_pyramid_is_average_pooling_without_padding_counts():
    net = disc("multiscale", num_scales=2, ndf=4)
    x = torch.ones(1, 3, 64, 64)
    pooled = net.downsample(x)
    assert pooled.shape == (1, 3, 32, 32)
    torch.testing.assert_close(pooled, torch.ones_like(pooled))  # edges not darkened


def test_vgg_discriminator_gives_one_logit_and_rejects_other_sizes():
    net = disc("vgg", ndf=4)
    assert net(torch.randn(2, 3, 128, 128)).shape == (2, 1, 1, 1)
    with pytest.raises(ConfigError, match="128x128.*got 96x128"):
        net(torch.randn(2, 3, 96, 128))


# --------------------------------------------------------------------------- exact counts


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: build_generator(GeneratorConfig(name="unet_256", norm="batch"), 3, 3), 54_413_955),
        (lambda: build_discriminator(DiscriminatorConfig(norm="batch"), 6), 2_768_705),
        (
            lambda: build_generator(GeneratorConfig(name="resnet_9blocks", norm="instance"), 3, 3),
            11_378_179,
        ),
        (lambda: build_discriminator(DiscriminatorConfig(norm="instance"), 3), 2_764_737),
        (lambda: build_generator(GeneratorConfig(name="srresnet"), 3, 3, scale=4), 1_517_571),
        (lambda: build_discriminator(DiscriminatorConfig(name="vgg"), 3), 14_499_401),
    ],
    ids=["pix2pix_G", "pix2pix_D", "cyclegan_G", "cyclegan_D", "srresnet_x4", "vgg_D"],
)
def test_parameter_counts_match_the_reference(build, expected):
    assert n_params(build()) == expected


# --------------------------------------------------------------------------- norms and init


def _convs(net):
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


@pytest.mark.parametrize("norm", ["batch", "instance", "none", "spectral"])
def test_conv_bias_only_without_batch_norm(norm):
    net = PatchGAN(3, 8, n_layers=3, norm=norm)
    convs = _convs(net)
    first, middle, last = convs[0], convs[1:-1], convs[-1]
    assert first.bias is not None and last.bias is not None  # no norm follows them
    assert all((c.bias is None) == (norm == "batch") for c in middle)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    ins = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(bns) == (3 if norm == "batch" else 0)
    assert len(ins) == (3 if norm == "instance" else 0)
    assert all(not m.affine and not m.track_running_stats for m in ins)


@pytest.mark.parametrize("make", [lambda: disc("patchgan", norm="spectral"),
                                  lambda: gen("unet", num_downs=4, norm="spectral"),
                                  lambda: gen("resnet", n_blocks=1, norm="spectral")])
def test_spectral_norm_wraps_every_conv_and_bounds_its_gain(make):
    net = make()
    convs = _convs(net)
    assert convs and all(has_spectral_norm(c) for c in convs)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) for m in net.modules())
    net.eval()
    for conv in convs:
        dim = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
        matrix = conv.weight.movedim(dim, 0).flatten(1)
        sigma = torch.linalg.matrix_norm(matrix.detach(), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.1)


def test_normal_init_statistics():
    net = build_discriminator(DiscriminatorConfig(norm="batch", init="normal", init_gain=0.02), 6)
    big = max(_convs(net), key=lambda c: c.weight.numel())
    assert big.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert big.weight.mean().item() == pytest.approx(0.0, abs=1e-3)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    weights = torch.cat([bn.weight for bn in bns])
    assert weights.mean().item() == pytest.approx(1.0, abs=0.01)
    assert weights.std().item() == pytest.approx(0.02, rel=0.2)
    assert all(torch.all(bn.bias == 0) for bn in bns)
    assert all(torch.all(c.bias == 0) for c in _convs(net) if c.bias is not None)


@pytest.mark.parametrize(
    ("init", "expected_std"),
    [
        ("xavier", lambda fan_in, fan_out: 0.5 * math.sqrt(2.0 / (fan_in + fan_out))),
        ("kaiming", lambda fan_in, fan_out: math.sqrt(2.0 / fan_in)),
        ("orthogonal", None),
    ],
)
def test_other_inits(init, expected_std):
    conv = nn.Conv2d(256, 256, 4)
    init_weights(nn.Sequential(conv), init, gain=0.5)
    fan_in = fan_out = 256 * 16
    if expected_std is not None:
        assert conv.weight.std().item() == pytest.approx(expected_std(fan_in, fan_out), rel=0.02)
    else:  # rows of an orthogonal matrix times the gain
        rows = conv.weight.flatten(1)
        torch.testing.assert_close(rows @ rows.T, 0.25 * torch.eye(256), atol=1e-4, rtol=0)
    assert torch.all(conv.bias == 0)


def test_srresnet_keeps_its_scaled_kaiming_init():
    net = build_generator(GeneratorConfig(name="srresnet", init="normal"), 3, 3, scale=4)
    conv = net.body[0].conv1
    assert conv.weight.std().item() == pytest.approx(0.1 * math.sqrt(2.0 / (64 * 9)), rel=0.05)
    assert torch.all(conv.bias == 0)


# --------------------------------------------------------------------------- deployment


def test_channels_last_gives_the_same_output():
    for net, x in [(gen("unet", num_downs=4), torch.randn(1, 3, 32, 48)),
                   (gen("resnet", n_blocks=1), torch.randn(1, 3, 20, 12)),
                   (gen("srresnet", scale=2, n_blocks=1), torch.randn(1, 3, 6, 5))]:
        net.eval()
        ref = net(x)
        out = net.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "kw", "scale", "export_hw", "run_hw"),
    [
        ("unet", {"num_downs": 4}, 1, (32, 32), (48, 16)),
        ("resnet", {"n_blocks": 1}, 1, (8, 8), (12, 20)),
        ("srresnet", {"n_blocks": 1}, 3, (6, 6), (8, 3)),
    ],
)
def test_onnx_export_with_dynamic_sizes(name, kw, scale, export_hw, run_hw):
    ort = pytest.importorskip("onnxruntime")
    net = gen(name, scale=scale, **kw).eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        net, (torch.randn(1, 3, *export_hw),), buffer, dynamo=False,
        input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h", 3: "w"}},
    )
    session = ort.InferenceSession(buffer.getvalue())
    x = torch.randn(2, 3, *run_hw)
    (y,) = session.run(None, {"x": x.numpy()})
    assert y.shape == (2, 3, run_hw[0] * scale, run_hw[1] * scale)
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(y), net(x), atol=1e-4, rtol=1e-4)
