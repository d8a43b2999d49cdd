"""Hostile-but-valid inputs and bad values (issue 12): every case is a real (tiny) file or
config on disk, and ends in one clear message naming the file or key, with no traceback."""

from __future__ import annotations

import fcntl
import io
import os
import struct
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import EpsImagePlugin, Image

from img2img import ownership
from img2img.config import MAX_CONFIG_BYTES, load_config
from img2img.data import archives
from img2img.data.archives import Archive
from img2img.data.catalog import DatasetSpec
from img2img.data.datasets import PairedDataset, PhotoDataset
from img2img.data.integrity import inspect_image
from img2img.data.io import read_image
from img2img.data.prepare import TMP_KIND, prepare
from img2img.data.transforms import check_geometry, planned_size, prepare_geometry
from img2img.errors import ConfigError, DataError
from img2img.nets.contract import forward_padded

REPO = Path(__file__).resolve().parents[1]
COLOR = str(REPO / "configs" / "colorization" / "photos_unet256.yaml")
FORMATS = "it reads PNG, JPEG, BMP, TIFF, WebP and PPM, whatever the file name says"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "img2img", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd or REPO, env=env)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, no traceback, and each needle in the output."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    for needle in needles:
        assert needle in out, out


def message(path: Path, **kw) -> str:
    with pytest.raises(DataError) as err:
        read_image(path, **kw)
    return str(err.value)


def good_png(path: Path, h: int = 40, w: int = 48) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


# --------------------------------------------------------------------------- formats

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n"
       b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n")


