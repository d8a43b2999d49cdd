"""The real-world degradation model (Real-ESRGAN's second order), run on the training
device on a whole batch: HR crops in, their LR made on the fly.

For a batch of HR images in [0, 1] and one seed per image (the sample seed the data set
drew it with), :func:`degrade` makes::

    HR --(unsharp mask, gt_usm)--> target
       --[blur k1 -> random resize -> Gaussian | Poisson noise -> JPEG]        round 1
       --[blur k2 (second_blur_prob) -> random resize -> noise -> JPEG]         round 2
       --[resize to HR / scale + final sinc | JPEG], in a random order
       --> LR rounded to 8 bits --> random crop of gt_size (HR) and its LR

Every probability and range is a key of :class:`DegradationOptions`, whose defaults are
Real-ESRGAN's (``options/train_realesrnet_x4plus.yml`` and its data set,
``realesrgan/data/realesrgan_dataset.py``; the kernel families and noise of BasicSR's
``basicsr/data/degradations.py``). The steps are batched tensor operations on the
device: kornia filters (per-image kernels in one grouped convolution) and kornia's JPEG
codec, torch's ``interpolate`` for the resizing.

Randomness: everything Real-ESRGAN draws per image (the three kernels, the noise kind,
level and field, the JPEG qualities, whether the second blur and the final sinc apply,
the crop) is drawn from that image's own seed, so an image's draws do not depend on its
batch; what Real-ESRGAN draws once per batch because the images of a batch must keep one
size (the two random resizes and their modes, the order of the last two steps, the
final resize's mode) is drawn from a seed made of all the batch's seeds. No global random
state is read or advanced: the same batch and seeds give the same LR, in a resumed run
too (bit-identical on the CPU).

Two choices differ from Real-ESRGAN's code and are said here: the second blur, the noise
kind and the final sinc are drawn per image (Real-ESRGAN: once per batch; the
probabilities per image are the same), and the crop position too (Real-ESRGAN: one for
the batch); the "training pair pool" (a queue of 180 pairs shuffled across batches to
mix batch-level choices) is not used: its job, diversity within a batch, is done by the
per-image draws. The target is sharpened once, before degrading (Real-ESRGAN's
Real-ESRGAN model sharpens the crop again after it; the difference is at the borders of
the crop only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from img2img.data.degrade_ops import (
    add_noise,
    blur,
    quantize_8bit,
    random_crops,
    resize,
    unsharp_mask,
)
from img2img.data.jpeg import jpeg
from img2img.data.kernels import BLUR_KINDS, GRID, blur_row, make_kernels, pulse_row, sinc_row
from img2img.errors import ConfigError

RESIZE_MODES = ("area", "bilinear", "bicubic")
_PROB = {"min": 0.0, "max": 1.0}


def _pair(a: float, b: float):
    return field(default_factory=lambda: [a, b])


def _kinds():
    return field(default_factory=lambda: list(BLUR_KINDS))


def _kind_probs():
    return field(default_factory=lambda: [0.45, 0.25, 0.12, 0.03, 0.12, 0.03])


@dataclass
class DegradationOptions:
    """Real-ESRGAN's degradation; every default is the value of its x4plus options."""

    #: Sharpen the HR crop (unsharp mask) before degrading it; the sharpened image is the target.
    gt_usm: bool = True
    #: Unsharp mask: the Gaussian's side (odd; an even value is made odd, as BasicSR does).
    usm_radius: int = field(default=50, metadata={"min": 1, "max": 255})
    #: Unsharp mask: how much of the detail (image - blurred) is added.
    usm_weight: float = field(default=0.5, metadata={"min": 0.0, "max": 10.0})
    #: Unsharp mask: detail below this many 8-bit levels is left alone.
    usm_threshold: float = field(default=10.0, metadata={"min": 0.0, "max": 255.0})
    #: Odd kernel sides drawn uniformly between these two (Real-ESRGAN: 7 to 21).
    kernel_size_range: list[int] = field(default_factory=lambda: [7, 21])
    #: Round 1 blur kinds (iso, aniso, generalized_iso, generalized_aniso, plateau_iso, plateau_aniso).
    kernel_list: list[str] = _kinds()
    #: Round 1: the probability of each kind of kernel_list.
    kernel_prob: list[float] = _kind_probs()
    #: Round 1: the probability of a sinc filter instead of a blur kernel.
    sinc_prob: float = field(default=0.1, metadata=_PROB)
    #: Round 1: blur sigma range (both axes).
    blur_sigma: list[float] = _pair(0.2, 3.0)
    #: Round 1: shape range of the generalized Gaussian kernels.
    betag_range: list[float] = _pair(0.5, 4.0)
    #: Round 1: shape range of the plateau kernels.
    betap_range: list[float] = _pair(1.0, 2.0)
    #: Round 1: probabilities of resizing up, down, or keeping the size.
    resize_prob: list[float] = field(default_factory=lambda: [0.2, 0.7, 0.1])
    #: Round 1: the resize factor range (down from the low end to 1, up from 1 to the high end).
    resize_range: list[float] = _pair(0.15, 1.5)
    #: Round 1: the probability of Gaussian noise (else Poisson noise).
    gaussian_noise_prob: float = field(default=0.5, metadata=_PROB)
    #: Round 1: Gaussian noise sigma range, in 8-bit levels.
    noise_range: list[float] = _pair(1.0, 30.0)
    #: Round 1: Poisson noise scale range.
    poisson_scale_range: list[float] = _pair(0.05, 3.0)
    #: Round 1: the probability that the noise is grey (the same on every channel).
    gray_noise_prob: float = field(default=0.4, metadata=_PROB)
    #: Round 1: JPEG quality range.
    jpeg_range: list[float] = _pair(30.0, 95.0)
    #: Round 2: the probability of the second blur.
    second_blur_prob: float = field(default=0.8, metadata=_PROB)
    #: Round 2 blur kinds.
    kernel_list2: list[str] = _kinds()
    #: Round 2: the probability of each kind of kernel_list2.
    kernel_prob2: list[float] = _kind_probs()
    #: Round 2: the probability of a sinc filter instead of a blur kernel.
    sinc_prob2: float = field(default=0.1, metadata=_PROB)
    #: Round 2: blur sigma range.
    blur_sigma2: list[float] = _pair(0.2, 1.5)
    #: Round 2: shape range of the generalized Gaussian kernels.
    betag_range2: list[float] = _pair(0.5, 4.0)
    #: Round 2: shape range of the plateau kernels.
    betap_range2: list[float] = _pair(1.0, 2.0)
    #: Round 2: probabilities of resizing up, down, or keeping the size.
    resize_prob2: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.3])
    #: Round 2: the resize factor range, relative to the LR size.
    resize_range2: list[float] = _pair(0.3, 1.2)
    #: Round 2: the probability of Gaussian noise (else Poisson noise).
    gaussian_noise_prob2: float = field(default=0.5, metadata=_PROB)
    #: Round 2: Gaussian noise sigma range, in 8-bit levels.
    noise_range2: list[float] = _pair(1.0, 25.0)
    #: Round 2: Poisson noise scale range.
    poisson_scale_range2: list[float] = _pair(0.05, 2.5)
    #: Round 2: the probability of grey noise.
    gray_noise_prob2: float = field(default=0.4, metadata=_PROB)
    #: Round 2: JPEG quality range.
    jpeg_range2: list[float] = _pair(30.0, 95.0)
    #: The probability of the final sinc filter (else none).
    final_sinc_prob: float = field(default=0.8, metadata=_PROB)
    #: The probability that the final resize and sinc come before the last JPEG (else after).
    sinc_first_prob: float = field(default=0.5, metadata=_PROB)
    #: The interpolation modes the resizes draw from, uniformly.
    resize_modes: list[str] = field(default_factory=lambda: list(RESIZE_MODES))

    def check(self, prefix: str = "") -> None:
        """A ConfigError naming the first key whose value cannot work."""
        for r in self.rounds():
            _check_round(r, prefix)
        low, high = self.kernel_size_range
        if not (3 <= low <= high <= 21 and low % 2 and high % 2):
            raise ConfigError(f"{prefix}kernel_size_range: two odd sides from 3 to 21, low first, got "
                              f"{self.kernel_size_range}")
        bad = [m for m in self.resize_modes if m not in RESIZE_MODES]
        if bad or not self.resize_modes:
            raise ConfigError(f"{prefix}resize_modes: choose from {'|'.join(RESIZE_MODES)}, got {self.resize_modes}")

    def rounds(self) -> tuple[Round, Round]:
        """The settings of the two rounds."""
        return (
            Round("", self.kernel_list, self.kernel_prob, self.sinc_prob, self.blur_sigma, self.betag_range,
                  self.betap_range, 1.0, self.resize_prob, self.resize_range, self.gaussian_noise_prob,
                  self.noise_range, self.poisson_scale_range, self.gray_noise_prob, self.jpeg_range),
            Round("2", self.kernel_list2, self.kernel_prob2, self.sinc_prob2, self.blur_sigma2,
                  self.betag_range2, self.betap_range2, self.second_blur_prob, self.resize_prob2,
                  self.resize_range2, self.gaussian_noise_prob2, self.noise_range2,
                  self.poisson_scale_range2, self.gray_noise_prob2, self.jpeg_range2),
        )


