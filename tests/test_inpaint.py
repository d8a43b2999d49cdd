"""Inpainting: masks (seeded, covering the configured share), compositing, the losses,
training with an exact resume and on two processes, evaluation beside OpenCV's Telea,
prediction with mask files, ONNX with the mask input, and the demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from img2img.config import load_config, save_config
from img2img.data import read_image
from img2img.data.masks import make_mask, read_mask
from img2img.engine import Trainer, list_checkpoints
from img2img.errors import ConfigError, UserError
from img2img.metrics.masked import region_scores
from img2img.tasks import build_task
from tests.tiny import TINY, make_task_data, save_png

INPAINT = [*TINY["common"], "task=inpaint", "model.generator.name=unet", "model.generator.num_downs=3",
           "data.preprocess=resize_and_crop", "data.load_size=36", "data.crop_size=32", "eval.metric=psnr_hole"]


def config_for(tmp_path, *extra):
    return load_config(None, [*INPAINT, f"data.root={tmp_path / 'data'}", f"output_dir={tmp_path / 'run'}", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny inpainting run (3 steps), its data and its config."""
    base = tmp_path_factory.mktemp("inpaint")
    make_task_data(base / "data", "inpaint", n_train=4, n_val=2, size=40)
    config = config_for(base)
    Trainer(config).fit()
    return base


# --------------------------------------------------------------------------- masks


@pytest.mark.parametrize("kinds", [["free_form"], ["rectangle"]])
def test_masks_are_seeded_and_cover_the_configured_share(kinds):
    shares = []
    for seed in range(150):
        mask = make_mask(seed, 48, 64, (0.1, 0.3), kinds)
        assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
        shares.append(mask.mean())
    shares = np.array(shares)
    assert np.array_equal(make_mask(7, 48, 64, (0.1, 0.3), kinds), make_mask(7, 48, 64, (0.1, 0.3), kinds))
    assert not np.array_equal(make_mask(7, 48, 64, (0.1, 0.3), kinds), make_mask(8, 48, 64, (0.1, 0.3), kinds))
    tolerance = 0.01 if kinds == ["rectangle"] else 0.0  # boxes round to whole pixels
    assert shares.max() <= 0.3 + tolerance
    assert (shares >= 0.1 - tolerance).mean() >= 0.97  # free-form: a stroke may not fit
    # The target share is uniform in the range: the mean lies near its middle (strokes go
    # on until they reach it, so free-form masks overshoot it a little).
    low, high = (0.18, 0.22) if kinds == ["rectangle"] else (0.2, 0.26)
    assert low < shares.mean() < high and shares.std() > 0.04


def test_mask_kinds_are_mixed_and_rectangles_are_one_box():
    boxes = 0
    for seed in range(40):
        mask = make_mask(seed, 40, 40, (0.2, 0.4))
        rows, cols = np.nonzero(mask)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        boxes += int(box == mask.sum())
    assert 5 < boxes < 35  # about half of the masks are boxes


def test_a_mask_file_is_white_for_the_hole(tmp_path):
    image = np.zeros((10, 12, 3), np.uint8)
    image[2:5, 3:9] = 255
    save_png(tmp_path / "m.png", image)
    mask = read_mask(tmp_path / "m.png")
    assert mask.shape == (10, 12) and mask.sum() == 18 and mask[3, 4] == 1.0


def test_a_0_1_mask_saved_as_8_bit_is_refused_not_read_as_no_hole(trained, tmp_path):
    import img2img
    from img2img.errors import UserError

    labels = np.zeros((10, 12), np.uint8)
    labels[2:5, 3:9] = 1  # a label map: black to the eye, so no hole at all if read as levels
    save_png(tmp_path / "m01.png", labels)
    with pytest.raises(UserError, match=r"m01.png: no pixel is white \(the brightest is 1 of 255\)"):
        read_mask(tmp_path / "m01.png")
    model = img2img.load(trained / "run")
    photo = read_image(next((trained / "data" / "val").iterdir()))
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[5:15, 5:15] = 1
    with pytest.raises(UserError, match="save a 0/1 mask as 0/255"):
        model(photo, mask=hole)
    filled = model(photo, mask=hole * 255)  # the same mask at 0/255, and a bool one, fill the hole
    assert np.array_equal(model(photo, mask=hole.astype(bool)), filled)
    assert not np.array_equal(filled[5:15, 5:15], photo[5:15, 5:15])


