"""The bundled sample data: small data sets for the four jobs, made offline from the
colour photos that ship inside scikit-image.

    img2img data sample --out sample_data [--force]

Layout (all PNG, 8-bit RGB)::

    DIR/photos/train/*.png         96x96 crops           DIR/photos/val/*.png
    DIR/sr/train/*.png             96x96 HR crops        DIR/sr/val/*.png (96x96)
    DIR/paired/train/*.png         192x96 A|B: A = Canny edges (black on white), B = photo
    DIR/paired/val/*.png
    DIR/unpaired/trainA, valA      photo crops
    DIR/unpaired/trainB, valB      other crops, hue-rotated and posterised (another "style")
    DIR/multidomain/train/<d>      64x64 crops in four domains d (photo, hue, sepia, poster),
    DIR/multidomain/val/<d>        each from its own crops (:mod:`img2img.data.sample_styles`)
    DIR/LICENSES.md                where each photo comes from and its licence
    DIR/manifest.json              counts, sizes, and the source box of every crop
    DIR/.complete                  written last: a folder without it is rebuilt
    DIR/.img2img.json              written first: every file above (what a rebuild may remove)

Each photo is first shrunk (MATLAB-bicubic, :func:`~img2img.data.matlab_imresize.imresize`) so
that its short side is 256 px. Its rightmost 96 columns are kept for validation crops;
training crops come from the columns left of them, 8 px away, so train and val never
share a pixel. Crops are drawn by fixed-seed generators and flat (e.g. black sky) crops
are avoided, so the output is the same on every run. Building takes a few seconds.
The multi-domain set's validation crops are four 64 px squares stacked in the validation
strip, one per domain, so no two domains share a pixel there either.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from img2img.data.io import write_image
from img2img.data.matlab_imresize import imresize
from img2img.data.sample_styles import DOMAINS
from img2img.log import get_logger

log = get_logger(__name__)

CROP = 96
SHORT_SIDE = 256
GAP = 8
TRAIN_PER_PHOTO = 7
UNPAIRED_PER_PHOTO = 6
MIN_STD = 0.06
MULTI_CROP = 64
FORMAT_VERSION = 3  # 2: the single-photo set is photos/ (it was colorization/); 3: multidomain/

#: The colour photos of ``skimage.data`` that are part of the scikit-image distribution
#: (no download): name, what it shows, source, licence (from skimage's docstrings).
PHOTOS: tuple[dict[str, str], ...] = (
    {
        "name": "astronaut",
        "what": "Eileen Collins, NASA astronaut",
        "source": "NASA Great Images database, https://flic.kr/p/r9qvLn",
        "license": "Public domain (NASA): no known copyright restrictions",
    },
    {
        "name": "coffee",
        "what": "A cup of coffee, courtesy of Pikolo Espresso Bar",
        "source": "scikit-image sample data (photographer: Rachel Michetti)",
        "license": "CC0 (Rachel Michetti)",
    },
    {
        "name": "chelsea",
        "what": "Chelsea the cat",
        "source": "scikit-image sample data (photographer: Stefan van der Walt)",
        "license": "CC0 (Stefan van der Walt)",
    },
    {
        "name": "rocket",
        "what": "Launch of DSCOVR on a Falcon 9",
        "source": "SpaceX Photos, https://www.flickr.com/photos/spacexphotos/16511594820/",
        "license": "Public domain (released by SpaceX)",
    },
    {
        "name": "immunohistochemistry",
        "what": "Immunohistochemical staining of colonic glands (FHL2 protein, DAB, hematoxylin)",
        "source": "Center for Microscopy And Molecular Imaging (CMMI), via scikit-image",
        "license": "No known copyright restrictions",
    },
    {
        "name": "retina",
        "what": "Fundus photograph of a normal left eye",
        "source": "Mikael Häggström, https://commons.wikimedia.org/wiki/File:Fundus_photograph_of_normal_left_eye.jpg",
        "license": "CC0 1.0 Universal Public Domain Dedication",
    },
    {
        "name": "hubble_deep_field",
        "what": "Hubble eXtreme Deep Field",
        "source": "NASA / HubbleSite, http://hubblesite.org/newscenter/archive/releases/2012/37/image/a/",
        "license": "Public domain (NASA)",
    },
)

SUBSETS = ("photos", "sr", "paired", "unpaired", "multidomain")


# --------------------------------------------------------------------------- photos


def _load_photo(name: str) -> np.ndarray | None:
    import skimage.data

    try:
        image = getattr(skimage.data, name)()
    except Exception as err:  # a missing file or a download that cannot happen offline
        log.warning("sample data: skipping skimage.data.%s (%s)", name, err)
        return None
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] < 3:
        log.warning("sample data: skipping skimage.data.%s (not a colour image)", name)
        return None
    return image[..., :3]


def _shrink(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    short = min(height, width)
    if short <= SHORT_SIDE:
        return image.astype(np.float64) / 255.0
    scale = SHORT_SIDE / short
    small = imresize(image.astype(np.float64) / 255.0, scale)
    return np.clip(np.rint(small * 255.0), 0, 255) / 255.0


def _std(crop: np.ndarray) -> float:
    return float(crop.mean(axis=2).std())


def _train_boxes(
    photo: np.ndarray, count: int, seed: int, side: int = CROP
) -> list[tuple[int, int, int, int]]:
    """``count`` boxes (top, left, side, side) inside the training columns."""
    height, width = photo.shape[:2]
    right_edge = width - CROP - GAP  # training crops stay left of this column
    rng = np.random.default_rng(seed)
    boxes: list[tuple[int, int, int, int]] = []
    fallback: list[tuple[float, tuple[int, int, int, int]]] = []
    for _ in range(60 * count):
        if len(boxes) == count:
            break
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, right_edge - side + 1))
        box = (top, left, side, side)
        std = _std(photo[top : top + side, left : left + side])
        if std >= MIN_STD:
            boxes.append(box)
        else:
            fallback.append((std, box))
    fallback.sort(key=lambda item: -item[0])
    while len(boxes) < count and fallback:
        boxes.append(fallback.pop(0)[1])
    return boxes


def _val_boxes(photo: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Two non-overlapping boxes in the validation strip (the rightmost CROP columns):
    the pair with the most texture."""
    height, width = photo.shape[:2]
    left = width - CROP
    candidates = []
    for top in range(0, height - CROP + 1, CROP // 4):
        candidates.append((_std(photo[top : top + CROP, left:]), top))
    best: tuple[float, int, int] | None = None
    for i, (std_i, top_i) in enumerate(candidates):
        for std_j, top_j in candidates[i + 1 :]:
            if top_j - top_i >= CROP and (best is None or std_i + std_j > best[0]):
                best = (std_i + std_j, top_i, top_j)
    tops = [candidates[0][1]] if best is None else [best[1], best[2]]
    return [(top, left, CROP, CROP) for top in tops]


def _crop(photo: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, left, h, w = box
    return photo[top : top + h, left : left + w]


def _crop_as_is(crop: np.ndarray) -> np.ndarray:
    return crop


# --------------------------------------------------------------------------- renderings


def edges_image(rgb: np.ndarray) -> np.ndarray:
    """Canny edges of an RGB [0, 1] image drawn black on white, as RGB."""
    from skimage.color import rgb2gray
    from skimage.feature import canny

    edges = canny(rgb2gray(rgb), sigma=1.5)
    drawn = np.where(edges, 0.0, 1.0)
    return np.repeat(drawn[..., None], 3, axis=2)


def stylise(rgb: np.ndarray) -> np.ndarray:
    """The second unpaired domain: hue rotated by 180 degrees, more saturated, 4 levels
    per channel."""
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(rgb)
    hsv[..., 0] = (hsv[..., 0] + 0.5) % 1.0
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.5, 0.0, 1.0)
    return np.round(np.clip(hsv2rgb(hsv), 0.0, 1.0) * 3.0) / 3.0


# --------------------------------------------------------------------------- building


def _is_complete(out: Path) -> bool:
    """A finished build of this layout (an older layout is rebuilt)."""
    if not (out / ".complete").is_file():
        return False
    try:
        return json.loads((out / "manifest.json").read_text(encoding="utf-8")).get("format") == FORMAT_VERSION
    except (OSError, ValueError, AttributeError):
        return False


def _licenses(used: list[dict[str, str]]) -> str:
    lines = [
        "# Sample data: sources and licences",
        "",
        "Every image here is a crop of, or is computed from a crop of (Canny edges, a",
        "hue-rotated posterised rendering, a sepia one), one of these photos. They ship with",
        "scikit-image (`skimage.data`); the licences are those its documentation states.",
        "",
        "| photo | what it shows | source | licence |",
        "|---|---|---|---|",
    ]
    for photo in used:
        lines.append(
            f"| `skimage.data.{photo['name']}` | {photo['what']} | {photo['source']} | "
            f"{photo['license']} |"
        )
    lines.append("")
    return "\n".join(lines)


class _Crops:
    """The sample data's images by relative path, in the order they are made, with the
    photo and box each comes from and the count per folder."""

    def __init__(self) -> None:
        self.images: dict[str, np.ndarray] = {}  # written once all are made
        self.sources: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, int] = {}

    def add(self, rel: str, image: np.ndarray, photo: str, box: tuple[int, int, int, int]) -> None:
        self.images[rel] = image
        self.sources[rel] = {"photo": photo, "box": list(box)}
        folder = rel.rsplit("/", 1)[0]
        self.counts[folder] = self.counts.get(folder, 0) + 1


