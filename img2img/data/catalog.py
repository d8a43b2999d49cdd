"""The standard data sets ``img2img data prepare`` knows: where each archive is, what it
must hash to (and where that checksum was recorded), which archive folders go where, and
how to use the result.
"""

from __future__ import annotations

import dataclasses

from img2img.data.archives import Archive
from img2img.errors import DataError


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A data set: its archives, which archive folders go where, and what comes after.

    ``members`` maps (archive index, folder inside the archive, folder in the output);
    every mapping must match at least one file. ``lr_scales`` makes ``LRbicx{s}/`` from
    ``HR/`` after extraction.
    """

    name: str
    kind: str
    description: str
    archives: tuple[Archive, ...]
    members: tuple[tuple[int, str, str], ...]
    lr_scales: tuple[int, ...] = ()
    usage: str = ""


_PIX2PIX = "https://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
_CYCLEGAN = "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
_DIV2K = "https://data.vision.ee.ethz.ch/cvl/DIV2K"
_EDSR_BENCHMARK = Archive(
    url="https://cv.snu.ac.kr/research/EDSR/benchmark.tar",
    filename="benchmark.tar",
    md5="4ace41d33c2384b97e6b320cd0afd6ba",
    checksum_source="md5 used by the torchSR loaders (Coloquinte/torchSR) for EDSR's archive",
)
_PIX2PIX_SOURCE = (
    "md5 recorded by a third-party pix2pix loader; the authors publish no checksums"
)
_CYCLEGAN_SOURCE = (
    "sha256 and size from TensorFlow Datasets' url_checksums/cycle_gan.txt (recorded for "
    "the same file at people.eecs.berkeley.edu/~taesung_park/CycleGAN/datasets/)"
)
_DIV2K_SOURCE = "sha256 and size from TensorFlow Datasets' url_checksums/div2k.txt"


def _pix2pix(name: str, md5: str, description: str, usage: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        kind="paired (A|B aligned)",
        description=description,
        archives=(Archive(f"{_PIX2PIX}/{name}.tar.gz", f"{name}.tar.gz", md5=md5,
                          checksum_source=_PIX2PIX_SOURCE),),
        members=((0, f"{name}/", ""),),
        usage=usage,
    )


def _cyclegan(name: str, sha256: str, size: int, description: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        kind="unpaired",
        description=description,
        archives=(Archive(f"{_CYCLEGAN}/{name}.zip", f"{name}.zip", sha256=sha256, size=size,
                          checksum_source=_CYCLEGAN_SOURCE),),
        members=((0, f"{name}/", ""),),
        usage=f"task=cyclegan data.root=DIR/{name}  (val falls back to testA/testB)",
    )


def _benchmark(name: str, folder: str, description: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        kind="SR benchmark (HR + LRbicx2/3/4)",
        description=description,
        archives=(_EDSR_BENCHMARK,),
        members=((0, f"benchmark/{folder}/HR/", "HR/"),),
        lr_scales=(2, 3, 4),
        usage=f"img2img eval MODEL --data DIR/{name}/HR --lr-dir DIR/{name}/LRbicx4",
    )


#: Every data set ``img2img data prepare`` knows, by name.
REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _pix2pix("facades", "e2e25dd517e9d15828416ab329da2854",
                 "CMP Facades: photo | label map, 400 train, 100 val, 106 test",
                 "task=pix2pix data.root=DIR/facades data.direction=BtoA"),
        _pix2pix("maps", "e5f65d26eb288457f5ac056deb94d154",
                 "aerial photo | Google map, 1096 train, 1098 val",
                 "task=pix2pix data.root=DIR/maps"),
        _pix2pix("edges2shoes", "71da478b54fedde126e234a2a050bc15",
                 "edges | shoe photo, 49825 train, 200 val",
                 "task=pix2pix data.root=DIR/edges2shoes data.preprocess=none"),
        _pix2pix("cityscapes", "32569df708076e427e9cd02abbca7748",
                 "photo | semantic labels, 2975 train, 500 val",
                 "task=pix2pix data.root=DIR/cityscapes data.direction=BtoA"),
        _cyclegan("horse2zebra", "a74d9d392eecca9966b51287a76ca126af473d9de4f3e8fc0e9cda08fa1730a1",
                  116867962, "horses | zebras (ImageNet), 1067 + 1334 train"),
        _cyclegan("summer2winter_yosemite",
                  "167fe1726807a9d22bd106b4a6c0bd7953b688af924ac1bf967439c4961e49f9",
                  132640856, "Yosemite in summer | winter (Flickr), 1231 + 962 train"),
        _cyclegan("monet2photo", "88f91b00fc228f97c9411fbf1880ec1d119c98f1722e4cfcfaa2fb35fac05b04",
                  305231073, "Monet paintings | photos, 1072 + 6287 train"),
        DatasetSpec(
            name="DIV2K",
            kind="SR training (HR)",
            description="DIV2K 2K-resolution HR images: 800 train, 100 valid",
            archives=(
                Archive(f"{_DIV2K}/DIV2K_train_HR.zip", "DIV2K_train_HR.zip",
                        sha256="9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",
                        size=3530603713, checksum_source=_DIV2K_SOURCE),
                Archive(f"{_DIV2K}/DIV2K_valid_HR.zip", "DIV2K_valid_HR.zip",
                        sha256="20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",
                        size=448993893, checksum_source=_DIV2K_SOURCE),
            ),
            members=((0, "DIV2K_train_HR/", "train/"), (1, "DIV2K_valid_HR/", "val/")),
            usage="task=srgan data.root=DIR/DIV2K  (LR made on the fly)",
        ),
        _benchmark("Set5", "Set5", "Set5 (Bevilacqua et al. 2012), 5 images"),
        _benchmark("Set14", "Set14", "Set14 (Zeyde et al. 2010), 14 images"),
        _benchmark("BSD100", "B100", "BSD100 (Martin et al. 2001), 100 images"),
        _benchmark("Urban100", "Urban100", "Urban100 (Huang et al. 2015), 100 images"),
    )
}


def find_spec(name: str) -> DatasetSpec:
    """The data set named ``name`` (any case); a DataError listing the known ones."""
    for key, spec in REGISTRY.items():
        if key.lower() == name.lower():
            return spec
    known = ", ".join(REGISTRY)
    raise DataError(f"unknown data set {name!r}; known: {known} (img2img data prepare --list)")


def list_datasets() -> str:
    """The table ``img2img data prepare list`` prints: name, kind, checksum, description."""
    rows = []
    for spec in REGISTRY.values():
        checks = sorted({("sha256" if a.sha256 else "md5" if a.md5 else "none") for a in spec.archives})
        rows.append((spec.name, spec.kind, "/".join(checks), spec.description))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{'name':<{widths[0]}}  {'kind':<{widths[1]}}  {'check':<{widths[2]}}  description"]
    for r in rows:
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    return "\n".join(lines)
