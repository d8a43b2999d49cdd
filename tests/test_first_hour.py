"""A new user's first hour (issue 18): wrong data layouts caught before training, recipes by
name from any folder, short runs of a recipe, resume by run directory, quiet tracking,
and the small mistakes, each with the message that says the fix."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from img2img.cli import build_parser, main
from img2img.config import load_config
from img2img.engine import Trainer, resolve_resume
from img2img.errors import ConfigError, DataError, UserError
from img2img.tasks import build_task
from tests.tiny import TINY, make_task_data, save_png, smooth_image, tiny_overrides

REPO = Path(__file__).resolve().parents[1]


def cli(*args, cwd=None, env=None, timeout=240):
    return subprocess.run([sys.executable, "-m", "img2img", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """A data root of each layout: A|B pairs, single photos, one folder per domain."""
    base = tmp_path_factory.mktemp("layouts")
    return {"pairs": make_task_data(base / "pairs", "pix2pix"),
            "photos": make_task_data(base / "photos", "colorization"),
            "domains": make_task_data(base / "domains", "cyclegan")}


@pytest.fixture(scope="module")
def tiny_run(layouts, tmp_path_factory):
    """A tiny pix2pix run trained on pairs without a val split (2 steps, a checkpoint)."""
    root = tmp_path_factory.mktemp("noval")
    shutil.copytree(layouts["pairs"] / "train", root / "train")
    run = tmp_path_factory.mktemp("runs") / "p2p"
    config = load_config(None, tiny_overrides("pix2pix", root, run, "train.max_steps=2",
                                              "log.images_every=500", "train.save_every=1"))
    logger = logging.getLogger("img2img")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        Trainer(config).fit()
    finally:
        logger.removeHandler(handler)
    return run, root, [r.getMessage() for r in records if r.levelno >= logging.WARNING]


# ---------------------------------------------------------------- 1. wrong layouts
RECIPES = {"esrgan": "esrgan/rrdb_psnr_x4", "realesrgan": "realesrgan/train_realesrnet_x4plus"}


def task_config(task: str, root: Path, *extra: str):
    if task in RECIPES:  # the shipped recipe (only the data is read)
        return load_config(RECIPES[task], [f"data.root={root}", "data.gt_size=32", *extra])
    return load_config(None, [*TINY["common"], *TINY[task], f"data.root={root}", *extra])


@pytest.mark.parametrize("task", ["pix2pix", "colorization", "srgan", "esrgan", "realesrgan"])
def test_paired_and_single_image_tasks_refuse_one_folder_per_domain(task, layouts):
    with pytest.raises(DataError) as err:
        build_task(task_config(task, layouts["domains"])).build_dataset("train")
    message = str(err.value)
    assert f"data.root {layouts['domains']} has no train/ folder but holds trainA/, trainB/, valA/, valB/" in message
    assert "unpaired" in message
    if task == "pix2pix":  # one domain's folder holds single photos: no fix for a paired task
        assert "data.root=" not in message and "A|B images side by side" in message
    else:
        assert f"data.root={layouts['domains'] / 'trainA'}" in message


def test_pix2pix_refuses_single_photos_cut_into_halves(layouts):
    with pytest.raises(DataError) as err:
        build_task(task_config("pix2pix", layouts["photos"])).build_dataset("train")
    message = str(err.value)
    assert f"{layouts['photos'] / 'train'}: 6 of 6 images are not A|B pairs side by side" in message
    assert "is 40x40" in message and "single photos" in message and "data.layout=folders" in message


def test_pairs_with_portrait_halves_pass_with_a_lower_ratio(tmp_path):
    """A|B images of two 22x32 portrait halves (44x32, 1.375:1) look like photos by their
    ratio: refused by default with the key to lower, accepted once it is lowered."""
    rng = np.random.default_rng(4)
    for split, count in (("train", 4), ("val", 1)):
        for i in range(count):
            save_png(tmp_path / "portraits" / split / f"{i}.png", smooth_image(rng, 32, 44))
    root = tmp_path / "portraits"
    with pytest.raises(DataError) as err:
        build_task(task_config("pix2pix", root)).build_dataset("train")
    assert "lower data.min_pair_ratio (now 1.4; 0 turns this check off)" in str(err.value)
    dataset = build_task(task_config("pix2pix", root, "data.min_pair_ratio=1.2")).build_dataset("train")
    assert len(dataset) == 4


def test_folders_layout_says_what_it_found(layouts):
    with pytest.raises(DataError, match=r"found neither \(.*train holds images only\); for A\|B images "
                                        r"side by side set data.layout=aligned"):
        build_task(task_config("pix2pix", layouts["pairs"], "data.layout=folders")).build_dataset("train")


@pytest.mark.parametrize("task", ["cyclegan", "cut"])
def test_unpaired_tasks_refuse_paired_folders(task, layouts):
    extra = [] if task == "cyclegan" else TINY["cyclegan"][1:]
    config = load_config(None, [*TINY["common"], *(TINY["cyclegan"] if task == "cyclegan" else [f"task={task}", *extra]),
                                f"data.root={layouts['pairs']}"])
    with pytest.raises(DataError) as err:
        build_task(config).build_dataset("train")
    assert f"{layouts['pairs']} holds the folders train/, val/" in str(err.value)
    assert "trainA/, trainB/" in str(err.value)


def test_no_val_split_is_said_once_at_the_start(tiny_run):
    run, root, warnings = tiny_run
    said = [w for w in warnings if w.startswith("no validation split")]
    assert said == [f"no validation split: {root / 'val'} does not exist, so evaluation is off (no "
                    f"metrics, no model_best/); put held-out images in {root / 'val'}/, or set "
                    "data.val_split=NAME to the folder of data.root that holds them"]
    assert not (run / "model_best").exists()


def test_eval_on_a_data_root_scores_the_val_split_only(tiny_run, layouts, capsys):
    run, _, _ = tiny_run
    assert main(["eval", str(run), "--data", str(layouts["pairs"]), "--json"]) == 0
    assert '"images": 2' in capsys.readouterr().out  # val holds 2, train 6
    bare = layouts["pairs"].parent / "train_only"
    shutil.copytree(layouts["pairs"] / "train", bare / "train")
    assert main(["eval", str(run), "--data", str(bare)]) == 2
    assert f"--data {bare} holds a train/ split but no val/ or test/" in capsys.readouterr().err


def test_eval_refuses_a_paired_model_on_single_photos(tiny_run, layouts, capsys):
    run, _, _ = tiny_run
    assert main(["eval", str(run), "--data", str(layouts["photos"] / "val")]) == 2
    err = capsys.readouterr().err
    assert "2 of 2 images are not A|B pairs side by side" in err and "single photos" in err
    assert main(["eval", str(run), "--data", str(layouts["domains"])]) == 2  # unpaired data: said so
    err = capsys.readouterr().err
    assert "are not A|B pairs side by side" in err and "single photos" not in err
    assert "it holds trainA/, trainB/, valA/, valB/: one folder per domain (unpaired data)" in err


# ---------------------------------------------------------------- 2. recipes by name
def test_recipes_resolve_by_name_from_any_folder(tmp_path):
    out = cli("summary", "pix2pix/facades", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '{"G": 54413955, "D": 2768705}'  # the README's 57,182,660
    listed = cli("recipes", cwd=tmp_path)
    assert re.search(r"^pix2pix/facades +pix2pix on CMP Facades \(Isola et al\. 2017\): labels -> photos$",
                     listed.stdout, re.M), listed.stdout
    typo = cli("summary", "pix2pix/facade", cwd=tmp_path)
    assert typo.returncode == 2
    assert typo.stderr.strip() == ("img2img: error: config file not found: pix2pix/facade; did you mean "
                                   "pix2pix/facades? ('img2img recipes' lists the recipes)")
    assert load_config("configs/demo/paired.yaml") == load_config("demo/paired")  # a path still works


def test_a_folder_named_like_a_recipe_does_not_hide_it(tmp_path, monkeypatch):
    (tmp_path / "pix2pix" / "facades").mkdir(parents=True)  # the user's data set, named as the recipe
    (tmp_path / "mine").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_config("pix2pix/facades") == load_config(REPO / "configs/pix2pix/facades.yaml")
    with pytest.raises(ConfigError, match="config path is a directory, not a YAML file: mine"):
        load_config("mine")  # no recipe of that name: the folder is named


def test_a_built_wheel_carries_the_recipes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "img2img", src / "img2img", ignore=ignore)
    shutil.copytree(REPO / "configs", src / "configs", ignore=ignore)
    build = ("import sys; from setuptools import build_meta; "
             "print(build_meta.build_wheel(sys.argv[1]))")
    done = subprocess.run([sys.executable, "-c", build, str(tmp_path / "dist")], cwd=src,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is absent from the `packages` configuration" not in done.stderr  # each folder is listed
    wheel = tmp_path / "dist" / done.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    recipes = {p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml")}
    assert recipes and {f"img2img/recipes/{r}" for r in recipes} <= names
    packages = {str(p.parent.relative_to(REPO)).replace("/", ".") for p in (REPO / "img2img").rglob("__init__.py")}
    missing = {p for p in packages if f"{p.replace('.', '/')}/__init__.py" not in names}
    assert not missing, f"add these packages to [tool.setuptools] packages in pyproject.toml: {missing}"


# ---------------------------------------------------------------- 3. short runs of a recipe
def test_a_short_run_of_a_recipe_names_the_override_and_keeps_a_sample_grid(tiny_run):
    with pytest.raises(ConfigError) as err:
        load_config("pix2pix/facades", ["train.max_steps=20"])
    assert str(err.value) == ("train.decay_start: 40000 is after train.max_steps (20); for a run this "
                              "short also set train.decay_start=10 (or train.decay_start=null: the decay "
                              "then starts at half of the run)")
    assert load_config("pix2pix/facades", ["train.max_steps=20", "train.decay_start=10"]).train.decay_start == 10
    run, _, _ = tiny_run  # log.images_every=500, max_steps=2
    assert [p.name for p in (run / "samples").iterdir()] == ["step-000002.png"]


# ---------------------------------------------------------------- 4. resume a run directory
def test_resume_takes_a_run_directory_and_names_a_missing_path(tiny_run, tmp_path):
    run, _, _ = tiny_run
    assert resolve_resume(str(run), tmp_path / "elsewhere") == run / "checkpoints" / "step-000002"
    with pytest.raises(UserError) as err:
        resolve_resume(str(tmp_path / "nothing"), tmp_path / "out")
    assert str(err.value).startswith(f"--resume {tmp_path / 'nothing'}: no such folder; give a run directory")
    assert "checkpoints" not in str(err.value).split(";")[0] and str(tmp_path / "out") not in str(err.value)


# ---------------------------------------------------------------- 5. quiet tracking
def test_first_run_of_a_demo_recipe_prints_a_screen_before_the_progress_bar(layouts, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SILENT"}  # the user's default
    env.update(WANDB_MODE="offline", OMP_NUM_THREADS="1")
    out = cli("train", "demo/paired", f"data.root={layouts['pairs']}", f"output_dir={tmp_path / 'run'}",
              "train.max_steps=2", "data.num_workers=0", "train.batch_size=2", "log.wandb=offline",
              cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    text = (out.stderr + out.stdout).replace("\r", "\n")
    lines = [line for line in text.splitlines() if line.strip()]
    bar = next(i for i, line in enumerate(lines) if "step/s" in line or "%|" in line)
    assert bar <= 25, "\n".join(lines[:bar])
    assert not [line for line in lines if line.startswith("wandb:")], text
    wandb_dir = tmp_path / "run" / "wandb"
    assert any(f"W&B (offline): the run is logged in {wandb_dir}" in line for line in lines)
    assert list(wandb_dir.glob("offline-run-*"))  # W&B still logged the run


# ---------------------------------------------------------------- 6. the smaller items
def test_train_lists_the_bad_files_of_every_split_at_once(layouts, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(layouts["pairs"], root)
    for split in ("train", "val"):
        (root / split / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as err:
        Trainer(load_config(None, tiny_overrides("pix2pix", root, tmp_path / "run")))
    message = str(err.value)
    assert message.startswith(f"2 bad file(s) in {root / 'train'} and {root / 'val'}:")
    assert str(root / "train" / "broken.png") in message and str(root / "val" / "broken.png") in message


def test_list_values_show_the_list_syntax():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.betas=0.5,0.999"])
    assert str(err.value) == ("train.betas: expected a list of numbers, got '0.5,0.999'; write a list "
                              "in brackets: train.betas=[0.5,0.999]")


def test_a_model_path_typo_is_not_a_hub_lookup(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_png(tmp_path / "x.png", smooth_image(np.random.default_rng(0), 32, 32))
    assert main(["predict", "runs/nothing", "x.png", "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("img2img: error: model not found: runs/nothing does not exist") and "hf://" in err
    assert not (tmp_path / "out").exists()


def test_predict_and_prepare_leave_no_folder_after_an_error(tiny_run, tmp_path, capsys):
    run, _, _ = tiny_run
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "junk.png").write_bytes(b"not an image")
    assert main(["predict", str(run), str(tmp_path / "in"), "--out", str(tmp_path / "pred")]) != 0
    assert not (tmp_path / "pred").exists()
    (tmp_path / "junk.zip").write_bytes(b"not an archive")
    assert main(["data", "prepare", "facades", "--out", str(tmp_path / "ds"), "--archive",
                 str(tmp_path / "junk.zip")]) == 2
    assert not (tmp_path / "ds").exists()
    assert "img2img: error:" in capsys.readouterr().err


def test_cyclegan_direction_is_chosen_per_call():
    from img2img.inference import Translator

    config = load_config(None, [*TINY["common"], *TINY["cyclegan"]])
    torch.manual_seed(0)
    generators = build_task(config).build_generators()
    model = Translator(config, generators, device="cpu")
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    both = Translator(config, generators, device="cpu", direction="BtoA")(image)
    assert np.array_equal(model(image, direction="BtoA"), both)
    assert not np.array_equal(model(image), both) and model.direction == "AtoB"


def test_predict_options_have_help():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    predict = sub.choices["predict"]
    helps = {a.dest: a.help for a in predict._actions}
    assert helps["batch_size"] and helps["device"]


# ---------------------------------------------------------------- the README's quick start
def test_the_readme_colorization_quick_start_runs_from_any_folder(layouts, tmp_path):
    readme = (REPO / "README.md").read_text()
    block = readme.split("### Colorization (any folder of colour photos)", 1)[1].split("```bash\n", 1)[1]
    commands = [line.split("  #")[0].strip() for line in block.split("```", 1)[0].splitlines() if line.strip()]
    assert commands[0].startswith("img2img train colorization/photos_unet256 data.root=path/to/photos")
    photos = tmp_path / "path" / "to" / "photos"
    shutil.copytree(layouts["photos"], photos)
    shutil.copytree(layouts["photos"] / "val", tmp_path / "old_photos")
    tiny = ["train.max_steps=1", "train.decay_start=null", "model.generator.ngf=8",
            "model.discriminator.ndf=8", "data.load_size=36", "data.crop_size=32",
            "model.generator.name=unet", "model.generator.num_downs=3", "data.num_workers=0",
            "log.wandb=off", "eval.every=0", "data.max_val_images=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for command in commands:
        args = command.split()[1:] + (tiny if command.startswith("img2img train") else [])
        done = cli(*args, cwd=tmp_path, env=env)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    assert len(list((tmp_path / "colorized").glob("*.png"))) == 2


# ---------------------------------------------------------------- a user trial of the README
def test_resume_takes_a_runs_checkpoints_folder(tiny_run, tmp_path):
    run, _, _ = tiny_run
    assert resolve_resume(str(run / "checkpoints"), tmp_path / "out") == run / "checkpoints" / "step-000002"
    with pytest.raises(UserError) as err:  # a step that was never saved: the ones that were are named
        resolve_resume(str(run / "checkpoints" / "step-000099"), tmp_path / "out")
    assert f"step-000099: no such folder ({run / 'checkpoints'} holds step-000001, step-000002)" in str(err.value)


def test_a_list_key_given_one_value_shows_the_list_syntax():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.betas=0.5"])
    assert str(err.value) == ("train.betas: expected a list of numbers, got 0.5; write a list in "
                              "brackets: train.betas=[0.5,...]")


def test_a_misspelt_choice_names_the_close_value():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.generator.name=unet256"])
    assert str(err.value).startswith("model.generator.name: invalid value 'unet256' (did you mean "
                                     "model.generator.name=unet_256?); allowed: unet_128|unet_256|")


def test_a_model_path_typo_names_the_close_folders(tiny_run, capsys):
    run, _, _ = tiny_run
    typo = run.parent / (run.name[:-1] + "q")  # p2p -> p2q
    assert main(["export", str(typo), "--format", "safetensors", "--out", str(run.parent / "x")]) == 2
    assert f"model not found: {typo} does not exist; did you mean {run}?" in capsys.readouterr().err


def test_a_stage_two_recipe_before_stage_one_names_model_init_from(layouts, tmp_path):
    config = load_config(None, tiny_overrides("pix2pix", layouts["pairs"], tmp_path / "run",
                                              f"model.init_from={tmp_path / 'stage1' / 'model'}"))
    with pytest.raises(UserError) as err:
        Trainer(config).fit()
    message = str(err.value)
    assert message.startswith(f"model.init_from: model not found: {tmp_path / 'stage1' / 'model'} does not exist")
    assert "train it first" in message and "model.init_from=null" in message


def test_model_files_get_the_usual_permissions(tiny_run, tmp_path):
    from img2img.sr_weights import write_sr_weights
    from img2img.tasks import build_generators

    run, _, _ = tiny_run
    mask = os.umask(0o022)
    os.umask(mask)
    usual = 0o666 & ~mask
    config = load_config(None, ["task=esrgan", "model.generator.name=srvgg_compact", "data.scale=2",
                                "model.generator.ngf=8", "model.generator.n_blocks=2",
                                "model.discriminator.name=none"])
    sr = write_sr_weights(build_generators(config)["G"], tmp_path / "sr.safetensors")
    assert main(["export", str(run), "--format", "hub", "--out", str(tmp_path / "hub")]) == 0
    for path in (run / "model" / "model.safetensors", sr, tmp_path / "hub" / "model.safetensors"):
        assert oct(path.stat().st_mode & 0o777) == oct(usual), path


def test_eval_report_named_as_a_folder_is_refused_and_a_written_one_is_said(tiny_run, layouts, tmp_path,
                                                                            capsys, caplog):
    run, _, _ = tiny_run
    folder = f"{tmp_path / 'reports'}/"
    assert main(["eval", str(run), "--data", str(layouts["pairs"]), "--report", folder]) == 2
    assert f"--report {folder} is a folder; give a file name" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()
    assert main(["eval", str(run), "--data", str(layouts["pairs"]), "--report", str(tmp_path)]) == 2
    assert f"--report {tmp_path} is a folder" in capsys.readouterr().err
    report = tmp_path / "r" / "report.html"
    with caplog.at_level(logging.INFO, logger="img2img"):
        assert main(["eval", str(run), "--data", str(layouts["pairs"]), "--report", str(report)]) == 0
    assert report.is_file() and f"wrote the report {report}" in caplog.text


def test_unpaired_eval_on_another_layout_says_what_it_found(layouts, tmp_path, capsys):
    from img2img.model_io import save_model
    from img2img.tasks import build_generators

    config = load_config(None, [*TINY["common"], *TINY["cyclegan"]])
    model = save_model(tmp_path / "model", config, build_generators(config))
    assert main(["eval", str(model), "--data", str(layouts["pairs"])]) == 2
    err = capsys.readouterr().err
    assert "an unpaired model is evaluated on a folder that holds A/ and B/" in err
    assert f"{layouts['pairs']} holds the folders train/, val/" in err