# --------------------------------------------------------------------------- compositing, losses


def test_compositing_keeps_the_known_pixels_bit_exact(tmp_path):
    task = build_task(config_for(tmp_path))
    torch.manual_seed(0)
    rgb = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = (torch.rand(2, 1, 16, 16) < 0.3).float()
    x = task.to_network(rgb, {"mask": mask})
    assert x.shape == (2, 4, 16, 16)
    assert torch.equal(x[:, 3:], mask) and torch.all(x[:, :3][mask.expand(-1, 3, -1, -1) > 0] == 0.0)
    out = task.from_network(torch.randn(2, 3, 16, 16) * 5, x)
    known = mask.expand(-1, 3, -1, -1) == 0
    assert torch.equal(out[known], rgb[known])
    assert not torch.equal(out[~known], rgb[~known])


def test_hole_and_valid_l1_terms_by_hand(tmp_path):
    config = config_for(tmp_path, "task_options.hole_weight=3", "task_options.valid_weight=0.5",
                        "model.discriminator.name=none")
    task = build_task(config)
    G = task.build_generators()
    torch.manual_seed(1)
    batch = task.prepare({"B": torch.rand(1, 3, 16, 16) * 2 - 1, "mask": (torch.rand(1, 1, 16, 16) < 0.4).float()},
                         torch.device("cpu"))
    out = task.forward(G, batch)
    with torch.no_grad():
        terms = task.generator_loss({}, batch, out)
    error = (out["raw"].detach() - batch["B"]).abs()
    m = batch["mask"]
    assert set(terms) == {"G_L1_hole", "G_L1_valid"}
    assert terms["G_L1_hole"].item() == pytest.approx(3 * float((error * m).sum() / error.numel()), rel=1e-6)
    assert terms["G_L1_valid"].item() == pytest.approx(0.5 * float((error * (1 - m)).sum() / error.numel()), rel=1e-6)
    with pytest.raises(ConfigError, match="hole_share"):
        build_task(config_for(tmp_path, "task_options.hole_share=[0.5,0.2]"))


# --------------------------------------------------------------------------- training


