"""The image reader, writer, folder scan and file check, on files the tests make."""

from __future__ import annotations

import logging
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from img2img.data import check_files, read_image, scan_images, write_image
from img2img.data.decode import apply_orientation
from img2img.data.integrity import inspect_image
from img2img.errors import DataError


def ramp(h: int = 16, w: int = 24) -> np.ndarray:
    """A uint8 RGB image whose channels differ, so channel order errors show."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 10 % 256, y * 15 % 256, (x + y) * 7 % 256], -1).astype(np.uint8)


def png_bytes(array: np.ndarray, color_type: int, bit_depth: int = 16, width: int | None = None,
              height: int | None = None) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour PNG)."""
    h, w = array.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\x00" + array[y].astype(dtype).tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width or w, height or h, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


# --------------------------------------------------------------------------- reading


def test_8bit_png_exact(tmp_path):
    img = ramp()
    Image.fromarray(img).save(tmp_path / "a.png")
    out, info = read_image(tmp_path / "a.png", return_info=True)
    assert out.dtype == np.float32 and out.shape == (16, 24, 3)
    np.testing.assert_array_equal(np.rint(out * 255).astype(np.uint8), img)
    assert (info.bit_depth, info.channels, info.mode, info.size) == (8, 3, "RGB", (24, 16))


@pytest.mark.parametrize("suffix, options", [(".bmp", {}), (".ppm", {}), (".webp", {"lossless": True}),
                                             (".tif", {"compression": "tiff_lzw"})])
def test_other_lossless_formats_exact(tmp_path, suffix, options):
    img = ramp()
    Image.fromarray(img).save(tmp_path / f"a{suffix}", **options)
    out, info = read_image(tmp_path / f"a{suffix}", return_info=True)
    np.testing.assert_array_equal(np.rint(out * 255).astype(np.uint8), img)
    assert info.bit_depth == 8 and info.size == (24, 16)


def test_16bit_colour_png_keeps_16_bits(tmp_path):
    rng = np.random.default_rng(0)
    img16 = rng.integers(0, 65536, (10, 12, 3), dtype=np.uint16)
    (tmp_path / "c16.png").write_bytes(png_bytes(img16, color_type=2))
    out, info = read_image(tmp_path / "c16.png", return_info=True)
    np.testing.assert_allclose(out, img16 / 65535.0, atol=1e-6)
    assert info.bit_depth == 16 and info.channels == 3
    # values that differ only below 8 bits stay different
    assert len(np.unique(np.rint(out * 65535))) > 256


def test_16bit_grey_png(tmp_path):
    grey = (np.arange(12 * 9).reshape(9, 12) * 601).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    out, info = read_image(tmp_path / "g16.png", return_info=True)
    np.testing.assert_allclose(out[..., 0], grey / 65535.0, atol=1e-6)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert info.bit_depth == 16 and info.channels == 1


def test_16bit_grey_alpha_png_composited(tmp_path):
    grey = np.full((4, 5), 20000, np.uint16)
    alpha = np.full((4, 5), 32768, np.uint16)
    (tmp_path / "ga16.png").write_bytes(png_bytes(np.stack([grey, alpha], -1), color_type=4))
    out, info = read_image(tmp_path / "ga16.png", return_info=True)
    a = 32768 / 65535
    np.testing.assert_allclose(out, grey[0, 0] / 65535 * a + (1 - a), atol=1e-6)
    assert info.has_alpha and info.channels == 2 and info.bit_depth == 16


def test_tiff_8_and_16_bit(tmp_path):
    img8 = ramp()
    tifffile.imwrite(tmp_path / "c8.tif", img8, photometric="rgb")
    np.testing.assert_allclose(read_image(tmp_path / "c8.tif"), img8 / 255.0, atol=1e-6)

    img16 = (ramp().astype(np.uint16) * 257 + 3).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c16.tiff", img16, photometric="rgb")
    out, info = read_image(tmp_path / "c16.tiff", return_info=True)
    np.testing.assert_allclose(out, img16 / 65535.0, atol=1e-6)
    assert info.bit_depth == 16

    grey16 = np.arange(40, dtype=np.uint16).reshape(5, 8) * 1600
    tifffile.imwrite(tmp_path / "g16.TIF", grey16, photometric="minisblack")
    out = read_image(tmp_path / "g16.TIF")
    np.testing.assert_allclose(out[..., 1], grey16 / 65535.0, atol=1e-6)


