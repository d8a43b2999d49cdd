"""The datasets of the four jobs, built from configs on tiny images made here."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2img.config import load_config
from img2img.data import SingleFolderDataset, imresize, read_image
from img2img.data.sr import SRDataset, mod_crop
from img2img.errors import ConfigError, DataError
from tests.tiny import build_dataset


def noise(rng, h, w) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def config(root, task="pix2pix", *overrides):
    extra = ["model.generator.name=srresnet"] if task == "srgan" else []
    return load_config(None, [f"task={task}", f"data.root={root}", *extra, *overrides])


def small(*overrides):
    return ["data.load_size=36", "data.crop_size=32", *overrides]


@pytest.fixture()
def aligned(tmp_path):
    """pix2pix aligned data where the right half is 255 - the left half."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for i in range(n):
            a = noise(rng, 40, 44)
            save(tmp_path / "p" / split / f"{i}.png", np.concatenate([a, 255 - a], 1))
    return tmp_path / "p"


def check_sample(sample, keys, channels=3):
    assert set(sample) == set(keys)
    for key in keys:
        if key.endswith("_path"):
            assert isinstance(sample[key], str)
        else:
            t = sample[key]
            assert t.dtype == torch.float32 and t.ndim == 3 and t.shape[0] in (channels, 3, 1)
            assert t.min() >= -1.0 and t.max() <= 1.0


# --------------------------------------------------------------------------- paired


def _locate(patch: np.ndarray, image: np.ndarray) -> tuple[int, int, bool] | None:
    """(top, left, mirrored) of ``patch`` inside ``image``, or None."""
    size = patch.shape[0]
    for mirrored in (False, True):
        target = patch[:, ::-1] if mirrored else patch
        for top in range(image.shape[0] - size + 1):
            for left in range(image.shape[1] - size + 1):
                if np.allclose(image[top:top + size, left:left + size], target, atol=1e-6):
                    return top, left, mirrored
    return None


def test_aligned_pairs_stay_aligned_after_crop_and_flip(aligned):
    ds = build_dataset(config(aligned, "pix2pix", "data.preprocess=crop", "data.crop_size=24"), "train")
    assert len(ds) == 4
    whole = read_image(aligned / "train" / "1.png")
    found = set()
    for seed in range(10):
        s = ds[(1, seed)]
        check_sample(s, ["A", "B", "A_path", "B_path"])
        assert s["A"].shape == (3, 24, 24)
        torch.testing.assert_close(s["B"], -s["A"], atol=1e-6, rtol=0)  # B = 255 - A held
        where = _locate((s["A"].permute(1, 2, 0).numpy() + 1) / 2, whole[:, :44])
        assert where is not None
        found.add(where)
    assert {mirrored for _, _, mirrored in found} == {False, True}  # flips happen
    assert len({(t, left) for t, left, _ in found}) > 3  # crops move with the seed


def test_aligned_resize_and_crop_keeps_pairs(aligned):
    ds = build_dataset(config(aligned, "pix2pix", *small()), "train")
    s = ds[(2, 5)]
    assert s["A"].shape == (3, 32, 32)
    # resizing is bicubic in 8 bits: 255 - x and x resize to within one level of each other
    assert (s["B"] + s["A"]).abs().max() <= 2.0 / 255 + 1e-6


def test_direction_btoa_swaps_halves(aligned):
    cfg = config(aligned, "pix2pix", "data.preprocess=none", "data.direction=BtoA")
    s = build_dataset(cfg, "val")[0]
    whole = read_image(aligned / "val" / "0.png")
    np.testing.assert_allclose((s["A"].permute(1, 2, 0).numpy() + 1) / 2, whole[:, 44:], atol=1e-6)
    np.testing.assert_allclose((s["B"].permute(1, 2, 0).numpy() + 1) / 2, whole[:, :44], atol=1e-6)


