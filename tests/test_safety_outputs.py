"""Nothing img2img did not write is deleted or overwritten (issue 12): every command that
replaces, clears or writes into a folder either proves the folder is its own or refuses
with one line naming it, leaving every byte of the user's files as it was."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from img2img import ownership
from img2img.cli import main
from img2img.config import load_config
from img2img.engine import Trainer, list_checkpoints
from img2img.errors import UserError
from img2img.model_io import save_model
from img2img.tasks import build_generators
from tests.conftest import REPO
from tests.tiny import save_png, smooth_image, tiny_overrides

TINY_MODEL = ["task=pix2pix", "model.generator.name=unet", "model.generator.num_downs=3", "model.generator.ngf=4"]


def snapshot(folder: Path) -> dict[str, str]:
    """Every path below ``folder`` with the SHA-256 of its bytes ('dir' for folders)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
            else "dir" for p in sorted(folder.rglob("*"))}


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "img2img", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def assert_refused(proc_or_code, err: str, folder: Path, hint: str) -> None:
    """Exit code 2, one line, no traceback, naming the folder and what to do."""
    code = proc_or_code.returncode if hasattr(proc_or_code, "returncode") else proc_or_code
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("img2img: error:")]
    assert len(lines) == 1, err
    assert str(folder) in lines[0] and hint in lines[0], lines[0]


def user_project(folder: Path) -> Path:
    """A web project folder that happens to hold a config.json."""
    (folder / "src").mkdir(parents=True)
    (folder / "config.json").write_text('{"name": "my-site", "port": 8080}\n')
    (folder / "notes.md").write_text("years of work\n")
    (folder / "src" / "app.js").write_text("console.log('hi')\n")
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    config = load_config(None, TINY_MODEL)
    return save_model(tmp_path_factory.mktemp("model") / "m", config, build_generators(config))


# --------------------------------------------------------------------------- model folders


def test_export_refuses_a_folder_that_merely_holds_a_config_json(model_dir, tmp_path):
    project = user_project(tmp_path / "site")
    before = snapshot(project)
    proc = cli("export", str(model_dir), "--format", "safetensors", "--out", str(project))
    assert_refused(proc, proc.stderr, project, "choose another --out, or remove it yourself")
    assert snapshot(project) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no temporary folder left

    from img2img.inference import load

    with pytest.raises(UserError, match="remove it yourself") as err:
        load(model_dir).save_pretrained(project)
    assert str(project) in str(err.value)
    assert snapshot(project) == before


def test_a_model_folder_with_a_file_added_is_not_replaced(model_dir, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["export", str(model_dir), "--format", "safetensors", "--out", str(out)]) == 0
    (out / "README.md").write_text("my notes on this model\n")
    before = snapshot(out)
    code = main(["export", str(model_dir), "--format", "safetensors", "--out", str(out)])
    err = capsys.readouterr().err
    assert_refused(code, err, out, "choose another --out, or remove it yourself")
    assert "README.md" in err
    assert snapshot(out) == before


