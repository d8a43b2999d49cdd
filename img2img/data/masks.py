"""Hole masks for inpainting: made on the fly from a seed, or read from files.

A mask is a float32 ``H x W`` array with 1 in the hole and 0 on the known pixels; as a
file, white (any channel mean above one half) is the hole.

Made masks (:func:`make_mask`) cover a share of the image drawn uniformly from
``hole_share`` (e.g. [0.1, 0.5]); the kind (``free_form`` or ``rectangle``) is drawn
uniformly from ``kinds``. Everything comes from one seed, so a sample's mask is the same
in every run, on every process and after a resume.

- **free_form** follows DeepFill v2's free-form training masks (Yu et al., "Free-Form Image
  Inpainting with Gated Convolution", ICCV 2019, Algorithm 1; the reference code's
  ``brush_stroke_mask`` in JiahuiYu/generative_inpainting ``inpaint_ops.py``): a stroke has
  4 to 11 vertices; its turning angles are drawn around a mean of 2*pi/5 within +-2*pi/15,
  every other one mirrored (2*pi - a); segment lengths are normal with mean a radius of
  one eighth of the image diagonal and standard deviation half that, clipped to [0, 2 x
  radius]; the brush is 12 to 40 px wide at 256 px (scaled with the image's shorter side),
  with round joints; the stroke set is flipped left-right and top-bottom with probability
  1/2 each. The reference draws 1 to 3 strokes; here strokes are added until the drawn
  share is reached, and a stroke that would push the mask past the top of ``hole_share``
  is drawn again (up to a limit), so every mask's share lies in the range but for
  pathological sizes.
- **rectangle**: one axis-aligned box of the drawn share's area, aspect ratio (width /
  height) log-uniform in [1/2, 2], at a uniform position (DeepFill's ``random_bbox``
  draws a fixed-size box; here its area is the drawn share).

:class:`MaskedPhotos` serves photos with their masks (made per sample seed, or matched by
file stem in a mask folder); :func:`match_masks` matches images to mask files for
prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from img2img.errors import DataError, UserError

KINDS = ("free_form", "rectangle")
#: DeepFill v2's free-form stroke parameters (its reference code, for 256 x 256 images).
MIN_VERTICES, MAX_VERTICES = 4, 12  # numpy randint: 4 to 11
MEAN_ANGLE, ANGLE_RANGE = 2 * math.pi / 5, 2 * math.pi / 15
MIN_WIDTH, MAX_WIDTH, REFERENCE_SIDE = 12, 40, 256
#: Redraws of a stroke that overshoots the share, before the mask is taken as it is.
MAX_TRIES = 60
#: Tells the mask's random stream apart from the image's for the same sample seed.
MASK_STREAM = 0x6D61736B


def mask_rng(seed: int) -> np.random.Generator:
    """The random generator of the mask of the sample with ``seed``."""
    return np.random.default_rng([int(seed) & ((1 << 64) - 1), MASK_STREAM])


def _stroke(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """One DeepFill v2 brush stroke (see the module docstring) as a bool H x W map."""
    from PIL import Image, ImageDraw

    radius = math.sqrt(h * h + w * w) / 8
    scale = min(h, w) / REFERENCE_SIDE
    n = int(rng.integers(MIN_VERTICES, MAX_VERTICES))
    lo = MEAN_ANGLE - rng.uniform(0, ANGLE_RANGE)
    hi = MEAN_ANGLE + rng.uniform(0, ANGLE_RANGE)
    angles = [rng.uniform(lo, hi) for _ in range(n)]
    angles = [2 * math.pi - a if i % 2 == 0 else a for i, a in enumerate(angles)]
    points = [(float(rng.integers(0, w)), float(rng.integers(0, h)))]
    for a in angles:
        r = float(np.clip(rng.normal(radius, radius / 2), 0, 2 * radius))
        x, y = points[-1]
        points.append((float(np.clip(x + r * math.cos(a), 0, w)), float(np.clip(y + r * math.sin(a), 0, h))))
    width = max(1, int(round(rng.uniform(MIN_WIDTH, MAX_WIDTH) * scale)))
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    draw.line(points, fill=255, width=width)
    for x, y in points:
        draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
    stroke = np.asarray(canvas) > 0
    if rng.random() < 0.5:
        stroke = stroke[:, ::-1]
    if rng.random() < 0.5:
        stroke = stroke[::-1, :]
    return stroke


def free_form_mask(rng: np.random.Generator, h: int, w: int, share: float, top: float) -> np.ndarray:
    """Strokes until at least ``share`` of the pixels are holes, none taking it past ``top``."""
    mask = np.zeros((h, w), bool)
    tries = 0
    while mask.mean() < share and tries < MAX_TRIES:
        candidate = mask | _stroke(rng, h, w)
        if candidate.mean() <= top:
            mask = candidate
        else:
            tries += 1
    return mask


def rectangle_mask(rng: np.random.Generator, h: int, w: int, share: float) -> np.ndarray:
    """One box of ``share`` of the image's area (see the module docstring)."""
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    area = share * h * w
    bw = int(round(min(w, max(1.0, math.sqrt(area * aspect)))))
    bh = int(round(min(h, max(1.0, area / bw))))
    y0, x0 = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
    mask = np.zeros((h, w), bool)
    mask[y0 : y0 + bh, x0 : x0 + bw] = True
    return mask


