"""``img2img export RUN --format hub``: a model folder with a model card, ready for
``huggingface-cli upload``, that ``img2img.load`` reads offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

import img2img
from img2img.cli import main
from img2img.config import load_config
from img2img.engine import Trainer
from img2img.hub import CARD, SAMPLES
from tests.tiny import make_task_data, tiny_overrides


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    data = make_task_data(root / "data", "srgan", n_train=2, n_val=2, size=32)
    config = load_config(None, tiny_overrides("srgan", data, root / "run", "train.max_steps=2", "eval.every=2",
                                              "log.images_every=2", "model.discriminator.name=none"))
    Trainer(config).fit()
    return root / "run"


def test_hub_folder_card_fields_and_offline_load(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "hub"
    assert main(["export", str(run), "--format", "hub", "--out", str(out)]) == 0
    assert "huggingface-cli upload OWNER/NAME" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", CARD, SAMPLES, ".img2img.json"}
    card = (out / CARD).read_text(encoding="utf-8")
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "img2img" and meta["pipeline_tag"] == "image-to-image"
    assert "license" in meta and meta["license"] is None  # left for the user, with a comment saying so
    assert "fill in" in front and "srgan" in meta["tags"]
    # the evaluation numbers are the run's last evaluation
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if "eval/psnr" in line][-1]
    assert f"| model | {last['eval/psnr']:.4f} |" in body and "baseline (bicubic)" in body
    assert f"at step {last['step']}" in body
    # the recipe is the run's config, and the sample grid the run's newest
    recipe = yaml.safe_load(body.split("```yaml\n")[1].split("```")[0])
    assert recipe == yaml.safe_load((run / "config.yaml").read_text())
    assert (out / SAMPLES).read_bytes() == sorted((run / "samples").glob("step-*.png"))[-1].read_bytes()
    assert "img2img.load(\"hf://OWNER/NAME\")" in body and f"]({SAMPLES})" in body
    # it loads offline and predicts exactly as the run's model
    x = np.random.default_rng(0).random((20, 24, 3)).astype(np.float32)
    assert np.array_equal(img2img.load(out, device="cpu")(x), img2img.load(run, device="cpu")(x))


def test_hub_folder_follows_the_ownership_rule(run, tmp_path, capsys):
    out = tmp_path / "hub"
    assert main(["export", str(run), "--format", "hub", "--out", str(out)]) == 0
    assert main(["export", str(run), "--format", "hub", "--out", str(out)]) == 0  # its own: replaced
    (out / "notes.txt").write_text("mine")
    assert main(["export", str(run), "--format", "hub", "--out", str(out)]) == 2
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").read_text() == "mine"
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "thesis.txt").write_text("keep me")
    assert main(["export", str(run), "--format", "hub", "--out", str(precious)]) == 2
    assert (precious / "thesis.txt").read_text() == "keep me" and len(list(precious.iterdir())) == 1


def test_hub_folder_without_run_samples_gets_a_photo_grid(tmp_path, capsys):
    from img2img.model_io import save_model
    from img2img.tasks import build_generators

    config = load_config(None, ["task=colorization", "model.generator.name=unet", "model.generator.num_downs=3",
                                "model.generator.ngf=8"])
    torch.manual_seed(0)
    model = save_model(tmp_path / "model", config, build_generators(config))
    assert main(["export", str(model), "--format", "hub", "--out", str(tmp_path / "hub")]) == 0
    card = (tmp_path / "hub" / CARD).read_text()
    assert "No evaluation was logged" in card
    from img2img.data.io import read_image

    grid = read_image(tmp_path / "hub" / SAMPLES)
    assert grid.shape == (3 * 96, 2 * 96, 3)  # three photos: input | output
    capsys.readouterr()