def test_grey_and_grey_alpha(tmp_path):
    grey = ramp()[..., 0]
    Image.fromarray(grey, "L").save(tmp_path / "l.png")
    out, info = read_image(tmp_path / "l.png", return_info=True)
    assert out.shape == (16, 24, 3) and info.channels == 1
    np.testing.assert_allclose(out[..., 2], grey / 255.0, atol=1e-6)

    la = np.stack([grey, np.full_like(grey, 51)], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    out, info = read_image(tmp_path / "la.png", return_info=True)
    a = 51 / 255
    np.testing.assert_allclose(out[..., 0], grey / 255.0 * a + (1 - a), atol=1e-6)
    assert info.channels == 2 and info.has_alpha


def test_rgba_white_and_drop(tmp_path):
    rgb = ramp()
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[:, 12:] = 255
    alpha[0, 0] = 128
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "a.png")
    white = read_image(tmp_path / "a.png")
    np.testing.assert_allclose(white[:, 12:], rgb[:, 12:] / 255.0, atol=1e-6)
    np.testing.assert_allclose(white[1:, :12], 1.0, atol=1e-6)  # transparent -> white
    a = 128 / 255
    np.testing.assert_allclose(white[0, 0], rgb[0, 0] / 255 * a + (1 - a), atol=1e-6)
    dropped, info = read_image(tmp_path / "a.png", alpha="drop", return_info=True)
    np.testing.assert_allclose(dropped, rgb / 255.0, atol=1e-6)
    assert info.channels == 4 and info.has_alpha


def test_palette_and_palette_with_transparency(tmp_path):
    index = np.zeros((6, 8), np.uint8)
    index[:, 4:] = 1
    index[0, :] = 2
    palette = [200, 10, 20, 5, 150, 250, 0, 0, 0] + [0] * (256 * 3 - 9)
    im = Image.fromarray(index, "P")
    im.putpalette(palette)
    im.save(tmp_path / "p.png")
    out, info = read_image(tmp_path / "p.png", return_info=True)
    np.testing.assert_allclose(out[3, 0], np.array([200, 10, 20]) / 255.0, atol=1e-6)
    np.testing.assert_allclose(out[3, 7], np.array([5, 150, 250]) / 255.0, atol=1e-6)
    assert info.mode == "P" and info.channels == 3

    im.info["transparency"] = 2  # index 2 (row 0) is transparent
    im.save(tmp_path / "pt.png", transparency=2)
    out, info = read_image(tmp_path / "pt.png", return_info=True)
    np.testing.assert_allclose(out[0], 1.0, atol=1e-6)  # composited on white
    np.testing.assert_allclose(out[3, 0], np.array([200, 10, 20]) / 255.0, atol=1e-6)
    assert info.has_alpha and info.channels == 4


def test_cmyk_jpeg(tmp_path):
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:, :8, 0] = 255  # cyan on the left
    cmyk[:, 8:, 1] = 255  # magenta on the right
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    out, info = read_image(tmp_path / "cmyk.jpg", return_info=True)
    assert info.mode == "CMYK"
    np.testing.assert_allclose(out[8, 2], [0, 1, 1], atol=0.05)  # cyan
    np.testing.assert_allclose(out[8, 13], [1, 0, 1], atol=0.05)  # magenta


@pytest.mark.parametrize("options", [{"subsampling": 0}, {"subsampling": 1}, {"subsampling": 2},
                                     {"progressive": True}, {"quality": 40}])
def test_jpeg_decode_equals_pillow(tmp_path, options):
    import skimage.data

    photo = skimage.data.astronaut()[::8, ::8]
    Image.fromarray(photo).save(tmp_path / "p.jpg", **options)
    reference = np.asarray(Image.open(tmp_path / "p.jpg").convert("RGB"))
    out = read_image(tmp_path / "p.jpg")
    np.testing.assert_array_equal(np.rint(out * 255).astype(np.uint8), reference)