def make_mask(seed: int, h: int, w: int, hole_share: Sequence[float] = (0.1, 0.5),
              kinds: Sequence[str] = KINDS) -> np.ndarray:
    """The float32 {0, 1} H x W hole mask of the sample with ``seed`` (module docstring)."""
    rng = mask_rng(seed)
    lo, hi = float(hole_share[0]), float(hole_share[1])
    kind = kinds[int(rng.integers(0, len(kinds)))]
    share = rng.uniform(lo, hi)
    if kind == "rectangle":
        mask = rectangle_mask(rng, h, w, share)
    elif kind == "free_form":
        mask = free_form_mask(rng, h, w, share, hi)
    else:
        raise ValueError(f"unknown mask kind {kind!r}; allowed: {'|'.join(KINDS)}")
    return mask.astype(np.float32)


# --------------------------------------------------------------------------- files


def hole_of(grey: Any, where: str) -> Any:
    """The hole (``grey`` > 1/2) of a grey mask in [0, 1] (numpy or torch). A mask with
    grey pixels but none above half-white (a 0/1 label map saved as 8-bit: every pixel
    black to the eye) is a UserError naming ``where``: it would silently fill nothing."""
    count = grey.numel() if isinstance(grey, torch.Tensor) else grey.size
    top = float(grey.max()) if count else 0.0
    if 0 < top <= 0.5:
        raise UserError(f"{where}: no pixel is white (the brightest is {round(top * 255)} of 255), so there "
                        "would be no hole; white (above half) marks the hole: save a 0/1 mask as 0/255")
    return grey > 0.5


