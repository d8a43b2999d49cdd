"""Metrics: image quality as papers report it. This package owns the scores and nothing
about who asks for them: PSNR and SSIM in the super-resolution literature's convention
(uint8 levels, ``crop_border``, BT.601 studio-range Y, 11x11 Gaussian SSIM) for single
images and batches on any device (:mod:`~img2img.metrics.psnr_ssim`), their per-image
accumulator over an evaluation set that merges across processes
(:mod:`~img2img.metrics.image_metrics`), and FID/KID (:mod:`~img2img.metrics.fid`) on the
features of the FID Inception-v3 (:mod:`~img2img.metrics.inception`, with its weights read
from a local file by :func:`load_fid_inception`) or of any network that exposes
``num_features``, and LPIPS v0.1 (:mod:`~img2img.metrics.lpips`, AlexNet or VGG16, from
local weights files). The metric names and their direction (higher is better or not) are the
config's (:data:`img2img.config.METRICS`); what to evaluate is :mod:`img2img.evaluate`'s.

Names are imported lazily (PEP 562): ``import img2img.metrics`` does not import torch.

Public API::

    psnr(pred, target, crop_border=0, y_channel=False)
    ssim(pred, target, crop_border=0, y_channel=False)
    rgb_to_y(img), gaussian_window(dtype, device), SSIM_WINDOW
    ImageMetrics(crop_border=0, y_channel_too=True): update, compute, state, merge
    FidKid(feature_net, ...): update(real=..., fake=...), compute
    fid_kid(real_images, fake_images, feature_net, ...)
    load_fid_inception(weights=None, device=None) -> FIDInceptionV3
    LPIPS(net="alex"|"vgg")(pred, target) -> per-image distances (images in [0, 1])
    load_lpips(net, weights, backbone="imagenet", device=None) -> LPIPS
"""

from __future__ import annotations

from img2img.lazy import lazy_exports

_EXPORTS = {
    "psnr": "img2img.metrics.psnr_ssim",
    "ssim": "img2img.metrics.psnr_ssim",
    "rgb_to_y": "img2img.metrics.psnr_ssim",
    "gaussian_window": "img2img.metrics.psnr_ssim",
    "SSIM_WINDOW": "img2img.metrics.psnr_ssim",
    "ImageMetrics": "img2img.metrics.image_metrics",
    "FidKid": "img2img.metrics.fid",
    "fid_kid": "img2img.metrics.fid",
    "load_fid_inception": "img2img.metrics.fid",
    "FIDInceptionV3": "img2img.metrics.inception",
    "LPIPS": "img2img.metrics.lpips",
    "load_lpips": "img2img.metrics.lpips",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