def test_val_resizes_to_crop_size_without_randomness(aligned):
    ds = build_dataset(config(aligned, "pix2pix", *small()), "val")
    assert len(ds) == 2
    a, b = ds[(0, 1)], ds[(0, 999)]
    assert a["A"].shape == (3, 32, 32)
    torch.testing.assert_close(a["A"], b["A"])


def test_same_key_same_sample_and_int_key_is_seed_index(aligned):
    ds = build_dataset(config(aligned, "pix2pix", *small()), "train")
    one, two = ds[(3, 12345)], ds[(3, 12345)]
    torch.testing.assert_close(one["A"], two["A"])
    torch.testing.assert_close(ds[3]["A"], ds[(3, 3)]["A"])
    assert any(not torch.equal(ds[(3, 12345)]["A"], ds[(3, s)]["A"]) for s in range(5))


def test_same_sample_in_a_dataloader_worker(aligned):
    ds = build_dataset(config(aligned, "pix2pix", *small()), "train")
    keys = [(0, 11), (2, 7), (1, 2**40 + 5)]
    loader = torch.utils.data.DataLoader(ds, batch_size=1, sampler=keys, num_workers=1)
    for key, batch in zip(keys, loader):
        torch.testing.assert_close(batch["A"][0], ds[key]["A"])
        torch.testing.assert_close(batch["B"][0], ds[key]["B"])