def _red_left_blue_right(w: int = 32, h: int = 16) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2, 0] = 255
    img[:, w // 2 :, 2] = 255
    return img


def test_exif_orientation_applied_jpeg(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise for display
    Image.fromarray(_red_left_blue_right()).save(tmp_path / "o.jpg", exif=exif, quality=95)
    out, info = read_image(tmp_path / "o.jpg", return_info=True)
    assert out.shape == (32, 16, 3) and info.size == (16, 32) and info.orientation == 6
    assert out[:16, :, 0].mean() > 0.9 and out[16:, :, 2].mean() > 0.9  # left side now on top
    reference = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.jpg")))
    np.testing.assert_array_equal(np.rint(out * 255).astype(np.uint8), reference)


def test_exif_orientation_applied_16bit_tiff(tmp_path):
    img = _red_left_blue_right().astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "o.tif", img, photometric="rgb",
                     extratags=[(274, "H", 1, 8, True)])  # rotate 90 counter-clockwise
    out = read_image(tmp_path / "o.tif")
    assert out.shape == (32, 16, 3)
    assert out[16:, :, 0].mean() > 0.99 and out[:16, :, 2].mean() > 0.99  # left side at bottom


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_matches_pillow(orientation):
    img = ramp(5, 7)
    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}.get(orientation)
    pil = Image.fromarray(img)
    expected = np.asarray(pil.transpose(method) if method is not None else pil)
    np.testing.assert_array_equal(apply_orientation(img, orientation), expected)


# --------------------------------------------------------------------------- refusals


def _message(path, **kwargs) -> str:
    with pytest.raises(DataError) as err:
        read_image(path, **kwargs)
    assert str(path) in str(err.value)
    return str(err.value)


def test_refuses_zero_byte_not_image_truncated_missing(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    assert "empty" in _message(tmp_path / "zero.png")
    (tmp_path / "notes.jpg").write_text("this is not an image")
    assert "not an image" in _message(tmp_path / "notes.jpg")
    assert "not found" in _message(tmp_path / "missing.png")
    (tmp_path / "folder.png").mkdir()  # a folder named like an image: one message, no traceback
    assert _message(tmp_path / "folder.png").endswith("folder.png: is a folder, not an image file")

    noise = np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert "truncated" in _message(tmp_path / "cut.png")
    Image.fromarray(noise).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert "truncated" in _message(tmp_path / "cut.jpg")
    img16 = np.zeros((20, 20, 3), np.uint16)
    data = png_bytes(img16, color_type=2)
    (tmp_path / "cut16.png").write_bytes(data[: len(data) - 30])
    assert "corrupt" in _message(tmp_path / "cut16.png") or "truncated" in _message(tmp_path / "cut16.png")


def test_png_with_a_corrupt_byte_is_refused_everywhere(tmp_path):
    """PNG chunks carry CRCs: one flipped byte in the pixel data is caught by the reader,
    the fast check and the full check (Pillow alone decodes such a file silently)."""
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "good.png")
    data = bytearray((tmp_path / "good.png").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "flip.png").write_bytes(bytes(data))
    assert "corrupt PNG (bad checksum in the IDAT chunk)" in _message(tmp_path / "flip.png")
    for full in (False, True):
        assert inspect_image(tmp_path / "flip.png", full_decode=full) == (
            None, "corrupt PNG (bad checksum in the IDAT chunk)")
        assert inspect_image(tmp_path / "good.png", full_decode=full) == ((64, 64), None)
    cut = (tmp_path / "good.png").read_bytes()
    (tmp_path / "noend.png").write_bytes(cut[:-12])  # IEND chunk missing
    assert "truncated PNG (no IEND chunk)" in _message(tmp_path / "noend.png")


def test_png_with_garbled_pixels_but_good_checksums_is_refused(tmp_path):
    """Compressed data that does not inflate, under recomputed CRCs: the decoder's error
    must surface (Pillow's EXIF lookup used to swallow it and the pixels read as zeros)."""
    image = ramp(16, 24)
    plain = png_bytes(image, color_type=2, bit_depth=8)
    start = plain.index(b"IDAT") - 4
    length = struct.unpack(">I", plain[start : start + 4])[0]
    body = bytes(b ^ 0x5A for b in plain[start + 8 : start + 8 + length])
    chunk = struct.pack(">I", length) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body) & 0xFFFFFFFF)
    (tmp_path / "garbled.png").write_bytes(plain[:start] + chunk + plain[start + 12 + length :])
    assert "truncated or corrupt image data" in _message(tmp_path / "garbled.png")
    assert inspect_image(tmp_path / "garbled.png", full_decode=True)[0] is None