def test_re_export_replaces_its_own_model_folder(model_dir, tmp_path, capsys):
    out = tmp_path / "m"
    for _ in range(2):
        assert main(["export", str(model_dir), "--format", "safetensors", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no .m.tmp / .m.old left
    # a crash left the temporary folder of an earlier export: it is a model folder, so it goes
    (tmp_path / ".m.tmp").mkdir()
    (tmp_path / ".m.tmp" / "config.json").write_text((out / "config.json").read_text())
    assert main(["export", str(model_dir), "--format", "safetensors", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_the_trainers_model_exports_refuse_folders_it_did_not_write(task_data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    ownership.mark(run, "run", ownership.RUN_ENTRIES, ownership.RUN_PATTERNS)
    user_project(run / "model_best")
    before = snapshot(run / "model_best")
    config = load_config(None, tiny_overrides("pix2pix", task_data["pix2pix"], run))
    with pytest.raises(UserError, match="choose another output_dir, or remove it yourself") as err:
        Trainer(config)
    assert str(run / "model_best") in str(err.value)
    assert snapshot(run / "model_best") == before


# --------------------------------------------------------------------------- sample data


def test_data_sample_never_clears_a_folder_holding_the_users_images(tmp_path):
    data = tmp_path / "photos"
    rng = np.random.default_rng(0)
    save_png(data / "sr" / "train" / "holiday.png", smooth_image(rng, 16, 16))
    (data / "LICENSES.md").write_text("my licences\n")
    before = snapshot(data)
    proc = cli("data", "sample", "--out", str(data))
    assert_refused(proc, proc.stderr, data, "remove it yourself")
    assert "sr" in proc.stderr
    assert snapshot(data) == before

    # the demo builds its data the same way: the same refusal, before any training
    proc = cli("demo", "sr", "--steps", "1", "--data", str(data), "--out", str(tmp_path / "runs"))
    assert_refused(proc, proc.stderr, data, "remove it yourself")
    assert snapshot(data) == before and not (tmp_path / "runs").exists()


def test_a_half_built_sample_folder_with_a_user_file_inside_is_not_cleared(tmp_path, monkeypatch):
    import img2img.data.sample as sample

    data = tmp_path / "sample"
    real_write = sample.write_image
    calls = []

    def crash_after_three(path, image, **kw):  # the build is killed part-way
        calls.append(path)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return real_write(path, image, **kw)

    monkeypatch.setattr(sample, "write_image", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        sample.build_sample_data(data)
    monkeypatch.setattr(sample, "write_image", real_write)
    assert not (data / ".complete").exists() and (data / ownership.MARKER).is_file()
    mine = calls[0].parent / "mine.png"
    save_png(mine, smooth_image(np.random.default_rng(1), 16, 16))
    before = snapshot(data)
    with pytest.raises(UserError, match="refusing to clear it") as err:
        sample.build_sample_data(data)
    assert str(data) in str(err.value) and mine.name in str(err.value)
    assert snapshot(data) == before

    # without the user's file, the half-built folder is its own: rebuilt, what is beside kept
    mine.unlink()
    (data / "README.txt").write_text("beside the data\n")
    sample.build_sample_data(data)
    assert (data / ".complete").is_file() and (data / "README.txt").read_text() == "beside the data\n"
    listed = set(json.loads((data / ownership.MARKER).read_text())["entries"])
    assert {p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()} == listed | {
        ownership.MARKER, "README.txt"}


# --------------------------------------------------------------------------- demo runs


def test_demo_never_removes_a_folder_that_is_not_its_own_run(task_data, tmp_path):
    from img2img.demo import _fresh_run_dir

    # a folder of the user's that holds some config.yaml
    mine = tmp_path / "runs" / "sr"
    mine.mkdir(parents=True)
    (mine / "config.yaml").write_text("task: srgan\n")
    (mine / "notes.txt").write_text("keep\n")
    before = snapshot(mine)
    with pytest.raises(UserError, match="pass another --out, or remove it yourself") as err:
        _fresh_run_dir(mine)
    assert str(mine) in str(err.value)
    assert snapshot(mine) == before

    # a real run (img2img's), with a file of the user's added: not removed either
    run = tmp_path / "run"
    Trainer(load_config(None, tiny_overrides("pix2pix", task_data["pix2pix"], run, "train.max_steps=1"))).fit()
    (run / "checkpoints" / "step-000001" / "my_analysis.ipynb").write_text("{}")
    before = snapshot(run)
    with pytest.raises(UserError, match="my_analysis.ipynb"):
        _fresh_run_dir(run)
    assert snapshot(run) == before
    (run / "checkpoints" / "step-000001" / "my_analysis.ipynb").unlink()
    _fresh_run_dir(run)  # its own run, as it wrote it: replaced
    assert not run.exists()


def test_demo_cli_refuses_a_foreign_run_folder(tmp_path):
    sample_data = tmp_path / "sample"
    from img2img.data.sample import build_sample_data

    build_sample_data(sample_data)
    mine = tmp_path / "runs" / "colorize"
    user_project(mine)
    (mine / "config.yaml").write_text("task: colorization\n")
    before = snapshot(mine)
    proc = cli("demo", "colorize", "--steps", "1", "--out", str(tmp_path / "runs"), "--data", str(sample_data))
    assert_refused(proc, proc.stderr, mine, "pass another --out, or remove it yourself")
    assert snapshot(mine) == before


# --------------------------------------------------------------------------- training


def test_train_refuses_an_output_dir_that_is_not_a_run(task_data, tmp_path):
    project = user_project(tmp_path / "project")
    (project / "config.yaml").write_text("my: settings\n")
    (project / "metrics.jsonl").write_text('{"my": "measurements"}\n')
    before = snapshot(project)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("task: pix2pix\n")
    proc = cli("train", str(cfg), *tiny_overrides("pix2pix", task_data["pix2pix"], project))
    assert_refused(proc, proc.stderr, project, "choose another output_dir, or remove it yourself")
    assert snapshot(project) == before


def test_a_run_written_before_manifests_still_resumes(task_data, tmp_path):
    run = tmp_path / "run"
    Trainer(load_config(None, tiny_overrides("pix2pix", task_data["pix2pix"], run, "train.save_every=2",
                                             "train.max_steps=2"))).fit()
    (run / ownership.MARKER).unlink()  # as the previous version left it: config.yaml is the proof
    for ckpt in list_checkpoints(run):
        (ckpt / ownership.MARKER).unlink()
    trainer = Trainer(load_config(None, tiny_overrides("pix2pix", task_data["pix2pix"], run, "train.save_every=2",
                                                       "train.max_steps=4", "train.keep_last=1")), resume="auto")
    assert trainer.fit()["step"] == 4
    assert [p.name for p in list_checkpoints(run)] == ["step-000004"]  # the old one, proven, pruned

    # the demo replaces such a run too (its checkpoints proven by their trainer_state.json)
    from img2img.demo import _fresh_run_dir

    for marker in run.rglob(ownership.MARKER):
        marker.unlink()
    _fresh_run_dir(run)
    assert not run.exists()


def test_pruning_keeps_checkpoint_folders_it_cannot_prove_it_wrote(task_data, tmp_path):
    run = tmp_path / "run"
    extra = ["train.save_every=1", "train.keep_last=1"]
    Trainer(load_config(None, tiny_overrides("pix2pix", task_data["pix2pix"], run, *extra,
                                             "train.max_steps=1"))).fit()
    kept = run / "checkpoints" / "step-000001"
    (kept / "results.csv").write_text("my,numbers\n")
    stray = run / "checkpoints" / ".tmp-step-000099"  # not made by img2img: no manifest
    stray.mkdir()
    (stray / "draft.txt").write_text("mine\n")
    before_kept, before_stray = snapshot(kept), snapshot(stray)
    Trainer(load_config(None, tiny_overrides("pix2pix", task_data["pix2pix"], run, *extra,
                                             "train.max_steps=3")), resume="auto").fit()
    assert snapshot(kept) == before_kept and snapshot(stray) == before_stray
    assert [p.name for p in list_checkpoints(run)] == ["step-000001", "step-000003"]  # 2 was its own


def test_a_checkpoint_folder_in_the_way_is_refused_not_replaced(task_data, tmp_path):
    run = tmp_path / "run"
    mine = run / "checkpoints" / "step-000002"  # the user's, no trainer_state.json: not a checkpoint
    mine.mkdir(parents=True)
    (mine / "plot.png").write_bytes(b"png bytes")
    ownership.mark(run, "run", ownership.RUN_ENTRIES, ownership.RUN_PATTERNS)
    before = snapshot(mine)
    trainer = Trainer(load_config(None, tiny_overrides("pix2pix", task_data["pix2pix"], run,
                                                       "train.save_every=2", "train.max_steps=2")))
    with pytest.raises(UserError, match="remove it yourself") as err:
        trainer.fit()
    assert str(mine) in str(err.value)
    assert snapshot(mine) == before and not (run / "checkpoints" / ".tmp-step-000002").exists()


class SafetensorError(Exception):
    """Stands in for the errors libraries raise that are not OSErrors."""


FAIL_CHECKPOINT_WRITE = """
import sys
from pathlib import Path
import img2img.files as files
from img2img.cli import main

real = files.save_tensors

def failing(tensors, path, metadata=None):  # torch's own error, not an OSError
    if Path(path).name.startswith("rank_"):
        raise RuntimeError("storage is not contiguous")
    return real(tensors, path, metadata)

files.save_tensors = failing
sys.exit(main(sys.argv[1:]))
"""


def test_a_failing_checkpoint_write_is_one_line_and_keeps_the_last_one(task_data, tmp_path, monkeypatch):
    import img2img.files as files

    run = tmp_path / "run"
    args = tiny_overrides("pix2pix", task_data["pix2pix"], run, "train.save_every=2", "train.max_steps=2")
    Trainer(load_config(None, args)).fit()
    last = run / "checkpoints" / "step-000002"
    before = snapshot(last)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("task: pix2pix\n")
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", FAIL_CHECKPOINT_WRITE, "train", str(cfg), "--resume", "auto",
                           *args[:-1], "train.max_steps=4"], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)
    assert_refused(proc, proc.stderr, run / "checkpoints" / "step-000004", "earlier checkpoints are as they were")
    assert "RuntimeError: storage is not contiguous" in proc.stderr
    assert snapshot(last) == before
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000002"]  # no half folder

    # a library's own exception class (safetensors raises its SafetensorError) alike
    real = files.save_tensors

    def failing(tensors, path, metadata=None):
        if Path(path).name.startswith("rank_"):
            raise SafetensorError("Error while serializing")
        return real(tensors, path, metadata)

    monkeypatch.setattr(files, "save_tensors", failing)
    trainer = Trainer(load_config(None, [*args[:-1], "train.max_steps=4"]), resume="auto")
    with pytest.raises(UserError, match="cannot write checkpoint .*step-000004 .SafetensorError: Error while"):
        trainer.fit()
    assert snapshot(last) == before
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000002"]


# --------------------------------------------------------------------------- predict


def _inputs(folder: Path, names: list[str]) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(smooth_image(np.random.default_rng(i), 16, 16)).save(folder / name)


def test_predict_gives_colliding_names_distinct_outputs_and_says_so_once(model_dir, tmp_path, capsys):
    from PIL import Image

    _inputs(tmp_path / "in", ["a.jpg", "a.png", "b.png"])
    out = tmp_path / "out"
    assert main(["predict", str(model_dir), str(tmp_path / "in"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [ownership.MARKER, "a.jpg.png", "a.png.png", "b.png"]
    assert err.count("keep it in the name") == 1 and "a.jpg -> a.jpg.png" in err
    a_jpg, a_png = (np.asarray(Image.open(out / n)) for n in ("a.jpg.png", "a.png.png"))
    assert a_jpg.shape == a_png.shape == (16, 16, 3) and not np.array_equal(a_jpg, a_png)

    # a clash that renaming cannot settle is refused before anything is written
    _inputs(tmp_path / "in2", ["a.jpg", "a.png", "a.jpg.png"])
    code = main(["predict", str(model_dir), str(tmp_path / "in2"), "--out", str(tmp_path / "out2")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "would both be written to" in err
    assert str(tmp_path / "out2" / "a.jpg.png") in err and not (tmp_path / "out2").exists()


def test_predict_never_overwrites_the_users_files_in_out(model_dir, tmp_path, capsys):
    _inputs(tmp_path / "in", ["a.png", "b.png"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"my own a.png")
    (out / "notes.txt").write_text("mine\n")
    before = snapshot(out)
    proc = cli("predict", str(model_dir), str(tmp_path / "in"), "--out", str(out))
    assert_refused(proc, proc.stderr, out, "choose another --out, or remove them yourself")
    assert "a.png" in proc.stderr
    assert snapshot(out) == before  # nothing written, not even b.png or a manifest

    # without the clash, predict writes beside the user's files and lists only its own
    (out / "a.png").unlink()
    before = snapshot(out)
    assert main(["predict", str(model_dir), str(tmp_path / "in"), "--out", str(out)]) == 0
    assert {k: v for k, v in snapshot(out).items() if k in before} == before
    assert json.loads((out / ownership.MARKER).read_text())["entries"] == ["a.png", "b.png"]
    # re-running replaces its own outputs
    (out / "b.png").write_bytes(b"stale")
    assert main(["predict", str(model_dir), str(tmp_path / "in"), "--out", str(out)]) == 0
    assert (out / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "notes.txt").read_text() == "mine\n"
    capsys.readouterr()

    # an img2img folder of another kind is not a predictions folder
    run = tmp_path / "run"
    run.mkdir()
    ownership.mark(run, "run", ownership.RUN_ENTRIES, ownership.RUN_PATTERNS)
    code = main(["predict", str(model_dir), str(tmp_path / "in"), "--out", str(run)])
    assert_refused(code, capsys.readouterr().err, run, "choose another --out")
    assert sorted(p.name for p in run.iterdir()) == [ownership.MARKER]


# --------------------------------------------------------------------------- the rule itself


def test_what_counts_as_proof(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    assert ownership.proof(folder) is None
    ownership.check_replaceable(folder, "model")  # empty: fine
    ownership.check_replaceable(tmp_path / "absent", "model")  # absent: fine

    # a manifest that claims paths outside its folder is no proof
    (folder / "x.txt").write_text("x")
    (folder / ownership.MARKER).write_text(json.dumps(
        {"format": ownership.FORMAT, "kind": "predictions", "entries": ["../elsewhere", "x.txt"]}))
    assert ownership.proof(folder) is None
    with pytest.raises(UserError, match="no .img2img.json"):
        ownership.check_replaceable(folder, "predictions")

    # a user's .img2img.json is never overwritten
    (folder / ownership.MARKER).write_text("my own notes\n")
    with pytest.raises(UserError, match="not img2img's predictions manifest"):
        ownership.mark(folder, "predictions", ["x.txt"])
    assert (folder / ownership.MARKER).read_text() == "my own notes\n"

    # entries are literal, patterns are patterns
    (folder / ownership.MARKER).unlink()
    (folder / "x[1].png").write_text("ours")
    ownership.mark(folder, "predictions", ["x.txt", "x[1].png"])
    assert ownership.check_files(folder, "predictions", ["x[1].png", "x.txt"]) == ["x.txt", "x[1].png"]
    (folder / "x1.png").write_text("theirs")
    with pytest.raises(UserError, match="already holds x1.png"):
        ownership.check_files(folder, "predictions", ["x1.png"])

    # a run's legacy proof is a complete resolved config naming this folder
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text(load_config(None, [f"output_dir={run}"]).to_yaml())
    assert ownership.proof(run).kind == "run"
    (run / "config.yaml").write_text(load_config(None, ["output_dir=elsewhere"]).to_yaml())
    assert ownership.proof(run) is None
    (run / "config.yaml").write_text(f"task: pix2pix\noutput_dir: {run}\n")  # a recipe, not a run's
    assert ownership.proof(run) is None


def test_proof_is_cheap_and_strict_for_hostile_run_configs(tmp_path):
    """A few kilobytes of YAML aliases in a config.yaml are no proof and cost nothing: the
    config's own safe reader refuses aliases before anything expands."""
    import time

    run = tmp_path / "run"
    run.mkdir()
    levels = ["a0: &a0 [" + ", ".join(["x"] * 9) + "]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 8)]
    (run / "config.yaml").write_text("\n".join(levels) + f"\noutput_dir: {run}\ntask: pix2pix\n")
    start = time.perf_counter()
    assert ownership.proof(run) is None
    assert time.perf_counter() - start < 0.5


def test_a_folder_of_another_kind_inside_is_not_covered(tmp_path):
    """A run may hold its models and checkpoints, a checkpoint its model; another proven
    folder inside (a predictions folder in a run, sample data in a model folder) belongs to
    the user's work and makes img2img refuse to replace the outer one."""
    config = load_config(None, TINY_MODEL)
    model = save_model(tmp_path / "model", config, build_generators(config))
    (model / "extra").mkdir()
    ownership.mark(model / "extra", "predictions", [])
    with pytest.raises(UserError, match="refusing to replace it"):
        ownership.check_replaceable(model, "model")

    run = tmp_path / "run"
    (run / "preds").mkdir(parents=True)
    ownership.mark(run, "run", ownership.RUN_ENTRIES, ownership.RUN_PATTERNS)
    ownership.mark(run / "preds", "predictions", [])
    before = snapshot(run)
    with pytest.raises(UserError, match="preds"):
        ownership.remove(run, "run")
    assert snapshot(run) == before
    save_model(run / "model", config, build_generators(config))  # its own model: covered
    (run / "preds" / ownership.MARKER).unlink()
    (run / "preds").rmdir()
    ownership.remove(run, "run")
    assert not run.exists()
