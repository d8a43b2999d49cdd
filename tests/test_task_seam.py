"""The proof of the seam: a method defined here, in the test file, with no module of
img2img changed for it, trains, resumes bit-exactly, evaluates, predicts and exports
through the public API and the command line like the built-in ones.

The method is a tiny denoising GAN: the clean photo is the target, the input is the photo
with Gaussian noise of ``task_options.sigma``; its own baseline is the noisy input itself.
The command line finds it through ``IMG2IMG_PLUGINS=tests.test_task_seam``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import img2img
from img2img.config import load_config
from img2img.data import splits
from img2img.engine import Trainer
from img2img.errors import ConfigError
from img2img.evaluate import evaluate
from img2img.nets.contract import forward_padded
from img2img.tasks import Task, build_task, register, task_names
from tests.conftest import REPO
from tests.tiny import make_task_data, save_png, smooth_image


@dataclasses.dataclass
class DenoiseOptions:
    sigma: float = dataclasses.field(default=0.3, metadata={"min": 0.0, "max": 2.0})


@register
class DenoiseTask(Task):
    """noisy -> clean: a conditional GAN with an L1 term on photos with added noise."""

    name = "denoise_seam"
    Options = DenoiseOptions
    d_first = True
    image_keys = ("B",)
    baseline = "noisy input"
    visual_labels = ("noisy", "denoised", "clean")

    def collect_split(self, split, full_decode=False):
        return splits.find_single(self.config, split, full_decode)

    def make_dataset(self, found):
        from img2img.data.datasets import PhotoDataset

        d = self.config.data
        return PhotoDataset(self._val_cut(found), preprocess=d.preprocess, load_size=d.load_size,
                            crop_size=d.crop_size, flip=d.flip, train=found.split == "train")

    def add_noise(self, clean, generator=None):
        noise = torch.randn(clean.shape, generator=generator, device="cpu").to(clean.device)
        return (clean + self.options.sigma * noise).clamp(-1, 1)

    def prepare(self, batch, device, channels_last=False):
        batch = super().prepare(batch, device, channels_last)
        return {**batch, "A": self.add_noise(batch["B"])}  # the training RNG, saved with checkpoints

    def forward(self, G, batch):
        return {"fake_B": G["G"](batch["A"])}

    def discriminator_loss(self, D, batch, out, pool):
        real = torch.cat([batch["A"], batch["B"]], dim=1)
        fake = torch.cat([batch["A"], out["fake_B"]], dim=1)
        return self.d_terms(D["D"], real, fake, "D")

    def generator_loss(self, D, batch, out):
        terms = {"G_L1": self.config.loss.pixel_weight * self.pixel(out["fake_B"], batch["B"])}
        if "D" in D:
            terms["G_GAN"] = self.g_gan_term(D["D"], torch.cat([batch["A"], out["fake_B"]], dim=1))
        return terms

    def visuals(self, batch, out):
        return [batch["A"], out["fake_B"], batch["B"]]

    def eval_batch(self, dataset, index, device):
        """The same noise for image ``index`` at every evaluation."""
        sample = dataset[index]
        clean = sample["B"][None].to(device)
        noisy = self.add_noise(clean, torch.Generator().manual_seed(index))
        return {"A": noisy, "B": clean}, sample["B_path"]

    def evaluate_batch(self, G, batch):
        unit = lambda x: ((x.float() + 1) / 2).clamp(0, 1)  # noqa: E731
        return {"pred": unit(forward_padded(G["G"], batch["A"])), "target": unit(batch["B"]),
                "baseline": unit(batch["A"])}


TINY = ["task=denoise_seam", "task_options.sigma=0.25", "model.generator.name=unet",
        "model.generator.num_downs=3", "model.generator.ngf=8", "model.discriminator.ndf=8",
        "model.discriminator.n_layers=2", "data.preprocess=crop", "data.crop_size=32",
        "train.batch_size=2", "train.save_every=2", "data.num_workers=0", "log.every=1",
        "log.images_every=2", "log.progress=false", "device=cpu", "seed=3", "eval.every=2",
        "eval.metric=psnr", "train.scheduler=constant"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_task_data(tmp_path_factory.mktemp("seam") / "photos", "colorization", n_train=4, n_val=2)


def cli(*args, cwd=None):
    env = {**os.environ, "IMG2IMG_PLUGINS": "tests.test_task_seam", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "img2img", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd or REPO, timeout=300)


def test_the_registry_knows_the_new_task_and_checks_its_options():
    assert "denoise_seam" in task_names()
    task = build_task(load_config(None, TINY))
    assert task.options.sigma == 0.25 and task.channels() == (3, 3)
    with pytest.raises(ConfigError, match=r"task_options.sigma: invalid value 5.0; must be <= 2.0"):
        build_task(load_config(None, [*TINY, "task_options.sigma=5"]))
    with pytest.raises(ConfigError, match="unknown config key 'task_options.sigm'; did you mean task_options.sigma"):
        build_task(load_config(None, [*TINY, "task_options.sigm=1"]))
    with pytest.raises(ConfigError, match="unknown task 'denoise_sea'; did you mean 'denoise_seam'"):
        build_task(load_config(None, [*TINY, "task=denoise_sea"]))


def test_a_task_defined_outside_img2img_trains_resumes_evaluates_predicts_and_exports(photos, tmp_path):
    # train 4 steps at once, and 2 + 2 with a resume: bit-identical
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    Trainer(load_config(None, [*TINY, f"data.root={photos}", f"output_dir={whole}", "train.max_steps=4"])).fit()
    Trainer(load_config(None, [*TINY, f"data.root={photos}", f"output_dir={halves}", "train.max_steps=2"])).fit()
    trainer = Trainer(load_config(None, [*TINY, f"data.root={photos}", f"output_dir={halves}",
                                         "train.max_steps=4"]), resume="auto")
    summary = trainer.fit()
    assert summary["step"] == 4 and summary["best"]["metric"] == "psnr"
    a, b = load_file(str(whole / "model" / "model.safetensors")), load_file(str(halves / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (whole / "model_best" / "config.json").is_file() and (whole / "samples" / "step-000002.png").is_file()

    # evaluation during training used the task's own baseline, and beat nothing it was not told to
    logged = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    scored = [row for row in logged if "eval/psnr" in row]
    assert scored and all("eval_baseline/psnr" in row for row in scored)

    # the public API: load, evaluate, predict
    translator = img2img.load(whole, device="cpu")
    task = build_task(translator.config)
    dataset = task.build_dataset("val")
    result = evaluate(task, translator.generators, dataset, torch.device("cpu"))
    assert result["images"] == 2 and set(result["model"]) >= {"psnr", "ssim", "psnr_y", "ssim_y"}
    assert result["baseline"]["psnr"] > 5
    image = smooth_image(np.random.default_rng(0), 37, 29)
    out = translator(image)
    assert out.shape == image.shape and out.dtype == np.uint8


def test_the_command_line_runs_a_plugin_task(photos, tmp_path):
    run = tmp_path / "run"
    recipe = tmp_path / "denoise.yaml"
    lines = [f"{key}: {value}" for key, value in (o.split("=", 1) for o in TINY if "." not in o.split("=")[0])]
    recipe.write_text("\n".join(lines) + "\n")
    args = [o for o in TINY if "." in o.split("=")[0]]
    trained = cli("train", recipe, *args, f"data.root={photos}", f"output_dir={run}", "train.max_steps=2")
    assert trained.returncode == 0, trained.stderr[-2000:]
    summary = cli("summary", recipe, *args, "--json")
    assert summary.returncode == 0 and set(json.loads(summary.stdout)) == {"G", "D"}
    check = cli("data", "check", recipe, *args, f"data.root={photos}")
    assert check.returncode == 0 and "train:       4 usable samples" in check.stdout, check.stdout

    evaluated = cli("eval", run, "--data", photos / "val", "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    result = json.loads(evaluated.stdout)
    assert result["task"] == "denoise_seam" and result["baseline_name"] == "noisy input" and result["images"] == 2

    src = tmp_path / "in"
    save_png(src / "a.png", smooth_image(np.random.default_rng(1), 30, 26))
    predicted = cli("predict", run, src, "--out", tmp_path / "pred")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert (tmp_path / "pred" / "a.png").is_file()

    exported = cli("export", run, "--format", "onnx", "--out", tmp_path / "d.onnx")
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert "ONNX Runtime check" in exported.stdout and (tmp_path / "d.onnx").is_file()

    # without the plugin the model's task is unknown, and the message says what to do
    env = {k: v for k, v in os.environ.items() if k != "IMG2IMG_PLUGINS"}
    bare = subprocess.run([sys.executable, "-m", "img2img", "predict", str(run), str(src), "--out",
                           str(tmp_path / "p2")], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert bare.returncode == 2 and "unknown task 'denoise_seam'" in bare.stderr and "IMG2IMG_PLUGINS" in bare.stderr
    assert "Traceback" not in bare.stderr


def test_a_task_name_is_registered_once():
    class Impostor(Task):  # same class name, another module's: not the registered one
        name = "denoise_seam"

    Impostor.__module__, Impostor.__qualname__ = "another.plugin", DenoiseTask.__qualname__
    with pytest.raises(ValueError, match="already registered by tests.test_task_seam.DenoiseTask"):
        register(Impostor)
    with pytest.raises(ValueError, match="taken by a built-in task"):
        register(type("Other", (Task,), {"name": "pix2pix", "__module__": "elsewhere"}))
    assert register(DenoiseTask) is DenoiseTask  # the same class again is fine


def test_an_unimportable_plugin_is_one_clear_error(tmp_path):
    env = {**os.environ, "IMG2IMG_PLUGINS": "no_such_module_here"}
    proc = subprocess.run([sys.executable, "-m", "img2img", "summary", str(REPO / "configs" / "demo" / "paired.yaml"),
                           "task=other"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "IMG2IMG_PLUGINS: cannot import the plugin module 'no_such_module_here'" in proc.stderr
    assert "Traceback" not in proc.stderr