def test_eps_named_png_never_reaches_the_eps_plugin(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: calls.append(self))
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append(a))
    path = tmp_path / "photo.png"
    path.write_bytes(EPS)
    expected = f"{path}: EPS format, which img2img does not open ({FORMATS}); convert it to PNG"
    assert message(path) == expected
    assert inspect_image(path) == (None, expected[len(f"{path}: "):])
    (tmp_path / "doc.jpg").write_bytes(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n")
    assert message(tmp_path / "doc.jpg").startswith(f"{tmp_path / 'doc.jpg'}: PDF format, which")
    (tmp_path / "anim.png").write_bytes(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")
    assert message(tmp_path / "anim.png").startswith(f"{tmp_path / 'anim.png'}: GIF format, which")
    assert calls == []  # the EPS plugin was never asked to open the file


def test_eps_named_png_through_data_check(tmp_path):
    good_png(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(EPS)
    proc = cli("data", "check", COLOR, f"data.root={tmp_path}")
    assert_user_error(proc, f"BAD {tmp_path / 'b.png'}: EPS format, which img2img does not open",
                      "1 problem(s) in the data")


def test_a_supported_format_under_another_name_still_reads(tmp_path):
    (tmp_path / "really_png.jpg").write_bytes(good_png(tmp_path / "same.png").read_bytes())
    np.testing.assert_array_equal(read_image(tmp_path / "really_png.jpg"),
                                  read_image(tmp_path / "same.png"))


# --------------------------------------------------------------------------- byte budget


def tiff_header(path: Path, width: int, height: int, samples: int) -> Path:
    """A little-endian TIFF header (8-bit, min-is-black, ``samples`` per pixel) with a
    16-byte body: it declares far more data than it holds."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, 8), (277, 3, samples), (278, 4, height), (279, 4, 16), (284, 3, 1)]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    path.write_bytes(b"II*\x00" + struct.pack("<I", 24) + bytes(16) + ifd + bytes(4))
    return path


def test_many_samples_tiff_refused_from_the_header(tmp_path):
    # 4000 x 4000 is 16 M pixels (within the pixel limit), but 4096 samples of each would
    # take 65.5 GB: refused before anything is decoded (the test would not finish otherwise).
    path = tiff_header(tmp_path / "wide.tif", 4000, 4000, 4096)
    assert message(path) == (
        f"{path}: decoding 4000x4000 pixels x 4,096 samples x 1 byte(s) would take "
        "65,536,000,000 bytes, above the limit of 5,726,623,040 bytes (32 per pixel of "
        "data.max_pixels); raise data.max_pixels if the file is trusted")
    small = tiff_header(tmp_path / "small.tif", 16, 16, 4096)
    assert message(small) == (
        f"{small}: unsupported TIFF layout (4,096 samples per pixel, axes YXS); img2img reads "
        "1 to 4 (grey, grey + alpha, RGB, RGBA): convert the file")
    proc = cli("data", "check", COLOR, f"data.root={tmp_path}")
    assert_user_error(proc, f"BAD {path}: decoding 4000x4000 pixels x 4,096 samples",
                      f"BAD {small}: unsupported TIFF layout", "2 problem(s) in the data")
    assert "More samples per pixel" not in proc.stderr  # Pillow never parsed them


def test_thin_image_reads_but_is_never_blown_up(tmp_path):
    thin = tmp_path / "thin.png"
    Image.fromarray(np.full((1, 100_000, 3), 90, np.uint8)).save(thin)
    assert read_image(thin).shape == (1, 100_000, 3)  # 100,000 pixels: reading is cheap
    # "crop" enlarges it to fit the 256 x 256 crop: 256 x 25,600,000 would be 19.7 GB.
    ds = PhotoDataset([thin], preprocess="crop", crop_size=256, flip=False)
    with pytest.raises(DataError) as err:
        ds[0]
    assert str(err.value) == (
        f"{thin}: data.preprocess=crop would resize this 100000x1 image to 25600000x256 "
        "(6,553,600,000 pixels), above the limit of 178,956,970 (data.max_pixels): its shape "
        "is too extreme; crop or remove the image (or use data.preprocess=resize_and_crop)")
    assert PhotoDataset([thin], flip=False)[0]["B"].shape == (3, 256, 256)  # resize_and_crop
    # scale_width makes a tall strip 256 wide: the same refusal, at val time too.
    tall = np.zeros((100_000, 1, 3), np.uint8)
    with pytest.raises(DataError, match="tall.png: data.preprocess=scale_width would resize this 1x100000"):
        prepare_geometry(tall, "scale_width", 286, 256, train=False, source="tall.png")
    proc = cli("data", "check", COLOR, f"data.root={tmp_path}", "data.preprocess=crop")
    assert_user_error(proc, f"BAD {thin}: data.preprocess=crop would resize this 100000x1 image")


def test_geometry_plan_matches_what_is_made():
    rng = np.random.default_rng(1)
    for preprocess in ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"):
        for h, w in ((40, 64), (7, 130), (130, 7), (300, 90), (33, 33)):
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            for train in (True, False):
                made = prepare_geometry(image, preprocess, 70, 64, train)
                assert made.shape[:2] == planned_size(h, w, preprocess, 70, 64, train)
                assert check_geometry(h, w, preprocess, 70, 64, train) is None
                # A pixel limit below the configured size limits only the extreme shapes.
                assert check_geometry(h, w, preprocess, 70, 64, train, max_pixels=100) is None


def test_aligned_pair_of_a_thin_strip_is_refused_before_resizing(tmp_path):
    strip = tmp_path / "ab.png"
    Image.fromarray(np.zeros((1, 4000, 3), np.uint8)).save(strip)
    ds = PairedDataset([strip], preprocess="crop", crop_size=256, max_pixels=1_000_000)
    with pytest.raises(DataError) as err:
        ds[0]
    assert str(err.value) == (
        f"{strip}: data.preprocess=crop would resize this 2000x1 image to 512000x256 "
        "(131,072,000 pixels), above the limit of 5,234,944 (64 x the configured size): its "
        "shape is too extreme; crop or remove the image (or use data.preprocess=resize_and_crop)")


def test_padding_a_thin_input_is_refused_not_allocated():
    net = torch.nn.Identity()
    net.size_multiple, net.min_size = 256, 256
    with pytest.raises(DataError) as err:
        forward_padded(net, torch.zeros(1, 3, 1, 100_000))
    assert str(err.value) == (
        "an input of 100000x1 pixels would be padded to 100096x256 (25,624,576 pixels, 256 "
        "times as many) for this network (sides a multiple of 256, at least 256); run it in "
        "tiles (img2img predict --tile 512, or tile=512 in Python) or crop it to a less "
        "extreme shape")
    # Ordinary inputs, small ones included, pad as before.
    assert forward_padded(net, torch.zeros(1, 3, 30, 40)).shape == (1, 3, 30, 40)
    assert forward_padded(net, torch.zeros(1, 3, 1, 2000)).shape == (1, 3, 1, 2000)


# --------------------------------------------------------------------------- Pillow's limit


def test_custom_pixel_limit_leaves_pillow_alone(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    path = good_png(tmp_path / "a.png")
    read_image(path, max_pixels=10**12)
    inspect_image(path, max_pixels=10**12)
    assert Image.MAX_IMAGE_PIXELS == before


FORMAT_FILES = {"a.png": {}, "a.jpg": {"quality": 90}, "a.bmp": {}, "a.ppm": {},
                "a.webp": {"lossless": True}, "a.tif": {}, "g.tif": {}, "rgba.tif": {}}


@pytest.mark.parametrize("pil_limit", [100, 1000])  # below 2 x the image, and in between
def test_images_above_pillows_own_limit_read_the_same(tmp_path, monkeypatch, pil_limit):
    """A 30 x 40 (1200 pixel) image, with Pillow's process-wide limit below it: the reader
    gives the same arrays, lets no Pillow warning or error out, and changes nothing."""
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    for name, options in FORMAT_FILES.items():
        data = rgba if name.startswith("rgba") else rgb[..., 0] if name.startswith("g") else rgb
        Image.fromarray(data).save(tmp_path / name, **options)
    expected = {name: read_image(tmp_path / name) for name in FORMAT_FILES}
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pil_limit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in FORMAT_FILES:
            if name.endswith(".webp") and 1200 > 2 * pil_limit:
                assert "above Pillow's own decompression-bomb limit" in message(tmp_path / name)
                continue
            np.testing.assert_array_equal(read_image(tmp_path / name), expected[name])
    assert Image.MAX_IMAGE_PIXELS == pil_limit


# --------------------------------------------------------------------------- bad values


def test_nan_and_inf_float_tiffs_are_refused(tmp_path):
    values = np.random.default_rng(3).random((5, 7, 3)).astype(np.float32)
    values[2, 3, 1] = np.nan
    values[0, 0, 0] = np.inf
    tifffile.imwrite(tmp_path / "nan.tif", values, photometric="rgb")
    grey = np.zeros((4, 6), np.float32)
    grey[1, 1] = -np.inf
    tifffile.imwrite(tmp_path / "inf.tif", grey)
    for name, count in (("nan.tif", 2), ("inf.tif", 1)):
        path = tmp_path / name
        assert message(path) == (f"{path}: {count} pixel value(s) are NaN or infinite; img2img "
                                 "needs finite values: fix the file or remove it")
    good_png(tmp_path / "good.png")
    proc = cli("data", "check", COLOR, f"data.root={tmp_path}")
    assert_user_error(proc, f"BAD {tmp_path / 'nan.tif'}: 2 pixel value(s) are NaN",
                      f"BAD {tmp_path / 'inf.tif'}: 1 pixel value(s)", "2 problem(s) in the data")
    # Training stops before any work: building the data set lists them (data.on_error=raise).
    from tests.tiny import build_dataset

    config = load_config(COLOR, [f"data.root={tmp_path}"])
    with pytest.raises(DataError) as err:
        build_dataset(config, "train")
    assert str(err.value).startswith(f"2 bad file(s) in {tmp_path}:")
    assert f"{tmp_path / 'nan.tif'}: 2 pixel value(s) are NaN or infinite" in str(err.value)


# --------------------------------------------------------------------------- YAML and values


LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
train:
  milestones: *f
"""


def test_billion_laughs_is_one_short_error(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (f"invalid YAML in {path}, line 2 column 8: YAML aliases (*name) "
                              "are not allowed in img2img configs; write the value out in full")
    proc = cli("summary", str(path))
    assert_user_error(proc, "YAML aliases (*name) are not allowed")
    assert len(proc.stderr) < 300


def test_recipes_use_no_aliases():
    for recipe in sorted((REPO / "configs").rglob("*.yaml")):
        load_config(recipe)


@pytest.mark.parametrize("text, expected", [
    ("seed: " + "[" * 100 + "]" * 100 + "\n", ", line 1 column 38: nested more than 32 levels deep"),
    ("seed: " + "9" * 5000 + "\n", ": an integer with more than 4300 digits"),
])
def test_yaml_that_would_crash_the_parser(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"invalid YAML in {path}{expected}"


def test_a_huge_file_is_not_read_as_a_config(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (f"{path}: 1,048,579 bytes is not a config (an img2img config is a "
                              "small YAML file, at most 1,048,576 bytes); check the path")


def test_values_echoed_in_messages_are_cut(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text("model:\n  generator:\n    ngf: " + "x" * 100_000 + "\ntrain:\n  betas: ["
                    + ", ".join(["0.5"] * 10_000) + "]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert text.startswith("model.generator.ngf: expected an integer, got 'xxxx") and len(text) < 160
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.betas=[" + ", ".join(["0.5"] * 10_000) + "]"])
    assert str(err.value) == ("train.betas: expected two numbers in [0, 1), got [0.5, 0.5, 0.5, "
                              "0.5, 0.5, 0.5, 0.5, 0.5, ...]")
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train." + "k" * 10_000 + "=1"])
    assert str(err.value).startswith("unknown config key 'train.kkk") and len(str(err.value)) < 160


@pytest.mark.parametrize("override, expected", [
    ("model.generator.ngf=1000000000",
     "model.generator.ngf: invalid value 1000000000; must be <= 512 (allowed: 1 to 512)"),
    ("model.discriminator.ndf=100000",
     "model.discriminator.ndf: invalid value 100000; must be <= 512 (allowed: 1 to 512)"),
    ("model.generator.n_blocks=1000000",
     "model.generator.n_blocks: invalid value 1000000; must be <= 256 (allowed: 0 to 256)"),
    ("model.generator.num_downs=100",
     "model.generator.num_downs: invalid value 100; must be <= 12 (allowed: 1 to 12)"),
    ("model.discriminator.n_layers=1000",
     "model.discriminator.n_layers: invalid value 1000; must be <= 16 (allowed: 0 to 16)"),
    ("model.discriminator.num_scales=1000",
     "model.discriminator.num_scales: invalid value 1000; must be <= 8 (allowed: 1 to 8)"),
    ("model.in_channels=100000",
     "model.in_channels: invalid value 100000; must be <= 64 (allowed: 1 to 64)"),
    ("seed=18446744073709551616",
     "seed: invalid value 18446744073709551616; must be <= 18446744073709551615 (allowed: 0 to "
     "18446744073709551615, 2**64 - 1, the largest seed torch takes)"),
    ("seed=-1", "seed: invalid value -1; must be >= 0 (allowed: 0 to 18446744073709551615, "
                "2**64 - 1, the largest seed torch takes)"),
    ("train.batch_size=1000000",
     "train.batch_size: invalid value 1000000; must be <= 4096 (allowed: 1 to 4096)"),
    ("data.crop_size=1000000",
     "data.crop_size: invalid value 1000000; must be <= 8192 (allowed: 1 to 8192)"),
    ("loss.pool_size=1000000000",
     "loss.pool_size: invalid value 1000000000; must be <= 1000 (allowed: 0 to 1000)"),
    ("data.num_workers=100000",
     "data.num_workers: invalid value 100000; must be <= 128 (allowed: 0 to 128)"),
    ("data.load_size=16000",
     "data.load_size: invalid value 16000; must be <= 8192 (allowed: 1 to 8192)"),
])
def test_absurd_values_name_the_key_and_range(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value) == expected


def test_absurd_values_through_the_cli(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 99999999999999999999999\nmodel:\n  generator:\n    ngf: 1000000000\n")
    assert_user_error(cli("summary", str(path)), "seed: invalid value 99999999999999999999999;")
    assert_user_error(cli("summary", COLOR, "model.generator.ngf=1000000000"),
                      "model.generator.ngf: invalid value 1000000000; must be <= 512")


# --------------------------------------------------------------------------- archives


def make_zip(path: Path, files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def patch_zip(path: Path, *, flags: int | None = None, method: int | None = None,
              size: int | None = None) -> Path:
    """Set a field of every member, in the local headers and the central directory."""
    data = bytearray(path.read_bytes())
    for signature, flag_at, method_at, size_at in ((b"PK\x03\x04", 6, 8, 22), (b"PK\x01\x02", 8, 10, 24)):
        start = 0
        while (pos := data.find(signature, start)) >= 0:
            if flags is not None:
                data[pos + flag_at : pos + flag_at + 2] = struct.pack("<H", flags)
            if method is not None:
                data[pos + method_at : pos + method_at + 2] = struct.pack("<H", method)
            if size is not None:
                data[pos + size_at : pos + size_at + 4] = struct.pack("<I", size)
            start = pos + 4
    path.write_bytes(bytes(data))
    return path


def spec(name: str = "facades") -> DatasetSpec:
    return DatasetSpec(name=name, kind="test", description="test",
                       archives=(Archive("http://127.0.0.1:9/x", f"{name}.zip"),),
                       members=((0, f"{name}/", ""),))


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def prepare_error(archive: Path, out: Path, name: str = "facades") -> str:
    with pytest.raises(DataError) as err:
        prepare(spec(name), out, archive, verify=False, progress=False)
    return str(err.value)


def test_zip_bomb_ratio_and_total_are_limited(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "RATIO_FLOOR", 10_000)
    bomb = make_zip(tmp_path / "bomb.zip", {"facades/train/1.png": png_bytes(),
                                            "facades/train/zeros.png": bytes(200_000)})
    out = tmp_path / "new" / "out"
    text = prepare_error(bomb, out)
    assert text.startswith(f"{bomb}: member 'facades/train/zeros.png' expands ")
    assert text.endswith("above the limit of 100 times; no data set img2img knows comes near that, "
                         "so the file is not the expected archive: check it (and its checksum), "
                         "or extract it yourself if you trust it")
    assert not (tmp_path / "new").exists()  # the folders it made are gone again
    monkeypatch.setattr(archives, "MAX_EXTRACT_BYTES", 1000)
    plain = make_zip(tmp_path / "plain.zip", {"facades/train/1.png": bytes(600),
                                              "facades/train/2.png": bytes(600)}, zipfile.ZIP_STORED)
    assert prepare_error(plain, out).startswith(
        f"{plain}: expands to more than 1,000 bytes (the limit for one archive); no data set")
    monkeypatch.setattr(archives, "MAX_MEMBERS", 3)
    many = make_zip(tmp_path / "many.zip", {f"facades/train/{i}.png": b"x" for i in range(5)})
    assert prepare_error(many, out).startswith(f"{many}: more than 3 members (the limit); no data")


def test_zip_claiming_a_huge_member_through_the_cli(tmp_path):
    archive = patch_zip(make_zip(tmp_path / "facades.zip", {"facades/train/1.png": png_bytes()}),
                        size=0xFFFFFFF0)
    proc = cli("data", "prepare", "facades", "--out", str(tmp_path / "out"), "--archive",
               str(archive), "--no-verify")
    assert_user_error(proc, f"{archive}: member 'facades/train/1.png' expands ",
                      "above the limit of 100 times")
    assert not (tmp_path / "out").exists()


def sparse_tar(path: Path, real_size: int) -> Path:
    """A GNU sparse member of ``real_size`` bytes that stores 512 (tarfile cannot write
    one: the header is patched by hand)."""
    info = tarfile.TarInfo("facades/train/1.png")
    info.size = 512
    info.type = tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    header[386:398] = b"%011o\0" % 0
    header[398:410] = b"%011o\0" % 512
    header[483:495] = b"\x80" + real_size.to_bytes(11, "big")  # GNU base-256 number
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    path.write_bytes(bytes(header[:512]) + bytes(512) + bytes(1024))
    with tarfile.open(path) as tf:
        member = tf.getmembers()[0]
        assert member.issparse() and member.size == real_size
    return path


def test_sparse_and_oversized_tar_members_count_their_real_size(tmp_path):
    sparse = sparse_tar(tmp_path / "sparse.tar", 10**9)
    assert prepare_error(sparse, tmp_path / "out") .startswith(
        f"{sparse}: expands to 1,000,000,000 bytes or more from 2,048, above the limit of 100 "
        "times its size; no data set")
    huge = sparse_tar(tmp_path / "huge.tar", 10**11)  # 100 GB: above the total limit
    proc = cli("data", "prepare", "facades", "--out", str(tmp_path / "out"), "--archive",
               str(huge), "--no-verify")
    assert_user_error(proc, f"{huge}: expands to more than 68,719,476,736 bytes (the limit for one "
                      "archive)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("patch, expected", [
    ({"flags": 1}, "is encrypted (password-protected), which img2img does not extract; "
                   "extract the archive yourself"),
    ({"method": 9}, "is compressed with method 9 (deflate64), which Python's zipfile cannot "
                    "extract; extract the archive yourself"),
    ({"method": 99}, "is compressed with method 99 (unknown), which Python's zipfile cannot "
                     "extract; extract the archive yourself"),
])
def test_encrypted_or_unsupported_zip_member(tmp_path, patch, expected):
    archive = patch_zip(make_zip(tmp_path / "facades.zip", {"facades/train/1.png": png_bytes()}),
                        **patch)
    full = f"{archive}: member 'facades/train/1.png' {expected}"
    assert prepare_error(archive, tmp_path / "out") == full
    proc = cli("data", "prepare", "facades", "--out", str(tmp_path / "out"), "--archive",
               str(archive), "--no-verify")
    assert_user_error(proc, full)


def test_a_second_run_at_once_is_refused_and_deletes_nothing(tmp_path):
    archive = make_zip(tmp_path / "facades.zip", {"facades/train/1.png": png_bytes()})
    out = tmp_path / "out"
    out.mkdir()
    running = out / f".tmp-facades-{os.getpid() + 100000}"  # the other run's folder
    running.mkdir()
    ownership.mark(running, TMP_KIND, [], ["*"])
    lock = out / ".prepare-facades.lock"
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        assert prepare_error(archive, out) == (
            f"another 'img2img data prepare facades' is running in {out} (process 4242); wait "
            "for it to finish, or use another --out")
        assert running.is_dir()
    lock.unlink()
    # Once it is gone: a folder img2img marked whose process is gone is removed, a folder
    # of a live process or without the marker is left alone.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / f".tmp-facades-{dead.pid}"
    alive = out / f".tmp-facades-{os.getppid()}"
    foreign = out / ".tmp-facades-123456789"
    for folder in (stale, alive, foreign):
        folder.mkdir(exist_ok=True)
        (folder / "keep.txt").write_text("x")
    for folder in (stale, alive):
        ownership.mark(folder, TMP_KIND, [], ["*"])
    target = prepare(spec(), out, archive, verify=False, progress=False)
    assert sorted(p.name for p in target.iterdir()) == [".complete", "train"]
    assert not stale.exists() and alive.is_dir() and foreign.is_dir()
    assert not lock.exists()


@pytest.mark.parametrize("task", ["cyclegan", "pix2pix"])
def test_the_largest_seed_trains(task, task_data, tmp_path):
    """Every seed the config accepts (up to 2**64 - 1) trains: the seeds derived from it
    (per process, per epoch, per image pool) wrap instead of overflowing torch's."""
    from img2img.engine import Trainer
    from tests.tiny import tiny_overrides

    seed = 2**64 - 1
    config = load_config(None, [*tiny_overrides(task, task_data[task], tmp_path / "run"), f"seed={seed}",
                                "train.max_steps=1", "eval.every=0"])
    assert config.seed == seed
    summary = Trainer(config).fit()
    assert summary["step"] == 1 and (tmp_path / "run" / "model" / "model.safetensors").is_file()