class Round(NamedTuple):
    """One round's settings (``suffix``: how its keys end, "" or "2")."""

    suffix: str
    kernel_list: list[str]
    kernel_prob: list[float]
    sinc_prob: float
    blur_sigma: list[float]
    betag_range: list[float]
    betap_range: list[float]
    blur_prob: float
    resize_prob: list[float]
    resize_range: list[float]
    gaussian_noise_prob: float
    noise_range: list[float]
    poisson_scale_range: list[float]
    gray_noise_prob: float
    jpeg_range: list[float]


def _check_range(name: str, value: list[float], low: float, high: float, below_one: str = "") -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ConfigError(f"{name}: two numbers from {low:g} to {high:g}, low first, got {value}")
    if below_one == "around" and not value[0] <= 1 <= value[1]:
        raise ConfigError(f"{name}: the range must hold 1 (down below it, up above it), got {value}")


def _check_probs(name: str, value: list[float], count: int) -> None:
    if len(value) != count or min(value) < 0 or sum(value) <= 0:
        raise ConfigError(f"{name}: {count} probabilities (>= 0, not all 0), got {value}")


def _check_round(r: Round, prefix: str) -> None:
    key = f"{prefix}{{}}{r.suffix}".format
    bad = [k for k in r.kernel_list if k not in BLUR_KINDS]
    if bad or not r.kernel_list:
        raise ConfigError(f"{key('kernel_list')}: choose from {'|'.join(BLUR_KINDS)}, got {r.kernel_list}")
    _check_probs(key("kernel_prob"), r.kernel_prob, len(r.kernel_list))
    _check_probs(key("resize_prob"), r.resize_prob, 3)
    _check_range(key("blur_sigma"), r.blur_sigma, 1e-3, 100.0)
    _check_range(key("betag_range"), r.betag_range, 1e-3, 100.0, "around")
    _check_range(key("betap_range"), r.betap_range, 1e-3, 100.0, "around")
    _check_range(key("resize_range"), r.resize_range, 1e-3, 16.0, "around")
    _check_range(key("noise_range"), r.noise_range, 0.0, 255.0)
    _check_range(key("poisson_scale_range"), r.poisson_scale_range, 0.0, 100.0)
    _check_range(key("jpeg_range"), r.jpeg_range, 1.0, 100.0)