def test_folders_layout_pairs_by_name(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("x1", "x2", "sub/x3"):
        a = noise(rng, 30, 34)
        save(tmp_path / "train" / "A" / f"{name}.png", a)
        save(tmp_path / "train" / "B" / f"{name}.png", 255 - a)
    ds = build_dataset(config(tmp_path, "pix2pix", "data.layout=folders", "data.preprocess=crop",
                              "data.crop_size=16"), "train")
    assert len(ds) == 3
    nested = [i for i, (a, _) in enumerate(ds.items) if a.parent.name == "sub"][0]
    for seed in range(4):
        s = ds[(nested, seed)]
        assert Path(s["A_path"]).parent.name == "sub" and "/A/" in s["A_path"] and "/B/" in s["B_path"]
        torch.testing.assert_close(s["B"], -s["A"], atol=1e-6, rtol=0)
    assert build_dataset(config(tmp_path, "pix2pix", "data.layout=folders"), "val") is None


def test_folders_layout_size_mismatch_names_both_files(tmp_path):
    rng = np.random.default_rng(2)
    save(tmp_path / "train" / "A" / "p.png", noise(rng, 20, 20))
    save(tmp_path / "train" / "B" / "p.png", noise(rng, 20, 24))
    save(tmp_path / "train" / "A" / "q.png", noise(rng, 20, 20))
    save(tmp_path / "train" / "B" / "q.png", noise(rng, 20, 20))
    save(tmp_path / "train" / "A" / "lonely.png", noise(rng, 20, 20))
    cfg = config(tmp_path, "pix2pix", "data.layout=folders")
    with pytest.raises(DataError) as err:
        build_dataset(cfg, "train")
    message = str(err.value)
    assert str(tmp_path / "train" / "A" / "p.png") in message
    assert str(tmp_path / "train" / "B" / "p.png") in message
    assert "20x20" in message and "24x20" in message
    assert str(tmp_path / "train" / "A" / "lonely.png") in message and "no file named" in message
    ds = build_dataset(config(tmp_path, "pix2pix", "data.layout=folders", "data.on_error=skip"), "train")
    assert len(ds) == 1 and ds[0]["A_path"].endswith("q.png")


def test_grey_input_channel(aligned):
    ds = build_dataset(config(aligned, "pix2pix", *small(), "model.in_channels=1"), "train")
    s = ds[0]
    assert s["A"].shape == (1, 32, 32) and s["B"].shape == (3, 32, 32)


@pytest.mark.parametrize(
    "preprocess, train_shape, val_shape",
    # halves are 44 wide, 40 high: scale_width to 36 gives int(max(36*40/44, 32)) = 32 rows;
    # at val, width 32 gives int(max(29.1, 32)) = 32 rows
    [("scale_width", (3, 32, 36), (3, 32, 32)), ("scale_width_and_crop", (3, 32, 32), (3, 32, 32)),
     ("none", (3, 40, 44), (3, 40, 44)), ("crop", (3, 32, 32), (3, 40, 44))],
)
def test_preprocess_modes(aligned, preprocess, train_shape, val_shape):
    cfg = config(aligned, "pix2pix", *small(f"data.preprocess={preprocess}"))
    assert tuple(build_dataset(cfg, "train")[0]["A"].shape) == train_shape
    assert tuple(build_dataset(cfg, "val")[0]["A"].shape) == val_shape


def test_none_rounds_to_multiple_of_4_and_small_images_grow_for_crop(tmp_path):
    rng = np.random.default_rng(3)
    a = noise(rng, 21, 23)
    save(tmp_path / "train" / "0.png", np.concatenate([a, a], 1))
    assert build_dataset(config(tmp_path, "pix2pix", "data.preprocess=none"), "train")[0]["A"].shape == (3, 20, 24)
    save(tmp_path / "val" / "0.png", np.concatenate([a, a], 1))
    assert build_dataset(config(tmp_path, "pix2pix", "data.preprocess=none"), "val")[0]["A"].shape == (3, 21, 23)
    s = build_dataset(config(tmp_path, "pix2pix", "data.preprocess=crop", "data.crop_size=32"), "train")[0]
    assert s["A"].shape == (3, 32, 32)


# --------------------------------------------------------------------------- unpaired


@pytest.fixture()
def unpaired(tmp_path):
    rng = np.random.default_rng(4)
    for folder, n in (("trainA", 5), ("trainB", 3), ("testA", 2), ("testB", 3)):
        for i in range(n):
            save(tmp_path / folder / f"{folder}{i}.png", noise(rng, 36, 40))
    return tmp_path


def test_unpaired_length_and_seeded_b(unpaired):
    ds = build_dataset(config(unpaired, "cyclegan", *small()), "train")
    assert len(ds) == 5
    s = ds[(4, 77)]
    check_sample(s, ["A", "B", "A_path", "B_path"])
    assert s["A_path"].endswith("trainA4.png") and "trainB" in s["B_path"]
    again = ds[(4, 77)]
    assert again["B_path"] == s["B_path"]
    torch.testing.assert_close(again["B"], s["B"])
    assert len({ds[(0, seed)]["B_path"] for seed in range(20)}) == 3


def test_unpaired_val_falls_back_to_test_and_pairs_by_index(unpaired):
    ds = build_dataset(config(unpaired, "cyclegan", *small()), "val")
    assert len(ds) == 2
    assert [ds[i]["B_path"].rsplit("/", 1)[1] for i in range(2)] == ["testB0.png", "testB1.png"]
    rev = build_dataset(config(unpaired, "cyclegan", *small(), "data.direction=BtoA"), "train")
    assert len(rev) == 5 and "trainB" in rev[0]["A_path"]


def test_unpaired_missing_domain(tmp_path):
    save(tmp_path / "trainA" / "a.png", noise(np.random.default_rng(0), 8, 8))
    with pytest.raises(DataError, match="trainB"):
        build_dataset(config(tmp_path, "cyclegan"), "train")


# --------------------------------------------------------------------------- super-resolution


@pytest.fixture()
def hr_folder(tmp_path):
    rng = np.random.default_rng(5)
    save(tmp_path / "hr" / "train" / "0001.png", noise(rng, 50, 45))
    save(tmp_path / "hr" / "train" / "0002.png", noise(rng, 41, 62))
    save(tmp_path / "hr" / "val" / "0801.png", noise(rng, 30, 27))
    return tmp_path / "hr"


def test_sr_on_the_fly_lr_equals_imresize_of_the_whole_image(hr_folder):
    cfg = config(hr_folder, "srgan", "data.scale=4", "data.gt_size=16", "data.flip=false")
    ds = build_dataset(cfg, "train")
    raw = SRDataset(ds.items, scale=4, gt_size=16, flip=False, quantize=False)
    whole = mod_crop(read_image(hr_folder / "train" / "0001.png"), 4)
    lr_whole = imresize(whole.astype(np.float64), 0.25)
    for seed in range(6):
        s = raw[(0, seed)]
        hr = (s["B"].permute(1, 2, 0).numpy() + 1) / 2
        lr = (s["A"].permute(1, 2, 0).numpy() + 1) / 2
        assert hr.shape == (16, 16, 3) and lr.shape == (4, 4, 3)
        # locate the HR patch, then the LR patch must be the same window of the whole LR
        hits = [(t, left) for t in range(0, whole.shape[0] - 15, 4) for left in range(0, whole.shape[1] - 15, 4)
                if np.allclose(whole[t:t + 16, left:left + 16], hr, atol=1e-6)]
        assert len(hits) == 1
        t, left = hits[0]
        np.testing.assert_allclose(lr, lr_whole[t // 4:t // 4 + 4, left // 4:left // 4 + 4], atol=1e-5)
        # the default (quantised) dataset rounds that LR to 8 bits
        q = (ds[(0, seed)]["A"].permute(1, 2, 0).numpy() + 1) / 2
        np.testing.assert_allclose(q, np.rint(np.clip(lr, 0, 1) * 255) / 255, atol=1e-6)


def test_sr_flips_and_rotations_keep_lr_and_hr_aligned(hr_folder):
    cfg = config(hr_folder, "srgan", "data.scale=2", "data.gt_size=16", "data.rot90=true")
    ds = build_dataset(cfg, "train")
    plain = build_dataset(config(hr_folder, "srgan", "data.scale=2", "data.gt_size=16",
                                 "data.flip=false"), "train")
    seen = set()
    for seed in range(16):
        s, ref = ds[(1, seed)], plain[(1, seed)]  # same crop position, no augmentation
        for k in range(8):
            def op(t, k=k):
                t = torch.rot90(t, k % 4, dims=(1, 2))
                return t.flip(2) if k >= 4 else t
            if torch.equal(op(ref["B"]), s["B"]):
                torch.testing.assert_close(op(ref["A"]), s["A"])
                seen.add(k)
                break
        else:
            raise AssertionError("augmented HR is not a symmetry of the plain HR patch")
    assert len(seen) >= 4


def test_sr_val_mod_crops_and_downscales(hr_folder):
    ds = build_dataset(config(hr_folder, "srgan", "data.scale=4", "data.gt_size=16"), "val")
    s = ds[0]
    assert s["B"].shape == (3, 28, 24) and s["A"].shape == (3, 7, 6)
    whole = mod_crop(read_image(hr_folder / "val" / "0801.png"), 4).astype(np.float64)
    expected = np.rint(np.clip(imresize(whole, 0.25), 0, 1) * 255) / 255
    np.testing.assert_allclose((s["A"].permute(1, 2, 0).numpy() + 1) / 2, expected, atol=1e-6)


def test_sr_lr_root_matching_and_mismatch(hr_folder, tmp_path):
    lr_dir = tmp_path / "lr" / "train"
    for name, size in (("0001", (12, 11)), ("0002", (10, 15))):
        hr = mod_crop(read_image(hr_folder / "train" / f"{name}.png"), 4).astype(np.float64)
        lr = np.rint(np.clip(imresize(hr, 0.25), 0, 1) * 255).astype(np.uint8)
        assert lr.shape[:2] == size
        save(lr_dir / f"{name}x4.png", lr)
    cfg = config(hr_folder, "srgan", "data.scale=4", "data.gt_size=16", f"data.lr_root={tmp_path / 'lr'}",
                 "data.flip=false")
    ds = build_dataset(cfg, "train")
    s = ds[(0, 3)]
    assert s["A_path"].endswith("0001x4.png") and s["A"].shape == (3, 4, 4)
    assert build_dataset(cfg, "val")[0]["A"].shape == (3, 7, 6)  # no LR val folder: on the fly
    save(lr_dir / "0002x4.png", noise(np.random.default_rng(0), 9, 15))
    with pytest.raises(DataError) as err:
        build_dataset(cfg, "train")
    assert str(lr_dir / "0002x4.png") in str(err.value) and str(hr_folder / "train" / "0002.png") in str(err.value)


def test_sr_gt_size_must_be_multiple_of_scale(hr_folder):
    with pytest.raises(ConfigError, match="multiple"):
        build_dataset(config(hr_folder, "srgan", "data.scale=3", "data.gt_size=16"), "train")


def test_sr_too_small_images_are_reported(hr_folder):
    cfg = config(hr_folder, "srgan", "data.scale=2", "data.gt_size=44")
    with pytest.raises(DataError, match="smaller than data.gt_size"):
        build_dataset(cfg, "train")


# --------------------------------------------------------------------------- colorization, single folder


def test_colorization_on_a_plain_folder(tmp_path):
    rng = np.random.default_rng(6)
    for i in range(3):
        save(tmp_path / "photos" / f"{i}.jpg", noise(rng, 40, 50))
    cfg = config(tmp_path / "photos", "colorization", *small())
    ds = build_dataset(cfg, "train")
    assert len(ds) == 3
    s = ds[(1, 9)]
    check_sample(s, ["B", "B_path"])
    assert s["B"].shape == (3, 32, 32)
    assert build_dataset(cfg, "val") is None


def test_colorization_val_split(aligned):
    cfg = config(aligned, "colorization", *small(), "data.max_val_images=1")
    ds = build_dataset(cfg, "val")
    assert len(ds) == 1 and ds[0]["B"].shape == (3, 32, 32)


def test_single_folder_dataset(tmp_path):
    rng = np.random.default_rng(7)
    save(tmp_path / "in" / "a.png", noise(rng, 13, 17))
    save(tmp_path / "in" / "sub" / "b.jpg", noise(rng, 20, 10))
    ds = SingleFolderDataset(tmp_path / "in")
    assert len(ds) == 2 and ds[0]["A"].shape == (3, 13, 17) and ds[1]["A"].shape == (3, 20, 10)
    np.testing.assert_allclose((ds[0]["A"].permute(1, 2, 0).numpy() + 1) / 2,
                               read_image(tmp_path / "in" / "a.png"), atol=1e-6)
    assert len(SingleFolderDataset(tmp_path / "in" / "a.png")) == 1


# --------------------------------------------------------------------------- errors


def test_empty_or_missing_root(tmp_path):
    with pytest.raises(DataError, match="data.root is empty"):
        build_dataset(config("", "pix2pix"), "train")
    with pytest.raises(DataError, match="folder not found") as err:
        build_dataset(config(tmp_path / "nowhere", "pix2pix"), "train")
    assert str(tmp_path / "nowhere") in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no training images") as err:
        build_dataset(config(tmp_path / "empty", "colorization"), "train")
    assert str(tmp_path / "empty") in str(err.value)


def test_on_error_raise_lists_all_and_skip_counts(aligned):
    (aligned / "train" / "zero.png").write_bytes(b"")
    (aligned / "train" / "text.jpg").write_text("not an image")
    with pytest.raises(DataError) as err:
        build_dataset(config(aligned, "pix2pix", *small()), "train")
    assert "2 bad file(s)" in str(err.value)
    assert "zero.png" in str(err.value) and "text.jpg" in str(err.value)

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("img2img")
    logger.addHandler(handler)
    try:
        ds = build_dataset(config(aligned, "pix2pix", *small(), "data.on_error=skip"), "train")
    finally:
        logger.removeHandler(handler)
    assert len(ds) == 4
    warnings_ = [r for r in records if r.levelno == logging.WARNING]
    assert len(warnings_) == 1 and "skipping 2 bad file(s)" in warnings_[0].getMessage()


def test_aligned_layout_checks_before_training(aligned):
    """An image too narrow to split, and A/ B/ folders under the aligned layout, are found
    when the data set is built, not mid-run."""
    save(aligned / "train" / "narrow.png", np.zeros((40, 1, 3), np.uint8))
    with pytest.raises(DataError, match="narrow.png: too narrow \\(1 px\\) to hold A\\|B"):
        build_dataset(config(aligned, "pix2pix", *small()), "train")
    assert len(build_dataset(config(aligned, "pix2pix", *small(), "data.on_error=skip"), "train")) == 4
    (aligned / "train" / "narrow.png").unlink()
    (aligned / "train" / "A").mkdir()
    (aligned / "train" / "B").mkdir()
    with pytest.raises(ConfigError, match="holds A/ and B/ folders: set data.layout=folders"):
        build_dataset(config(aligned, "pix2pix", *small()), "train")


def test_all_files_bad_is_an_error_not_an_empty_dataset(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="no usable images"):
        build_dataset(config(tmp_path, "colorization", "data.on_error=skip"), "train")


def test_decode_failure_in_a_sample_names_the_file(aligned):
    ds = build_dataset(config(aligned, "pix2pix", *small()), "train")
    path = Path(ds.items[0])
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError) as err:
        ds[0]
    assert str(path) in str(err.value)


def test_skip_also_drops_a_file_that_fails_only_when_decoded(tmp_path, caplog):
    """A JPEG whose compressed data is corrupt but complete passes the fast check; under
    data.on_error=skip the training set serves the next sample in its place with one
    warning naming the file; under raise the error names it."""
    from tests.tiny import save_undecodable_jpeg

    rng = np.random.default_rng(3)
    (tmp_path / "train").mkdir()
    for i in (0, 2, 3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "train" / f"{i}.jpg")
    bad = save_undecodable_jpeg(tmp_path / "train" / "1.jpg", seed=3)
    extra = ("data.preprocess=crop", "data.crop_size=32")

    strict = build_dataset(config(tmp_path, "colorization", *extra), "train")
    assert len(strict) == 4  # the fast check let it through
    with pytest.raises(DataError, match="1.jpg"):
        strict[(1, 5)]

    lenient = build_dataset(config(tmp_path, "colorization", *extra, "data.on_error=skip"), "train")
    with caplog.at_level(logging.WARNING, logger="img2img"):
        got = lenient[(1, 5)]
        again = lenient[(1, 5)]
    assert torch.equal(got["B"], lenient[(2, 5)]["B"])  # the next sample, same seed
    assert torch.equal(got["B"], again["B"])
    warned = [r.getMessage() for r in caplog.records if "skipping a bad file" in r.getMessage()]
    assert len(warned) == 1 and str(bad) in warned[0]
    assert lenient[(0, 5)]["B"].shape[-2:] == (32, 32)


def test_datasets_pickle_for_spawned_workers(aligned, hr_folder):
    import pickle

    for ds in (build_dataset(config(aligned, "pix2pix", *small()), "train"),
               build_dataset(config(hr_folder, "srgan", "data.scale=2", "data.gt_size=16",
                                    "data.rot90=true"), "train")):
        copy = pickle.loads(pickle.dumps(ds))
        torch.testing.assert_close(copy[(1, 42)]["A"], ds[(1, 42)]["A"])
        torch.testing.assert_close(copy[(1, 42)]["B"], ds[(1, 42)]["B"])