def test_train_and_sigkill_resume_are_bit_identical(tmp_path):
    make_task_data(tmp_path / "data", "inpaint", n_train=4, n_val=0, size=40)
    steps = ["train.max_steps=8", "train.save_every=2", "model.discriminator.norm=spectral", "loss.gan_mode=hinge"]
    runs = {}
    for name in ("ref", "killed"):
        cfg = load_config(None, [*INPAINT, f"data.root={tmp_path / 'data'}", f"output_dir={tmp_path / name}", *steps])
        save_config(cfg, tmp_path / f"{name}.yaml")
        runs[name] = tmp_path / name
    cmd = [sys.executable, "-m", "img2img", "train"]
    proc = subprocess.Popen([*cmd, str(tmp_path / "killed.yaml")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (runs["killed"] / "checkpoints" / "step-000002").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (runs["killed"] / "model").exists() and list_checkpoints(runs["killed"])
    resumed = subprocess.run([*cmd, str(tmp_path / "killed.yaml"), "--resume", "auto"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    ref = subprocess.run([*cmd, str(tmp_path / "ref.yaml")], capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    a, b = (load_file(str(runs[n] / "model" / "model.safetensors")) for n in ("ref", "killed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


DRIVER = """
import sys, torch
from img2img.config import load_config
from img2img.engine import Trainer
trainer = Trainer(load_config(sys.argv[1]))
trainer.fit()
torch.save({k: v.cpu() for k, v in trainer.nets.G["G"].state_dict().items()}, sys.argv[2] + f"{trainer.rank}.pt")
"""


def test_two_process_torchrun(tmp_path):
    make_task_data(tmp_path / "data", "inpaint", n_train=4, n_val=3, size=40)
    cfg = config_for(tmp_path, "train.max_steps=2", "train.batch_size=1", "eval.every=2",
                     "device=cpu" if torch.cuda.is_available() else "device=auto")
    save_config(cfg, tmp_path / "c.yaml")
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           str(tmp_path / "driver.py"), str(tmp_path / "c.yaml"), str(tmp_path / "rank")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/psnr_hole" in r]
    assert len(evals) == 1 and "eval_baseline/ssim_hole" in evals[0]


# --------------------------------------------------------------------------- evaluation, prediction, export


def test_eval_beside_telea_is_deterministic_and_computed_as_said(trained):
    cmd = [sys.executable, "-m", "img2img", "eval", str(trained / "run"), "--data", str(trained / "data" / "val"),
           "--json", "--per-image"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["baseline_name"] == "telea"
    for which in ("model", "baseline"):
        assert {"psnr", "ssim", "l1", "psnr_hole", "ssim_hole", "l1_hole"} <= set(result[which])
    second = json.loads(subprocess.run(cmd, capture_output=True, text=True).stdout)
    assert second["model"] == result["model"] and second["baseline"] == result["baseline"]
    # The baseline by hand: image i gets the mask of seed i; OpenCV Telea, radius 3.
    rows = {row["name"]: row for row in result["per_image"]}
    for i, name in enumerate(sorted(rows)):
        image = read_image(trained / "data" / "val" / name)
        levels = (image * 255).round().astype(np.uint8)
        mask = make_mask(i, *image.shape[:2], (0.1, 0.5))
        levels[mask > 0] = 128  # Telea sees what the model sees: the hole filled (fill 0: mid grey)
        filled = cv2.inpaint(levels, (mask * 255).astype(np.uint8), 3, cv2.INPAINT_TELEA)
        expected = region_scores(torch.from_numpy(filled).permute(2, 0, 1)[None] / 255.0,
                                 torch.from_numpy(image).permute(2, 0, 1)[None], torch.from_numpy(mask)[None, None])
        for key, value in expected.items():
            assert rows[name]["baseline"][key] == pytest.approx(value, rel=1e-9), key


def test_predict_with_a_mask_folder_and_with_one_mask(trained, tmp_path):
    val = trained / "data" / "val"
    masks = tmp_path / "masks"
    for i, path in enumerate(sorted(val.iterdir())):
        save_png(masks / f"{path.stem}.png", np.repeat((make_mask(i, 40, 40) * 255).astype(np.uint8)[..., None], 3, 2))
    cmd = [sys.executable, "-m", "img2img", "predict", str(trained / "run"), str(val)]
    out = subprocess.run([*cmd, "--mask", str(masks), "--out", str(tmp_path / "filled")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for i, path in enumerate(sorted(val.iterdir())):
        source, filled = read_image(path), read_image(tmp_path / "filled" / f"{path.stem}.png")
        known = make_mask(i, 40, 40) == 0
        assert np.array_equal(filled[known], source[known])  # the known pixels, bit for bit
        assert not np.array_equal(filled[~known], source[~known])
    one = subprocess.run([*cmd, "--mask", str(masks / "000.png"), "--out", str(tmp_path / "one")],
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    assert len(list((tmp_path / "one").glob("*.png"))) == 2
    none = subprocess.run([*cmd, "--out", str(tmp_path / "none")], capture_output=True, text=True)
    assert none.returncode == 2 and "--mask" in none.stderr and "Traceback" not in none.stderr
    save_png(tmp_path / "small.png", np.zeros((30, 40, 3), np.uint8))
    bad = subprocess.run([*cmd[:-1], str(val / "000.png"), "--mask", str(tmp_path / "small.png"), "--out",
                          str(tmp_path / "bad")], capture_output=True, text=True)
    assert bad.returncode == 2 and "small.png" in bad.stderr and "000.png" in bad.stderr


def _hole_png(path, seed):
    save_png(path, np.repeat((make_mask(seed, 40, 40) * 255).astype(np.uint8)[..., None], 3, 2))


def test_masks_kept_among_the_photos_are_not_translated(trained, tmp_path, capsys):
    from img2img.cli import main

    photos = tmp_path / "photos"
    for i, path in enumerate(sorted((trained / "data" / "val").iterdir())):
        save_png(photos / path.name, (read_image(path) * 255).round().astype(np.uint8))
        _hole_png(photos / "masks" / path.name, i)
    assert main(["predict", str(trained / "run"), str(photos), "--mask", str(photos / "masks"),
                 "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.png")) == ["000.png", "001.png"]
    assert not (tmp_path / "out" / "masks").exists()


def test_a_mask_folder_mirroring_the_inputs_matches_by_place(trained, tmp_path, capsys):
    from img2img.cli import main

    source = read_image(trained / "data" / "val" / "000.png")
    for seed, sub in enumerate(("x", "y")):  # x/000.png and y/000.png, each with its own mask
        save_png(tmp_path / "in" / sub / "000.png", (source * 255).round().astype(np.uint8))
        _hole_png(tmp_path / "masks" / sub / "000.png", seed)
    assert main(["predict", str(trained / "run"), str(tmp_path / "in"), "--mask", str(tmp_path / "masks"),
                 "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    for seed, sub in enumerate(("x", "y")):
        filled, known = read_image(tmp_path / "out" / sub / "000.png"), make_mask(seed, 40, 40) == 0
        assert np.array_equal(filled[known], source[known])
        assert not np.array_equal(filled[~known], source[~known])
    _hole_png(tmp_path / "masks" / "x" / "000.jpg", 2)  # two masks at one place: which one?
    assert main(["predict", str(trained / "run"), str(tmp_path / "in"), "--mask", str(tmp_path / "masks"),
                 "--out", str(tmp_path / "out2")]) == 2
    assert "2 masks for" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def test_onnx_takes_the_mask_as_a_second_input(trained, tmp_path):
    import onnxruntime as ort

    from img2img.inference import load

    out = subprocess.run([sys.executable, "-m", "img2img", "export", str(trained / "run"), "--format", "onnx",
                          "--out", str(tmp_path / "m.onnx")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert [i.name for i in session.get_inputs()] == ["input", "mask"]
    image = read_image(trained / "data" / "val" / "000.png")
    mask = make_mask(3, 40, 40)
    result = session.run(None, {"input": image.transpose(2, 0, 1)[None].astype(np.float32),
                                "mask": mask[None, None]})[0][0].transpose(1, 2, 0)
    expected = load(str(trained / "run"), device="cpu")(image, mask=mask)
    assert np.abs(result - expected).max() < 1e-5
    # Known pixels: the input's (to float rounding of the [-1, 1] round trip; exact in 8-bit levels).
    assert np.abs(result[mask == 0] - image[mask == 0]).max() < 1e-6
    assert np.array_equal(np.round(result[mask == 0] * 255), np.round(image[mask == 0] * 255))


def test_demo_runs_and_reports_telea(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "img2img", "demo", "inpaint", "--steps", "2", "--out",
                           str(tmp_path / "runs"), "--data", str(tmp_path / "sample")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "demo 'inpaint' finished" in proc.stdout and "psnr_hole" in proc.stdout
    assert "baseline" in proc.stdout
    assert "predict with  : img2img predict " in proc.stdout
    assert "IMAGE_OR_FOLDER --out predictions --mask FILE_OR_FOLDER" in proc.stdout


def test_val_masks_of_the_files_size_are_named_against_the_preprocessed_size(trained, tmp_path):
    """task_options.val_masks: masks have the image *files'* size (40x40); a cropping
    preprocess gives the images another size, and the message says so and how to score whole images."""
    masks = tmp_path / "masks"
    for image in sorted((trained / "data" / "val").glob("*.png")):
        hole = np.zeros((40, 40), np.uint8)
        hole[10:20, 10:20] = 255
        save_png(masks / image.name, np.repeat(hole[..., None], 3, axis=2))
    task = build_task(config_for(trained, f"task_options.val_masks={masks}"))
    with pytest.raises(UserError, match=r"is 40x40 but its image .* is 32x32 after data.preprocess=resize_and_crop "
                                        r"\(set data.preprocess=none to score whole images"):
        task.build_dataset("val")[0]
    whole = build_task(config_for(trained, f"task_options.val_masks={masks}", "data.preprocess=none"))
    sample = whole.build_dataset("val")[0]
    assert sample["mask"].shape == (1, 40, 40) and sample["mask"].sum().item() == 100
