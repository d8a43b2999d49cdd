"""The exported model directory: round trip, resolution from run dirs, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from img2img.config import load_config
from img2img.errors import UserError
from img2img.files import save_tensors
from img2img.model_io import load_model, resolve_model_dir, save_model
from img2img.tasks import build_generators

TINY = ["task=pix2pix", "model.generator.name=unet", "model.generator.num_downs=3", "model.generator.ngf=4"]


def test_round_trip_is_bit_exact(tmp_path):
    config = load_config(None, TINY)
    generators = build_generators(config)
    save_model(tmp_path / "m", config, generators)
    loaded_config, loaded = load_model(tmp_path / "m")
    assert loaded_config == config
    for key, value in generators["G"].state_dict().items():
        assert torch.equal(value, loaded["G"].state_dict()[key])
    assert not loaded["G"].training


def test_run_and_checkpoint_directories_resolve(tmp_path):
    config = load_config(None, TINY)
    generators = build_generators(config)
    save_model(tmp_path / "run" / "checkpoints" / "step-000002" / "model", config, generators)
    save_model(tmp_path / "run" / "checkpoints" / "step-000010" / "model", config, generators)
    assert resolve_model_dir(tmp_path / "run").parent.name == "step-000010"
    save_model(tmp_path / "run" / "model", config, generators)
    assert resolve_model_dir(tmp_path / "run") == tmp_path / "run" / "model"


def test_replacing_a_model_is_allowed_but_nothing_else(tmp_path):
    config = load_config(None, TINY)
    generators = build_generators(config)
    save_model(tmp_path / "m", config, generators)
    save_model(tmp_path / "m", config, generators)  # replaces the old model
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(UserError, match="not an img2img model directory; refusing to replace it"):
        save_model(precious, config, generators)
    assert (precious / "thesis.tex").read_text() == "years of work"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="exists and is a file"):
        save_model(tmp_path / "file", config, generators)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="is not a model"):
        load_model(tmp_path / "empty")
    config = load_config(None, TINY)
    save_model(tmp_path / "m", config, build_generators(config))
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["model"]["generator"]["ngf"] = 8  # no longer fits the weights
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="do not fit the network"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="cannot read weights"):
        load_model(tmp_path / "m")


def test_newest_checkpoint_is_found_numerically(tmp_path):
    config = load_config(None, TINY)
    generators = build_generators(config)
    for step in ("999999", "1000000"):
        save_model(tmp_path / "run" / "checkpoints" / f"step-{step}" / "model", config, generators)
    (tmp_path / "run" / "checkpoints" / ".tmp-step-2000000").mkdir()
    assert resolve_model_dir(tmp_path / "run").parent.name == "step-1000000"


def test_write_failures_are_os_errors_and_leave_nothing_half_written(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError) as err:  # safetensors' own error, as the OSError it is
        save_tensors({"a": torch.zeros(3)}, tmp_path / "file" / "w.safetensors")
    assert err.value.errno == 20 and err.value.filename == str(tmp_path / "file" / "w.safetensors")

    config = load_config(None, ["task=pix2pix", "model.generator.name=unet", "model.generator.num_downs=2", "model.generator.ngf=4"])
    generators = build_generators(config)
    save_model(tmp_path / "m", config, generators)
    before = (tmp_path / "m" / "model.safetensors").read_bytes()

    # The disk fills up while the new weights are written (injected: CI has no small disk).
    import img2img.files as files

    def disk_full(tensors, path, metadata=None):
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(files, "save_tensors", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_model(tmp_path / "m", config, generators)
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "m"]