# --------------------------------------------------------------------------- the draws


class Noise(NamedTuple):
    """One image's noise in one round."""

    gaussian: bool
    sigma: float  # Gaussian, in 8-bit levels
    scale: float  # Poisson
    grey: bool
    seed: int


class ImageDraws(NamedTuple):
    """What one image's seed decides."""

    kernels: list[list[float]]  # rows of kernel 1, kernel 2, the final sinc
    noise: tuple[Noise, Noise]
    quality: tuple[float, float]
    crop: tuple[float, float]  # where the crop lies, as fractions of the room for it


class BatchDraws(NamedTuple):
    """What the batch's seeds decide together."""

    resize: tuple[tuple[float, str], tuple[float, str]]  # (factor, mode) of each round
    sinc_first: bool
    final_mode: str


def _rng(seed: int | list[int]) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed))


def _beta(rng: np.random.Generator, span: list[float]) -> float:
    # BasicSR: half the time below 1, half the time above it.
    return float(rng.uniform(span[0], 1.0) if rng.random() < 0.5 else rng.uniform(1.0, span[1]))


def _kernel_row(rng: np.random.Generator, r: Round, sizes: list[int]) -> list[float]:
    size = int(rng.choice(sizes))
    if rng.random() < r.sinc_prob:
        # Real-ESRGAN's cut-off ranges, tied to the kernel size.
        low = math.pi / 3 if size < 13 else math.pi / 5
        return sinc_row(size, rng.uniform(low, math.pi))
    probs = np.asarray(r.kernel_prob, dtype=np.float64)
    kind = r.kernel_list[int(rng.choice(len(probs), p=probs / probs.sum()))]
    sigma_x = rng.uniform(*r.blur_sigma)
    sigma_y, theta = sigma_x, 0.0
    if kind.endswith("aniso"):
        sigma_y, theta = rng.uniform(*r.blur_sigma), rng.uniform(-math.pi, math.pi)
    beta = 1.0
    if kind.startswith("generalized"):
        beta = _beta(rng, r.betag_range)
    elif kind.startswith("plateau"):
        beta = _beta(rng, r.betap_range)
    return blur_row(kind, size, sigma_x, sigma_y, theta, beta)


def _noise(rng: np.random.Generator, r: Round) -> Noise:
    gaussian = bool(rng.random() < r.gaussian_noise_prob)
    sigma = float(rng.uniform(*r.noise_range))
    scale = float(rng.uniform(*r.poisson_scale_range))
    grey = bool(rng.random() < r.gray_noise_prob)
    return Noise(gaussian, sigma, scale, grey, int(rng.integers(0, 2**63 - 1)))