def test_png_orientation_after_the_pixels_counts_in_the_fast_check(tmp_path):
    """An eXIf chunk may follow IDAT; the fast check (sizes of pairs) must see it as the
    reader does."""
    image = ramp(16, 24)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise: shown 16 wide, 24 tall
    plain = png_bytes(image, color_type=2, bit_depth=8)
    iend = plain.index(b"IEND") - 4
    data = exif.tobytes()
    chunk = struct.pack(">I", len(data)) + b"eXIf" + data + struct.pack(">I", zlib.crc32(b"eXIf" + data) & 0xFFFFFFFF)
    (tmp_path / "late.png").write_bytes(plain[:iend] + chunk + plain[iend:])
    assert read_image(tmp_path / "late.png").shape == (24, 16, 3)
    assert inspect_image(tmp_path / "late.png") == ((16, 24), None)


def test_float_tiff_that_pillow_cannot_open(tmp_path):
    """32-bit float RGB TIFF (Pillow has no mode for it) goes through tifffile: clipped to
    [0, 1], same pixel limit, same checks."""
    values = np.random.default_rng(4).random((5, 7, 3)).astype(np.float32) * 1.4 - 0.2
    tifffile.imwrite(tmp_path / "f.tif", values)
    got = read_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(got, np.clip(values, 0, 1))
    assert inspect_image(tmp_path / "f.tif") == ((7, 5), None)
    assert "above the limit of 34" in _message(tmp_path / "f.tif", max_pixels=34)
    (tmp_path / "junk.tif").write_bytes(b"II*\x00" + b"\xff" * 40)
    assert str(tmp_path / "junk.tif") in _message(tmp_path / "junk.tif")