def _edges_and_photo(crop: np.ndarray) -> np.ndarray:
    return np.concatenate([edges_image(crop), crop], 1)


def _load_photos() -> list[tuple[dict[str, str], np.ndarray]]:
    """The bundled photos that load, shrunk; a DataError when fewer than 3 do."""
    photos: list[tuple[dict[str, str], np.ndarray]] = []
    for meta in PHOTOS:
        image = _load_photo(meta["name"])
        if image is not None:
            photos.append((meta, _shrink(image)))
    if len(photos) < 3:
        from img2img.errors import DataError

        raise DataError(
            "cannot build the sample data: fewer than 3 of scikit-image's bundled photos "
            "could be loaded (is scikit-image installed completely?)"
        )
    return photos


def _add_photo(crops: _Crops, number: int, name: str, photo: np.ndarray) -> None:
    """Every crop of one photo, for the four subsets."""
    val = _val_boxes(photo)
    # photos: plain crops (the colorization demo); sr: HR crops (96 = a multiple of 2, 3
    # and 4); paired: edges | photo
    for subset, seed, render in (
        ("photos", 1000, _crop_as_is),
        ("sr", 2000, _crop_as_is),
        ("paired", 3000, _edges_and_photo),
    ):
        for k, box in enumerate(_train_boxes(photo, TRAIN_PER_PHOTO, seed + number)):
            crops.add(f"{subset}/train/{name}_{k:02d}.png", render(_crop(photo, box)), name, box)
        for k, box in enumerate(val):
            crops.add(f"{subset}/val/{name}_{k:02d}.png", render(_crop(photo, box)), name, box)
    # unpaired: photos (A) and stylised other crops (B)
    boxes_a = _train_boxes(photo, UNPAIRED_PER_PHOTO, 4000 + number)
    boxes_b = _train_boxes(photo, UNPAIRED_PER_PHOTO, 5000 + number)
    for k, box in enumerate(boxes_a):
        crops.add(f"unpaired/trainA/{name}_{k:02d}.png", _crop(photo, box), name, box)
    for k, box in enumerate(boxes_b):
        crops.add(f"unpaired/trainB/{name}_{k:02d}.png", stylise(_crop(photo, box)), name, box)
    if val:
        crops.add(f"unpaired/valA/{name}_00.png", _crop(photo, val[0]), name, val[0])
        crops.add(f"unpaired/valB/{name}_00.png", stylise(_crop(photo, val[-1])), name, val[-1])