def draw_image(seed: int, o: DegradationOptions) -> ImageDraws:
    """Everything one image's degradation draws, from its seed alone."""
    rng = _rng(int(seed))
    low, high = o.kernel_size_range
    sizes = list(range(low, high + 1, 2))
    first, second = o.rounds()
    k1 = _kernel_row(rng, first, sizes)
    k2 = _kernel_row(rng, second, sizes)
    if not rng.random() < second.blur_prob:
        k2 = pulse_row()
    final = pulse_row()
    if rng.random() < o.final_sinc_prob:
        final = sinc_row(int(rng.choice(sizes)), rng.uniform(math.pi / 3, math.pi))
    noise = (_noise(rng, first), _noise(rng, second))
    quality = (float(rng.uniform(*first.jpeg_range)), float(rng.uniform(*second.jpeg_range)))
    crop = (float(rng.random()), float(rng.random()))
    return ImageDraws([k1, k2, final], noise, quality, crop)


def _resize_draw(rng: np.random.Generator, r: Round, modes: list[str]) -> tuple[float, str]:
    probs = np.asarray(r.resize_prob, dtype=np.float64)
    way = int(rng.choice(3, p=probs / probs.sum()))  # up, down, keep
    factor = (rng.uniform(1.0, r.resize_range[1]), rng.uniform(r.resize_range[0], 1.0), 1.0)[way]
    return float(factor), str(modes[int(rng.integers(len(modes)))])


def draw_batch(seeds: list[int], o: DegradationOptions) -> BatchDraws:
    """What the batch shares, from all its seeds together."""
    rng = _rng([int(s) for s in seeds])
    first, second = o.rounds()
    resize = (_resize_draw(rng, first, o.resize_modes), _resize_draw(rng, second, o.resize_modes))
    sinc_first = bool(rng.random() < o.sinc_first_prob)
    return BatchDraws(resize, sinc_first, str(o.resize_modes[int(rng.integers(len(o.resize_modes)))]))


# --------------------------------------------------------------------------- the pipeline


def degrade(
    hr: torch.Tensor, seeds: torch.Tensor | list[int], o: DegradationOptions, scale: int,
    crop: int | None = None,
) -> dict[str, torch.Tensor]:
    """The LR of a batch of HR images (N3HW in [0, 1], sides multiples of ``scale``), one
    seed per image. Returns ``lr`` (8-bit levels, in [0, 1]), ``hr`` and ``hr_usm`` (the
    sharpened HR, or ``hr`` itself without ``gt_usm``); with ``crop``, all three are cut to
    a random ``crop`` x ``crop`` HR window (and its LR), per image."""
    seeds = [int(s) for s in (seeds.tolist() if isinstance(seeds, torch.Tensor) else seeds)]
    if len(seeds) != hr.shape[0]:
        raise ValueError(f"one seed per image: {len(seeds)} seeds for {hr.shape[0]} images")
    with torch.no_grad():
        hr = hr.float().contiguous()
        images = [draw_image(s, o) for s in seeds]
        shared = draw_batch(seeds, o)
        rows = torch.tensor([row for d in images for row in d.kernels], dtype=torch.float64)
        kernels = make_kernels(rows.to(hr.device)).view(len(seeds), 3, GRID, GRID)
        supports = [int(s) for s in rows.view(len(seeds), 3, -1)[:, :, 1].amax(0)]
        sharp = unsharp_mask(hr, o.usm_radius, o.usm_weight, o.usm_threshold) if o.gt_usm else hr
        lr = _rounds(sharp, (kernels, supports), images, shared, scale)
        lr = quantize_8bit(lr)
        out = {"lr": lr, "hr": hr, "hr_usm": sharp}
        if crop is not None:
            out = random_crops(out, [d.crop for d in images], crop, scale)
        return out


def _rounds(x: torch.Tensor, kernels: tuple[torch.Tensor, list[int]], images: list[ImageDraws],
            shared: BatchDraws, scale: int) -> torch.Tensor:
    height, width = x.shape[-2:]
    (f1, mode1), (f2, mode2) = shared.resize
    grid, support = kernels
    out = blur(x, grid[:, 0], support[0])
    out = resize(out, mode1, factor=f1)
    out = add_noise(out, [d.noise[0] for d in images])
    out = jpeg(out, [d.quality[0] for d in images])
    out = blur(out, grid[:, 1], support[1])
    out = resize(out, mode2, size=(int(height / scale * f2), int(width / scale * f2)))
    out = add_noise(out, [d.noise[1] for d in images])
    target = (height // scale, width // scale)
    if shared.sinc_first:
        out = blur(resize(out, shared.final_mode, size=target), grid[:, 2], support[2])
        out = jpeg(out, [d.quality[1] for d in images])
    else:
        out = jpeg(out, [d.quality[1] for d in images])
        out = blur(resize(out, shared.final_mode, size=target), grid[:, 2], support[2])
    return out
