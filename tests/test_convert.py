"""Importing reference ``.pth`` weights: each weight must land where it belongs.

The modules below are written here in the layout of the reference repositories (the
pytorch-CycleGAN-and-pix2pix ``UnetGenerator``/``ResnetGenerator`` and BasicSR's
``MSRResNet``), so their state dicts have the reference key names. After the import our
generator must compute exactly what the reference-layout module computes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import img2img
from img2img.config import load_config
from img2img.convert import export_reference_model, import_reference_weights
from img2img.errors import UserError

# --------------------------------------------------------------------------- reference layouts


class RefUnetBlock(nn.Module):
    """A UnetSkipConnectionBlock: ``model`` = [down layers, inner block, up layers]."""

    def __init__(self, outer, inner, in_ch=None, sub=None, outermost=False, innermost=False,
                 dropout=False):
        super().__init__()
        self.outermost = outermost
        in_ch = outer if in_ch is None else in_ch
        down = nn.Conv2d(in_ch, inner, 4, 2, 1, bias=False)
        if outermost:
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1),
                      nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                      nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down, nn.BatchNorm2d(inner), sub, nn.ReLU(True),
                      nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False),
                      nn.BatchNorm2d(outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class RefUnet(nn.Module):
    def __init__(self, in_ch, out_ch, num_downs, ngf):
        super().__init__()
        block = RefUnetBlock(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = RefUnetBlock(ngf * 8, ngf * 8, sub=block, dropout=True)
        block = RefUnetBlock(ngf * 4, ngf * 8, sub=block)
        block = RefUnetBlock(ngf * 2, ngf * 4, sub=block)
        block = RefUnetBlock(ngf, ngf * 2, sub=block)
        self.model = RefUnetBlock(out_ch, ngf, in_ch=in_ch, sub=block, outermost=True)

    def forward(self, x):
        return self.model(x)


class RefResnetBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim),
        )

    def forward(self, x):
        return x + self.conv_block(x)


class RefResnet(nn.Module):
    """ResnetGenerator with InstanceNorm (CycleGAN): one Sequential, ``model.N``."""

    def __init__(self, in_ch, out_ch, ngf, n_blocks):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7), nn.InstanceNorm2d(ngf),
                  nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1),
                       nn.InstanceNorm2d(ngf * mult * 2), nn.ReLU(True)]
        layers += [RefResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1),
                       nn.InstanceNorm2d(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class RefResBlockNoBN(nn.Module):
    def __init__(self, feat):
        super().__init__()
        self.conv1 = nn.Conv2d(feat, feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(feat, feat, 3, 1, 1)
        self.relu = nn.ReLU(True)

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x)))


class RefMSRResNet(nn.Module):
    """BasicSR's MSRResNet layout (x4: upconv1 and upconv2)."""

    def __init__(self, feat, n_blocks, upscale=4):
        super().__init__()
        self.upscale = upscale
        self.conv_first = nn.Conv2d(3, feat, 3, 1, 1)
        self.body = nn.Sequential(*(RefResBlockNoBN(feat) for _ in range(n_blocks)))
        self.upconv1 = nn.Conv2d(feat, feat * 4, 3, 1, 1)
        self.upconv2 = nn.Conv2d(feat, feat * 4, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = nn.Conv2d(feat, feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(feat, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.1, True)

    def forward(self, x):
        out = self.body(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.upscale, mode="bilinear",
                                   align_corners=False)


def randomise(net: nn.Module, seed: int) -> nn.Module:
    """Distinct random values in every tensor, BatchNorm statistics included."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.2)
    return net.eval()


def same_output(ours: nn.Module, ref: nn.Module, shape) -> None:
    x = torch.rand(*shape) * 2 - 1
    with torch.no_grad():
        expected = ref(x.clone())
        got = ours.eval()(x.clone())
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()


# --------------------------------------------------------------------------- tests


UNET = ["task=pix2pix", "model.generator.name=unet", "model.generator.num_downs=6",
        "model.generator.ngf=4", "model.generator.norm=batch", "model.generator.dropout=true"]


def test_pix2pix_unet_pth(tmp_path):
    ref = randomise(RefUnet(3, 3, num_downs=6, ngf=4), seed=1)
    keys = list(ref.state_dict())
    assert keys[0] == "model.model.0.weight" and "model.model.1.model.1.weight" in keys
    pth = tmp_path / "latest_net_G.pth"
    torch.save(ref.state_dict(), pth)
    config = load_config(None, UNET)
    net = import_reference_weights(pth, config)
    same_output(net, ref, (2, 3, 64, 64))
    # every tensor arrived somewhere different from a fresh network
    out = export_reference_model(pth, config, tmp_path / "model")
    t = img2img.load(out)
    x = torch.rand(3, 64, 64)
    with torch.no_grad():
        expected = ((ref(x[None] * 2 - 1) + 1) / 2).clamp(0, 1)[0]
    assert torch.allclose(t(x), expected, atol=1e-5)


def test_cyclegan_resnet_pths_and_dataparallel_prefix(tmp_path):
    refs = {"G_A": randomise(RefResnet(3, 3, ngf=4, n_blocks=2), 2),
            "G_B": randomise(RefResnet(3, 3, ngf=4, n_blocks=2), 3)}
    assert "model.1.weight" in refs["G_A"].state_dict()
    paths = {}
    for name, ref in refs.items():
        paths[name] = tmp_path / f"latest_net_{name}.pth"
        torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, paths[name])
    config = load_config(None, ["task=cyclegan", "model.generator.name=resnet",
                                "model.generator.n_blocks=2", "model.generator.ngf=4",
                                "model.generator.norm=instance"])
    out = export_reference_model(paths, config, tmp_path / "model")
    for name, direction in (("G_A", "AtoB"), ("G_B", "BtoA")):
        same_output(img2img.load(out, direction=direction).net, refs[name], (1, 3, 24, 32))
    with pytest.raises(UserError, match="one .pth per generator"):
        export_reference_model(paths["G_A"], config, tmp_path / "x")


class UnitRange(nn.Module):
    """A [0, 1] network seen from img2img's [-1, 1] side."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net((x + 1) / 2) * 2 - 1


def test_basicsr_msrresnet_params_ema(tmp_path):
    """BasicSR trains MSRResNet on [0, 1] images: the import runs the layers on [0, 1]
    (value_range unit, recorded in the exported config) so that the picture a user gets
    is BasicSR's."""
    ema, raw = randomise(RefMSRResNet(8, 2), 4), randomise(RefMSRResNet(8, 2), 5)
    pth = tmp_path / "net_g_latest.pth"
    torch.save({"params": raw.state_dict(), "params_ema": ema.state_dict()}, pth)
    config = load_config(None, ["task=srgan", "model.generator.name=srresnet",
                                "model.generator.ngf=8", "model.generator.n_blocks=2",
                                "data.scale=4"])
    imported = import_reference_weights(pth, config)
    assert imported.unit_range
    same_output(imported, UnitRange(ema), (1, 3, 10, 14))
    same_output(import_reference_weights(pth, config, key="params"), UnitRange(raw), (1, 3, 10, 14))

    # End to end: a uint8 picture through img2img.load is BasicSR's output on [0, 1].
    out = export_reference_model(pth, config, tmp_path / "model")
    translator = img2img.load(out)
    image = torch.randint(0, 256, (9, 11, 3), generator=torch.Generator().manual_seed(0)).numpy().astype("uint8")
    with torch.no_grad():
        expected = ema(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    expected = (expected[0].permute(1, 2, 0).clamp(0, 1) * 255).round().numpy()
    got = translator(image)
    assert got.shape == (36, 44, 3)
    assert abs(got.astype(float) - expected).max() <= 1


def test_value_range_unit_only_for_sr_generators():
    from img2img.errors import ConfigError
    from img2img.tasks import build_generators

    with pytest.raises(ConfigError, match="value_range: 'unit'.*not unet"):
        build_generators(load_config(None, [*UNET, "model.generator.value_range=unit"]))


def test_mismatched_config_and_unsafe_files_are_refused(tmp_path):
    ref = randomise(RefUnet(3, 3, num_downs=6, ngf=4), seed=1)
    pth = tmp_path / "latest_net_G.pth"
    torch.save(ref.state_dict(), pth)
    wider = load_config(None, [*UNET, "model.generator.ngf=8"])
    with pytest.raises(UserError, match="does not fit"):
        import_reference_weights(pth, wider)
    shallower = load_config(None, [*UNET, "model.generator.num_downs=5"])
    with pytest.raises(UserError, match="tensors do not fit"):
        import_reference_weights(pth, shallower)
    pickled = tmp_path / "whole_module.pth"
    torch.save(ref, pickled)  # a pickled module: weights_only loading refuses it
    with pytest.raises(UserError, match="holding more than tensors"):
        import_reference_weights(pickled, load_config(None, UNET))
    with pytest.raises(UserError, match="not found"):
        import_reference_weights(tmp_path / "missing.pth", load_config(None, UNET))