def _add_multidomain(crops: _Crops, number: int, name: str, photo: np.ndarray) -> None:
    """64 px crops of one photo in every domain of ``DOMAINS``: training crops drawn per
    domain (their own seed, none shown in two domains: they are not paired) and one
    validation crop per domain, a 64 px square of the validation strip (the strip's most
    textured rows, one per domain; a photo too short for them all repeats rows)."""
    height, width = photo.shape[:2]
    used: set[tuple[int, int, int, int]] = set()
    for d, (domain, render) in enumerate(DOMAINS.items()):
        drawn = _train_boxes(photo, 2 * UNPAIRED_PER_PHOTO, 6000 + 100 * d + number, MULTI_CROP)
        boxes = [box for box in drawn if box not in used][:UNPAIRED_PER_PHOTO]
        used.update(boxes)
        for k, box in enumerate(boxes):
            crops.add(f"multidomain/train/{domain}/{name}_{k:02d}.png", render(_crop(photo, box)), name, box)
    left = width - MULTI_CROP
    rows = [(top, left, MULTI_CROP, MULTI_CROP) for top in range(0, height - MULTI_CROP + 1, MULTI_CROP)]
    rows.sort(key=lambda box: -_std(_crop(photo, box)))
    rows = sorted(rows[: len(DOMAINS)])
    for d, (domain, render) in enumerate(DOMAINS.items()):
        box = rows[d % len(rows)]
        crops.add(f"multidomain/val/{domain}/{name}_00.png", render(_crop(photo, box)), name, box)


