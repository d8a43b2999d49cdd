"""The realesrgan task: LR made on the device from HR photos, a GAN stage with the U-Net
discriminator, bit-exact resume, evaluation on held-out images degraded the same way
every time, real LR files, ONNX export and tiled prediction of the result."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from img2img.cli import main
from img2img.config import load_config, save_config
from img2img.engine import Trainer
from img2img.errors import ConfigError
from img2img.evaluate import evaluate
from img2img.inference import load
from img2img.tasks import build_task
from tests.tiny import make_task_data, save_png, smooth_image

TINY = [
    "task=realesrgan", "model.generator.name=srvgg_compact", "model.generator.ngf=8",
    "model.generator.n_blocks=2", "data.scale=2", "data.gt_size=32", "task_options.crop_pad_size=40",
    "train.batch_size=2", "train.save_every=2", "train.scheduler=constant", "train.betas=[0.9,0.99]",
    "data.num_workers=0", "log.every=1", "log.images_every=0", "log.progress=false", "device=cpu",
    "seed=3", "eval.metric=psnr", "loss.pixel_weight=1",
]
GAN = [
    "model.discriminator.name=unet_sn", "model.discriminator.ndf=8", "loss.gan_mode=vanilla",
    "loss.gan_weight=0.1", "loss.d_loss_scale=1", "loss.perceptual_weight=1", "loss.vgg_weights=none",
    "loss.perceptual_layers={conv1_2: 0.1, conv2_2: 0.1, conv3_4: 1, conv4_4: 1, conv5_4: 1}",
    "train.ema=0.9",
]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = make_task_data(tmp_path_factory.mktemp("realsr_data"), "realesrgan", n_train=4, n_val=2, size=40)
    save_png(root / "train" / "small.png", smooth_image(np.random.default_rng(5), 36, 44))  # padded to 40
    return root


def _config(data: Path, out: Path, *extra: str):
    return load_config(None, [*TINY, f"data.root={data}", f"output_dir={out}", *extra])


def test_a_sample_is_a_crop_with_its_seed_and_prepare_degrades_it(photos, tmp_path):
    task = build_task(_config(photos, tmp_path / "run"))
    train = task.build_dataset("train")
    sample = train[(4, 123)]
    assert sample["B"].shape == (3, 40, 40) and sample["seed"] == 123
    batch = torch.utils.data.default_collate([train[(i, 7 + i)] for i in range(3)])
    prepared = task.prepare(batch, torch.device("cpu"))
    assert prepared["A"].shape == (3, 3, 16, 16) and prepared["B"].shape == (3, 3, 32, 32)
    assert not torch.equal(prepared["B"], prepared["B_usm"])  # the sharpened target
    again = task.prepare(batch, torch.device("cpu"))
    assert all(torch.equal(prepared[k], again[k]) for k in ("A", "B", "B_usm"))


def test_gan_stage_resumes_bit_identically_and_evaluates_against_bicubic(photos, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    Trainer(_config(photos, straight, *GAN, "train.max_steps=4", "eval.every=2")).fit()
    Trainer(_config(photos, resumed, *GAN, "train.max_steps=2", "eval.every=2")).fit()
    trainer = Trainer(_config(photos, resumed, *GAN, "train.max_steps=4", "eval.every=2"), resume="auto")
    summary = trainer.fit()
    assert summary["step"] == 4
    a = load_file(str(straight / "model" / "model.safetensors"))
    b = load_file(str(resumed / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            for run in (straight, resumed)]
    losses = [{r["step"]: r["loss/D_real"] for r in log if "loss/D_real" in r} for log in logs]
    assert losses[0] == losses[1] and set(losses[0]) == {1, 2, 3, 4}
    evals = [r for r in logs[0] if "eval/psnr" in r]
    assert evals and "eval_baseline/psnr" in evals[-1]
    # The held-out images are degraded from fixed seeds: evaluating twice gives the same numbers.
    val = trainer.task.build_dataset("val")
    again = [evaluate(trainer.task, trainer.nets.for_eval(), val, trainer.device, crop_border=2) for _ in range(2)]
    assert again[0]["model"] == again[1]["model"] and again[0]["baseline"]["psnr"] > 10


def test_eval_with_real_lr_files_does_not_degrade(photos, tmp_path):
    config = _config(photos, tmp_path / "run", "train.max_steps=1")
    lr_dir = tmp_path / "lr"
    for path in sorted((photos / "val").glob("*.png")):
        hr = np.array(Image.open(path))
        save_png(lr_dir / path.name, hr[::2, ::2])
    task = build_task(config)
    eval_task = build_task(task.eval_data(str(photos / "val"), str(lr_dir)))
    dataset = eval_task.build_dataset("val")
    batch, _ = eval_task.eval_batch(dataset, 0, torch.device("cpu"))
    lr = np.array(Image.open(sorted(lr_dir.glob("*.png"))[0]))
    expected = torch.from_numpy(lr).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(batch["A"][0], expected, atol=1e-6, rtol=0)
    # Training makes its own LR: LR files there are a mistake, said before any work.
    with pytest.raises(ConfigError, match="data.lr_root: the realesrgan task makes its training LR"):
        Trainer(_config(photos, tmp_path / "run2", f"data.lr_root={lr_dir}"))


def test_the_model_exports_to_onnx_and_predicts_tiled(photos, tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(_config(photos, run, "train.max_steps=2", "mixed_precision=bf16")).fit()  # bf16 autocast
    out = tmp_path / "model.onnx"
    assert main(["export", str(run), "--format", "onnx-raw", "--out", str(out)]) == 0
    assert "ONNX Runtime check" in capsys.readouterr().out
    translator = load(run, device="cpu")
    x = np.random.default_rng(0).random((1, 3, 24, 20), dtype=np.float32) * 2 - 1
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.inference_mode():
        torch_out = translator.net(torch.from_numpy(x)).numpy()
    assert onnx_out.shape == (1, 3, 48, 40)
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-4)
    image = (np.random.default_rng(1).random((70, 90, 3)) * 255).astype(np.uint8)
    whole = translator(image)
    tiled = load(run, device="cpu", tile=32, tile_overlap=12)(image)
    assert whole.shape == tiled.shape == (140, 180, 3)
    diff = np.abs(whole.astype(np.int16) - tiled.astype(np.int16))
    assert diff.mean() < 1.0


DRIVER = r"""
import json, sys, torch
from img2img.config import load_config, save_config
from img2img.engine import Trainer
from img2img.errors import ConfigError
cfg = load_config(sys.argv[1])
trainer = Trainer(cfg)
seeds, prepare = [], trainer.task.prepare
def recording(batch, device, channels_last=False):
    seeds.extend(int(s) for s in batch["seed"])
    return prepare(batch, device, channels_last)