def test_lzw_16_bit_tiff_without_imagecodecs(tmp_path):
    """OpenCV writes LZW TIFFs; tifffile needs the optional imagecodecs for them, so the
    reader falls back to OpenCV's libtiff, keeping all 16 bits and the channel order."""
    import cv2

    rgb = (np.random.default_rng(6).random((16, 20, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "lzw.tif"), rgb[..., ::-1])
    with tifffile.TiffFile(tmp_path / "lzw.tif") as tif:
        assert tif.pages[0].compression == 5  # LZW
    got, info = read_image(tmp_path / "lzw.tif", return_info=True)
    np.testing.assert_array_equal(np.rint(got * 65535).astype(np.uint16), rgb)
    assert info.bit_depth == 16


def test_pixel_limit_checked_on_header(tmp_path):
    Image.fromarray(ramp(40, 50)).save(tmp_path / "big.png")
    message = _message(tmp_path / "big.png", max_pixels=1999)
    assert "2,000 pixels" in message and "data.max_pixels" in message
    assert read_image(tmp_path / "big.png", max_pixels=2000).shape == (40, 50, 3)


def test_decompression_bomb_never_leaks_pillow_errors(tmp_path):
    # A header claiming 20000 x 10000 (200 M pixels, above Pillow's 178.9 M error limit)
    # with a tiny body: nothing is decoded before the refusal.
    tiny = np.zeros((1, 1), np.uint8)
    (tmp_path / "bomb.png").write_bytes(
        png_bytes(tiny, color_type=0, bit_depth=8, width=20000, height=10000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaked DecompressionBombWarning would fail here
        assert "pixel limit" in _message(tmp_path / "bomb.png")
        # 100 M pixels: above Pillow's warning threshold, below our default limit.
        (tmp_path / "warn.png").write_bytes(
            png_bytes(tiny, color_type=0, bit_depth=8, width=10000, height=10000))
        assert "above the limit" in _message(tmp_path / "warn.png", max_pixels=50_000_000)
        size, reason = inspect_image(tmp_path / "warn.png")  # header + CRC check only
        assert size == (10000, 10000) and reason is None
        # A user limit above Pillow's own: Pillow's limit is raised, the header is fine.
        size, reason = inspect_image(tmp_path / "bomb.png", max_pixels=300_000_000)
        assert size == (20000, 10000) and reason is None


# --------------------------------------------------------------------------- writing


def test_write_8bit_roundtrip_and_atomic(tmp_path):
    values = np.arange(256, dtype=np.float64).reshape(16, 16) / 255.0
    img = np.stack([values, values[::-1], values.T], -1)
    path = write_image(tmp_path / "deep" / "er" / "a.png", img)
    assert path.exists()
    np.testing.assert_array_equal(read_image(path), img.astype(np.float32))
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.png"]  # no temp file left


def test_write_16bit_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    levels = rng.integers(0, 65536, (9, 7, 3))
    path = write_image(tmp_path / "b.png", levels / 65535.0, bit_depth=16)
    out, info = read_image(path, return_info=True)
    assert info.bit_depth == 16
    np.testing.assert_array_equal(np.rint(out.astype(np.float64) * 65535), levels)
    grey = rng.integers(0, 65536, (5, 6))
    out = read_image(write_image(tmp_path / "g.png", grey / 65535.0, bit_depth=16))
    np.testing.assert_array_equal(np.rint(out[..., 0].astype(np.float64) * 65535), grey)


def test_write_torch_tensor_and_clipping(tmp_path):
    import torch

    tensor = torch.linspace(-0.5, 1.5, 3 * 4 * 5).reshape(3, 4, 5)
    out = read_image(write_image(tmp_path / "t.png", tensor[None]))
    expected = np.rint(np.clip(tensor.permute(1, 2, 0).numpy(), 0, 1) * 255) / 255
    np.testing.assert_allclose(out, expected, atol=1e-6)


# --------------------------------------------------------------------------- scanning and checks


def test_scan_images_recursive_sorted_case_insensitive(tmp_path):
    for rel in ["b.JPG", "a.png", "sub/c.TIFF", "sub/deeper/d.webp", "e.Jpeg", "f.bmp", "g.ppm"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    for rel in ["notes.txt", ".hidden.png", "._b.jpg", ".cache/h.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in scan_images(tmp_path)]
    assert found == ["a.png", "b.JPG", "e.Jpeg", "f.bmp", "g.ppm", "sub/c.TIFF", "sub/deeper/d.webp"]
    assert scan_images(tmp_path) == scan_images(str(tmp_path))


def test_scan_images_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="folder not found") as err:
        scan_images(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(DataError) as err:
        scan_images(tmp_path / "empty")
    message = str(err.value)
    assert str(tmp_path / "empty") in message and ".jpg" in message and ".tiff" in message


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture()
def data_log():
    logger = logging.getLogger("img2img")
    handler = _Records()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def _bad_folder(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    good = []
    for i in range(3):
        Image.fromarray(ramp()).save(tmp_path / f"good{i}.png")
        good.append(tmp_path / f"good{i}.png")
    Image.fromarray(ramp()).save(tmp_path / "good.jpg", quality=90)
    good.append(tmp_path / "good.jpg")
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    noise = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "src.jpg")
    data = (tmp_path / "src.jpg").read_bytes()
    (tmp_path / "src.jpg").unlink()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    Image.fromarray(noise).save(tmp_path / "src.png")
    data = (tmp_path / "src.png").read_bytes()
    (tmp_path / "src.png").unlink()
    (tmp_path / "cut.png").write_bytes(data[:-40])
    bad = [tmp_path / n for n in ("zero.png", "text.png", "cut.jpg", "cut.png")]
    return good, bad


def test_check_files_raise_lists_every_bad_file(tmp_path):
    good, bad = _bad_folder(tmp_path)
    with pytest.raises(DataError) as err:
        check_files(scan_images(tmp_path), None, "raise")
    message = str(err.value)
    assert message.startswith("4 bad file(s)")
    for path in bad:
        assert str(path) in message
    assert "empty file" in message and "not an image" in message and "truncated" in message
    assert "data.on_error=skip" in message


def test_check_files_skip_drops_with_one_counted_warning(tmp_path, data_log):
    good, bad = _bad_folder(tmp_path)
    kept = check_files(scan_images(tmp_path), None, "skip")
    assert kept == sorted(good, key=lambda p: p.name)
    warnings_ = [r for r in data_log.records if r.levelno == logging.WARNING]
    assert len(warnings_) == 1 and "skipping 4 bad file(s)" in warnings_[0].getMessage()


def test_full_decode_catches_what_the_header_check_cannot(tmp_path):
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "n.bmp")
    data = (tmp_path / "n.bmp").read_bytes()
    (tmp_path / "n.bmp").write_bytes(data[:-500])  # BMP: fully decoded even in the fast check
    assert inspect_image(tmp_path / "n.bmp")[1] is not None
    assert check_files([tmp_path / "n.bmp"], None, "skip", full_decode=True) == []


def test_scan_follows_symlinks_without_looping(tmp_path):
    Image.fromarray(ramp()).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(ramp()).save(tmp_path / "sub" / "b.png")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)
    found = [p.relative_to(tmp_path).as_posix() for p in scan_images(tmp_path)]
    assert found == ["a.png", "sub/b.png"]