def _manifest(crops: _Crops, photos: list[tuple[dict[str, str], np.ndarray]]) -> dict[str, Any]:
    def size(folder: str) -> list[int]:
        if folder.startswith("multidomain/"):
            return [MULTI_CROP, MULTI_CROP]
        return [CROP * 2, CROP] if folder.startswith("paired/") else [CROP, CROP]

    sizes = {folder: size(folder) for folder in crops.counts}
    return {
        "format": FORMAT_VERSION,
        "photos": [meta["name"] for meta, _ in photos],
        "photo_size": {meta["name"]: list(photo.shape[:2]) for meta, photo in photos},
        "val_strip_columns": CROP,
        "gap": GAP,
        "folders": {f: {"count": crops.counts[f], "size_wh": sizes[f]} for f in sorted(crops.counts)},
        "crops": {k: crops.sources[k] for k in sorted(crops.sources)},
    }


def build_sample_data(out_dir: str | Path, force: bool = False) -> Path:
    """Build the sample data sets in ``out_dir`` (see the module docstring).

    A complete folder (with ``.complete``) is left as it is unless ``force``; an
    incomplete one is rebuilt. Only what an earlier build wrote is removed (its
    ``.img2img.json`` lists it, see :mod:`img2img.ownership`): other things in ``out``
    stay, and a file of the user's inside the data set's folders is refused. Returns
    the folder.
    """
    from img2img import ownership

    out = Path(out_dir).expanduser()
    if _is_complete(out) and not force:
        log.info("sample data already complete in %s (use --force to rebuild)", out)
        return out
    names = [*SUBSETS, *ownership.SAMPLE_DATA_FILES]
    ownership.clear_listed(out, "sample-data", names, "choose another folder, or remove it yourself")
    out.mkdir(parents=True, exist_ok=True)
    photos = _load_photos()
    crops = _Crops()
    for number, (meta, photo) in enumerate(photos):
        _add_photo(crops, number, meta["name"], photo)
        _add_multidomain(crops, number, meta["name"], photo)
    ownership.mark(out, "sample-data", [*crops.images, *ownership.SAMPLE_DATA_FILES])
    for rel, image in crops.images.items():
        write_image(out / rel, image)
    (out / "LICENSES.md").write_text(_licenses([meta for meta, _ in photos]), encoding="utf-8")
    manifest = _manifest(crops, photos)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    (out / ".complete").write_text("sample data complete\n", encoding="utf-8")
    return out


def cli_sample(args: Any) -> int:
    out = Path(args.out)
    if _is_complete(out) and not args.force:
        print(f"sample data already complete in {out} (nothing to do; --force rebuilds it)")
        return 0
    build_sample_data(out, force=args.force)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    print(f"sample data written to {out}:")
    for folder, info in manifest["folders"].items():
        w, h = info["size_wh"]
        print(f"  {folder:<22} {info['count']:4d} images, {w}x{h}")
    print(f"  sources and licences: {out / 'LICENSES.md'}")
    return 0