trainer.task.prepare = recording
trainer.fit()
torch.save({k: v.cpu() for k, v in trainer.nets.G["G"].state_dict().items()}, f"{cfg.output_dir}/rank{trainer.rank}.pt")
with open(f"{cfg.output_dir}/rank{trainer.rank}.json", "w") as f:
    json.dump(seeds, f)
"""


def test_two_processes_degrade_their_own_samples_and_stay_in_step(photos, tmp_path):
    run = tmp_path / "run"
    save_config(_config(photos, run, *GAN[:4], "train.max_steps=2", "train.batch_size=1"), tmp_path / "c.yaml")
    (tmp_path / "driver.py").write_text(DRIVER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
           str(tmp_path / "driver.py"), str(tmp_path / "c.yaml")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-4000:]
    w0, w1 = (torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    s0, s1 = (json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1))
    assert len(s0) == len(s1) == 2 and set(s0).isdisjoint(s1)


def test_realsr_demo_trains_and_reports_the_model_beside_bicubic(tmp_path, capsys):
    assert main(["demo", "realsr", "--steps", "2", "--out", str(tmp_path / "runs"), "--data",
                 str(tmp_path / "sample"), "log.wandb=off", "data.num_workers=0"]) == 0
    out = capsys.readouterr().out
    assert "demo 'realsr' finished" in out and "(2 steps)" in out and "held-out images: 14" in out
    found = re.search(r"psnr\s+model (\d+\.\d+)\s+baseline (\d+\.\d+)", out)
    model, baseline = float(found[1]), float(found[2])
    assert 10 < model < 50 and 10 < baseline < 50
    assert (tmp_path / "runs" / "realsr" / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize("generator", [
    ["model.generator.name=rrdbnet", "model.generator.ngf=8", "model.generator.n_blocks=1",
     "model.generator.growth=4"],
    ["model.generator.name=srvgg_compact"],
])
def test_x1_restores_without_upscaling(generator, photos, tmp_path):
    """data.scale=1: Real-ESRGAN's x1 restoration models (rrdbnet pixel-unshuffles by 4;
    the compact net's pixel shuffle is by 1); the LR keeps the HR's size."""
    run = tmp_path / "run"
    trainer = Trainer(_config(photos, run, "data.scale=1", "train.max_steps=2", *generator))
    assert trainer.nets.G["G"].scale == 1
    trainer.fit()
    image = (np.random.default_rng(2).random((24, 36, 3)) * 255).astype(np.uint8)
    assert load(run, device="cpu")(image).shape == (24, 36, 3)
    with pytest.raises(ConfigError, match="data.scale: SRResNet upsamples by 2, 3 or 4, got 1"):
        Trainer(_config(photos, tmp_path / "run2", "data.scale=1", "model.generator.name=srresnet"))