def read_mask(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """A mask file as float32 {0, 1} H x W: 1 where the image is white (the hole)."""
    from img2img.data.io import read_image

    image = read_image(path, max_pixels=max_pixels)
    return hole_of(image.mean(axis=2), f"mask {path}").astype(np.float32)


def masks_by_stem(folder: Path) -> dict[str, Path]:
    """The mask files of ``folder`` (recursive) by file stem; two with one stem are a UserError."""
    from img2img.data.io import scan_images

    found: dict[str, Path] = {}
    for path in scan_images(folder):
        if path.stem in found:
            raise UserError(f"mask folder {folder}: two masks for {path.stem!r}: {found[path.stem]} and {path}")
        found[path.stem] = path
    return found


def match_masks(images: Sequence[Path], masks: str | Path,
                relative: Sequence[Path] | None = None) -> list[Path]:
    """Each image's mask: ``masks`` is one mask file for every image, or a folder with a
    mask per image matched by file stem (``photos/cat.jpg`` <- ``masks/cat.png``); with
    ``relative`` (each image's path inside the input folder), a mask at the image's own
    place in a folder that mirrors the input folder's subfolders comes first
    (``photos/x/cat.jpg`` <- ``masks/x/cat.png``, beside ``masks/y/cat.png``). An image
    without its mask, or with two masks of its stem and none at its place, is a UserError
    naming it."""
    from img2img.data.io import scan_images

    where = Path(masks).expanduser()
    if where.is_file():
        return [where] * len(images)
    if not where.is_dir():
        raise UserError(f"--mask {where}: no such file or folder")
    found = scan_images(where)
    by_place: dict[str, list[Path]] = {}
    by_stem: dict[str, list[Path]] = {}
    for path in found:
        by_place.setdefault(path.relative_to(where).with_suffix("").as_posix(), []).append(path)
        by_stem.setdefault(path.stem, []).append(path)
    chosen: list[Path | None] = []
    for k, image in enumerate(images):
        place = (Path(relative[k]).parent / Path(image).stem).as_posix() if relative else None
        stems = by_place.get(place) or by_stem.get(Path(image).stem, [])
        if len(stems) > 1:
            raise UserError(f"--mask {where}: {len(stems)} masks for {image}: {stems[0]} and {stems[1]}; keep "
                            "one, or mirror the input folder's subfolders (a mask at the image's place comes first)")
        chosen.append(stems[0] if stems else None)
    missing = [str(p) for p, m in zip(images, chosen) if m is None]
    if missing:
        raise UserError(
            f"--mask {where}: no mask for {len(missing)} image(s), matched by file stem: "
            + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            + "; add a mask with the image's name, or pass one mask file for all"
        )
    return [m for m in chosen if m is not None]


def check_mask_size(mask: np.ndarray, mask_path: Any, image_hw: tuple[int, int], image_path: Any,
                    resized_by: str | None = None) -> None:
    """A UserError naming both files when a mask is not the size of its image
    (``resized_by``: the preprocessing that gave the image that size, said in the message)."""
    if mask.shape[:2] != tuple(image_hw):
        h, w = image_hw
        after = (f" after data.preprocess={resized_by} (set data.preprocess=none to score whole images, "
                 "or make the masks that size)") if resized_by and resized_by != "none" else ""
        raise UserError(
            f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
            f"{w}x{h}{after}; a mask must have its image's size"
        )


# --------------------------------------------------------------------------- dataset


class MaskedPhotos(torch.utils.data.Dataset):
    """A photo dataset's samples (``B``, ``B_path``) with a hole ``mask`` (1 x H x W, float
    {0, 1}): read from ``mask_dir`` by the photo's stem when given (it must have the
    photo's size after preprocessing), else made from the sample's seed
    (:func:`make_mask`; an evaluation sample's seed is its index, so each validation image
    keeps its mask)."""

    def __init__(self, photos: Any, hole_share: Sequence[float], kinds: Sequence[str],
                 mask_dir: str | None = None) -> None:
        self.photos = photos
        self.hole_share, self.kinds = tuple(hole_share), tuple(kinds)
        self.masks = masks_by_stem(Path(mask_dir).expanduser()) if mask_dir else None
        if self.masks is not None:
            missing = [str(p) for p in photos.paths if p.stem not in self.masks]
            if missing:
                raise DataError(f"task_options.val_masks {mask_dir}: no mask for {', '.join(missing[:5])}"
                                + (" ..." if len(missing) > 5 else "") + " (masks are matched by file stem)")

    def __len__(self) -> int:
        return len(self.photos)

    @property
    def skip_bad(self) -> bool:
        return self.photos.skip_bad

    @skip_bad.setter
    def skip_bad(self, value: bool) -> None:
        self.photos.skip_bad = value

    def __getitem__(self, key: Any) -> dict[str, Any]:
        from img2img.data.datasets import parse_key

        index, seed = parse_key(key, len(self))
        sample = self.photos[key]
        h, w = sample["B"].shape[-2:]
        if self.masks is not None:
            path = self.masks[Path(sample["B_path"]).stem]
            mask = read_mask(path)
            check_mask_size(mask, path, (h, w), sample["B_path"], getattr(self.photos, "preprocess", None))
        else:
            mask = make_mask(seed, h, w, self.hole_share, self.kinds)
        return {**sample, "mask": torch.from_numpy(mask)[None]}
