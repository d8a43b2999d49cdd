"""SR networks written here in the layout of their original code, for import/export tests.

BasicSR/Real-ESRGAN's ``RRDBNet`` (with Real-ESRGAN's pixel-unshuffle for x2/x1),
Real-ESRGAN's ``SRVGGNetCompact`` and ``UNetDiscriminatorSN`` (spectral norm in torch's
older hook form, whose keys are ``weight_orig``/``weight_u``/``weight_v``, as in the
released discriminator files). Module names, registration order and forward passes follow
those repositories; images are [0, 1] in and out, as there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm as hook_spectral_norm


class RefRDB(nn.Module):
    def __init__(self, nf, gc):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, True)

    def forward(self, x):
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        return self.conv5(torch.cat((x, x1, x2, x3, x4), 1)) * 0.2 + x


class RefRRDB(nn.Module):
    def __init__(self, nf, gc):
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = RefRDB(nf, gc), RefRDB(nf, gc), RefRDB(nf, gc)

    def forward(self, x):
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RefRRDBNet(nn.Module):
    def __init__(self, nf=8, nb=1, gc=32, scale=4, in_ch=3, out_ch=3):
        super().__init__()
        self.scale = scale
        factor = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(in_ch * factor * factor, nf, 3, 1, 1)
        self.body = nn.Sequential(*(RefRRDB(nf, gc) for _ in range(nb)))
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, True)

    def forward(self, x):
        if self.scale == 2:
            x = F.pixel_unshuffle(x, 2)
        elif self.scale == 1:
            x = F.pixel_unshuffle(x, 4)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


class RefSRVGGNetCompact(nn.Module):
    def __init__(self, nf=8, num_conv=2, upscale=4, in_ch=3, out_ch=3):
        super().__init__()
        self.upscale = upscale
        self.body = nn.ModuleList([nn.Conv2d(in_ch, nf, 3, 1, 1), nn.PReLU(num_parameters=nf)])
        for _ in range(num_conv):
            self.body.append(nn.Conv2d(nf, nf, 3, 1, 1))
            self.body.append(nn.PReLU(num_parameters=nf))
        self.body.append(nn.Conv2d(nf, out_ch * upscale * upscale, 3, 1, 1))
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x):
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


class RefUNetDiscriminatorSN(nn.Module):
    def __init__(self, in_ch=3, nf=8):
        super().__init__()
        sn = hook_spectral_norm
        self.conv0 = nn.Conv2d(in_ch, nf, kernel_size=3, stride=1, padding=1)
        self.conv1 = sn(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = sn(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = sn(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = sn(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = sn(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = sn(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = sn(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = sn(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def forward(self, x):
        def act(t):
            return F.leaky_relu(t, negative_slope=0.2)

        def up(t):
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3))) + x2
        x5 = act(self.conv5(up(x4))) + x1
        x6 = act(self.conv6(up(x5))) + x0
        out = act(self.conv8(act(self.conv7(x6))))
        return self.conv9(out)


def randomise(net: nn.Module, seed: int, scale: float = 0.2) -> nn.Module:
    """Distinct random values in every float tensor of ``net``'s state dict; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.dtype.is_floating_point:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * scale)
    return net.eval()


class UnitRange(nn.Module):
    """A [0, 1] network seen from img2img's [-1, 1] side."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net((x + 1) / 2) * 2 - 1
