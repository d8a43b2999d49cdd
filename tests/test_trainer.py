"""The training engine on tiny networks: every task, checkpoints, resume, signals, NaN."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from img2img import ownership
from img2img.config import load_config, save_config
from img2img.engine import Trainer, list_checkpoints
from img2img.errors import ConfigError, DataError, NonFiniteLossError, UserError
from img2img.model_io import load_model
from tests.tiny import (
    kill_resume_and_compare,
    make_task_data,
    save_undecodable_jpeg,
    tiny_overrides,
    train_command,
)

TASKS = ["pix2pix", "colorization", "cyclegan", "srgan"]


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def make_trainer(task, data, out, *extra, resume=None):
    return Trainer(load_config(None, tiny_overrides(task, data, out, *extra)), resume=resume)


@pytest.mark.parametrize("task", TASKS)
def test_each_task_trains_saves_and_exports(task, task_data, tmp_path):
    run = tmp_path / "run"
    trainer = make_trainer(task, task_data[task], run, "train.save_every=2", "log.images_every=2")
    before = {n: {k: v.clone() for k, v in g.state_dict().items()} for n, g in trainer.nets.G.items()}
    summary = trainer.fit()

    assert summary["step"] == 3
    rows = [r for r in read_metrics(run) if any(k.startswith("loss/") for k in r)]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row in rows:
        losses = {k: v for k, v in row.items() if k.startswith("loss/")}
        assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values()), row
        assert row["images_per_s"] > 0 and row["lr/G"] > 0
    # Both sides really trained.
    g_terms = {k for r in rows for k in r if k.startswith("loss/G") or "cycle" in k}
    assert g_terms
    if trainer.nets.D:
        assert any(k.startswith("loss/D") for r in rows for k in r)
    for name, g in trainer.nets.G.items():
        changed = [not torch.equal(before[name][k], v) for k, v in g.state_dict().items() if v.dtype.is_floating_point]
        assert any(changed), f"{name} did not change"

    assert [p.name for p in list_checkpoints(run)] == ["step-000002", "step-000003"]
    # the sample grid: a titled column per visual, a row per image (up to four)
    from img2img.data import read_image
    from img2img.engine.tracking import LABEL_BAND

    grid = read_image(run / "samples" / "step-000002.png")
    columns, side = len(trainer.task.visual_labels), 32  # tiny crops (SR: 32 px HR)
    assert grid.shape == (LABEL_BAND + 2 + 2 * (side + 2), 2 + columns * (side + 2), 3)
    band = grid[:LABEL_BAND]
    for i in range(columns):  # every column is titled (white text on the dark band)
        assert band[:, 2 + i * (side + 2) : 2 + (i + 1) * (side + 2)].max() > 0.9, (task, i)
    assert (run / "config.yaml").is_file()
    config, generators = load_model(run / "model")
    assert config.task == task
    assert sorted(generators) == sorted(trainer.nets.G)
    for name, g in generators.items():
        for key, value in g.state_dict().items():
            assert torch.equal(value, trainer.nets.G[name].state_dict()[key].cpu()), key


def test_validation_metrics_and_best_model(task_data, tmp_path):
    run = tmp_path / "run"
    trainer = make_trainer("srgan", task_data["srgan"], run, "eval.every=2", "train.max_steps=4")
    trainer.fit()
    evals = [r for r in read_metrics(run) if "eval/psnr" in r]
    assert [r["step"] for r in evals] == [2, 4]
    for row in evals:
        assert {"eval/psnr", "eval/ssim", "eval/psnr_y", "eval/ssim_y", "eval_baseline/psnr_y"} <= set(row)
        assert 0 < row["eval/ssim"] <= 1
    assert trainer.best["step"] in (2, 4)
    assert (run / "model_best" / "model.safetensors").is_file()


def test_cli_train_runs_and_rejects_existing_run(task_data, tmp_path):
    run = tmp_path / "run"
    cfg = load_config(None, tiny_overrides("pix2pix", task_data["pix2pix"], run, "train.max_steps=1"))
    save_config(cfg, tmp_path / "c.yaml")
    cmd = [sys.executable, "-m", "img2img", "train", str(tmp_path / "c.yaml")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2
    assert "already holds checkpoints" in again.stderr and "--resume auto" in again.stderr
    assert "Traceback" not in again.stderr


def test_missing_data_root_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="task is not set: name the method with task=NAME"):
        Trainer(load_config(None, ["device=cpu"]))
    with pytest.raises(ConfigError, match="data.root is not set"):
        Trainer(load_config(None, ["task=pix2pix", "device=cpu"]))
    cfg = load_config(None, tiny_overrides("pix2pix", tmp_path / "nowhere", tmp_path / "run"))
    with pytest.raises(UserError, match="nowhere"):
        Trainer(cfg)


# --------------------------------------------------------------------------- exact resume


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


@pytest.mark.parametrize(
    "task, extra",
    [
        ("pix2pix", ["data.num_workers=1"]),  # dropout + batch norm + workers
        ("cyclegan", ["train.ema=0.9"]),  # image pools + EMA
    ],
)
def test_resume_after_sigkill_is_bit_identical(task, extra, task_data, tmp_path):
    steps = ["train.max_steps=16", "train.save_every=4", "train.batch_size=2"]
    killed_run = kill_resume_and_compare(
        tmp_path, lambda run: load_config(None, tiny_overrides(task, task_data[task], run, *steps, *extra)),
        kill_at=4, files=["model/model.safetensors"])
    # The metrics log has one line per step, none duplicated by the killed run.
    steps_logged = [r["step"] for r in read_metrics(killed_run) if "images_per_s" in r]
    assert steps_logged == list(range(1, 17))


def test_interrupted_save_leaves_previous_checkpoint_loadable(task_data, tmp_path):
    run = tmp_path / "run"
    make_trainer("pix2pix", task_data["pix2pix"], run, "train.save_every=2", "train.max_steps=2").fit()
    # A crash in the middle of the next save leaves only a temporary folder behind (marked
    # as the save's own when it was made, before anything was written into it).
    partial = run / "checkpoints" / ".tmp-step-000004"
    partial.mkdir()
    ownership.mark(partial, "checkpoint", [], ["*"])
    (partial / "model.safetensors").write_bytes(b"\x00" * 10)
    trainer = make_trainer("pix2pix", task_data["pix2pix"], run, "train.save_every=2", "train.max_steps=4", resume="auto")
    summary = trainer.fit()
    assert summary["step"] == 4
    assert not partial.exists()
    assert [p.name for p in list_checkpoints(run)] == ["step-000002", "step-000004"]


def test_resume_rejects_a_folder_that_is_no_checkpoint(task_data, tmp_path):
    with pytest.raises(UserError, match="not a checkpoint directory"):
        make_trainer("pix2pix", task_data["pix2pix"], tmp_path / "run", resume=str(tmp_path))


def test_resume_refuses_other_networks_and_names_the_keys(task_data, tmp_path):
    run = tmp_path / "run"
    make_trainer("pix2pix", task_data["pix2pix"], run, "train.max_steps=1").fit()
    with pytest.raises(UserError) as err:
        make_trainer("pix2pix", task_data["pix2pix"], run, "train.max_steps=2", "model.generator.ngf=4",
                     "train.ema=0.9", resume="auto").fit()
    assert "model.generator.ngf (8 -> 4)" in str(err.value) and "train.ema" in str(err.value)
    # Other settings may change (a longer run, another LR), and take effect.
    summary = make_trainer("pix2pix", task_data["pix2pix"], run, "train.max_steps=2", "train.lr_g=1e-4",
                           resume="auto").fit()
    assert summary["step"] == 2


@pytest.mark.parametrize("scheduler", ["constant", "linear", "plateau"])
def test_resume_with_another_learning_rate_uses_it(task_data, tmp_path, scheduler):
    run = tmp_path / "run"
    extra = [f"train.scheduler={scheduler}", "train.decay_start=2", "eval.every=2"]
    make_trainer("pix2pix", task_data["pix2pix"], run, "train.max_steps=2", *extra).fit()
    trainer = make_trainer("pix2pix", task_data["pix2pix"], run, "train.max_steps=4", "train.lr_g=1e-5",
                           "train.lr_d=3e-5", "train.betas=[0.6,0.9]", *extra, resume="auto")
    trainer.fit()
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    lr_g = {r["step"]: r["lr/G"] for r in logged if "lr/G" in r}
    lr_d = {r["step"]: r["lr/D"] for r in logged if "lr/D" in r}
    factor = {"constant": [1, 1], "linear": [2 / 3, 1 / 3], "plateau": [1, 1]}[scheduler]
    assert [lr_g[3], lr_g[4]] == pytest.approx([1e-5 * f for f in factor], rel=1e-6)
    assert [lr_d[3], lr_d[4]] == pytest.approx([3e-5 * f for f in factor], rel=1e-6)
    assert trainer.optim.G.param_groups[0]["betas"] == (0.6, 0.9)


def test_a_fresh_run_does_not_append_to_a_killed_runs_log(task_data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # what a run killed before its first checkpoint leaves: its manifest, log lines, a
    # half-written last one
    ownership.mark(run, "run", ownership.RUN_ENTRIES, ownership.RUN_PATTERNS)
    (run / "metrics.jsonl").write_text('{"step": 1, "G_L1": 9}\n{"step": 2, "G_L1": 8}\n{"step": 3, "G_')
    make_trainer("pix2pix", task_data["pix2pix"], run, "train.max_steps=2").fit()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps and steps == sorted(steps) and steps.count(1) == 1 and max(steps) == 2


def test_a_damaged_checkpoint_is_named_with_the_one_to_fall_back_to(task_data, tmp_path):
    run = tmp_path / "run"
    make_trainer("pix2pix", task_data["pix2pix"], run, "train.max_steps=2", "train.save_every=1").fit()
    newest = run / "checkpoints" / "step-000002"
    damages = {
        "trainer_state.json": lambda f: f.write_text("{"),
        "model.safetensors": lambda f: f.write_bytes(f.read_bytes()[:100]),
        "optimizer.bin": lambda f: f.unlink(),
    }
    for name, damage in damages.items():
        backup = (newest / name).read_bytes()
        damage(newest / name)
        with pytest.raises(UserError) as err:
            make_trainer("pix2pix", task_data["pix2pix"], run, "train.max_steps=3", resume="auto").fit()
        message = str(err.value)
        assert message.startswith(f"checkpoint {newest} is incomplete or damaged ("), (name, message)
        assert f"--resume {run / 'checkpoints' / 'step-000001'}" in message and "\n" not in message
        (newest / name).write_bytes(backup)
    summary = make_trainer("pix2pix", task_data["pix2pix"], run, "train.max_steps=3",
                           resume=str(run / "checkpoints" / "step-000001")).fit()
    assert summary["step"] == 3


def test_resume_auto_without_checkpoint_still_applies_init_from(task_data, tmp_path):
    stage1 = tmp_path / "psnr"
    make_trainer("srgan", task_data["srgan"], stage1, "model.discriminator.name=none", "train.max_steps=1").fit()
    stage2 = make_trainer("srgan", task_data["srgan"], tmp_path / "gan", f"model.init_from={stage1}", resume="auto")
    _, g1 = load_model(stage1)
    for key, value in g1["G"].state_dict().items():
        assert torch.equal(value, stage2.nets.G["G"].state_dict()[key].cpu())
    with pytest.raises(UserError) as err:  # another network: what differs is named
        make_trainer("srgan", task_data["srgan"], tmp_path / "gan2", f"model.init_from={stage1}",
                     "model.generator.ngf=4")
    message = str(err.value)
    assert message.startswith(f"weights in model.init_from {stage1} do not fit the network: ")
    assert "model.generator.ngf (8 there, 4 here)" in message and "\n" not in message


def test_logged_losses_do_not_grow_with_accumulation(task_data, tmp_path):
    def l1(*extra):
        run = tmp_path / "-".join(extra)
        make_trainer("srgan", task_data["srgan"], run, "model.discriminator.name=none", "train.max_steps=1",
                     "train.lr_g=1e-12", *extra).fit()
        return next(r["loss/G_L1"] for r in read_metrics(run) if "loss/G_L1" in r)

    # The same 4 images as one batch of 4, or as 4 micro-batches of 1: the same mean L1.
    assert l1("train.batch_size=4") == pytest.approx(l1("train.batch_size=1", "train.grad_accum=4"), rel=1e-3)


def test_batches_of_different_image_sizes_are_a_clear_error(tmp_path):
    from tests.tiny import save_png, smooth_image

    rng = __import__("numpy").random.default_rng(0)
    for i, (h, w) in enumerate([(32, 32), (40, 32)]):
        save_png(tmp_path / "data" / "train" / f"{i}.png", smooth_image(rng, h, w))
    trainer = make_trainer("colorization", tmp_path / "data", tmp_path / "run", "data.preprocess=none",
                           "train.batch_size=2", "data.flip=false")
    with pytest.raises(DataError, match=r"different sizes: .*0.png \(32x32\).*1.png \(32x40\).*batch_size=1"):
        trainer.fit()


def test_output_dir_that_is_a_file_is_refused(task_data, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is a file"):
        make_trainer("pix2pix", task_data["pix2pix"], tmp_path / "file")


def test_bad_fid_weights_fail_before_training(task_data, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        make_trainer("cyclegan", task_data["cyclegan"], tmp_path / "run", f"eval.fid_weights={tmp_path / 'nope.pth'}")


def test_output_dir_that_cannot_be_made_fails_before_any_work(task_data, tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match=f"output_dir: {tmp_path / 'afile'} is a file, so"):
        make_trainer("pix2pix", task_data["pix2pix"], tmp_path / "afile" / "sub")


def test_training_sizes_the_networks_cannot_take_are_config_errors(task_data, tmp_path):
    cases = {
        ("model.generator.name=unet_256",): "data.crop_size: unet_256 needs training images whose sides are multiples of 256",
        ("data.crop_size=30", "data.load_size=30"): "multiples of 8 (at least 8 px), got 30 px; use e.g. 32",
        ("model.discriminator.n_layers=6",): "32 px images are too small for the patchgan discriminator with n_layers=6",
    }
    for extra, message in cases.items():
        with pytest.raises(ConfigError) as err:
            make_trainer("pix2pix", task_data["pix2pix"], tmp_path / "run", *extra)
        assert message in str(err.value), extra
    with pytest.raises(ConfigError, match="data.gt_size: 8 px images are too small for the patchgan"):
        make_trainer("srgan", task_data["srgan"], tmp_path / "sr", "data.gt_size=8", "model.discriminator.n_layers=3")


def test_keep_last_prunes_old_checkpoints(task_data, tmp_path):
    run = tmp_path / "run"
    make_trainer("pix2pix", task_data["pix2pix"], run, "train.save_every=1", "train.max_steps=5", "train.keep_last=2").fit()
    assert [p.name for p in list_checkpoints(run)] == ["step-000004", "step-000005"]


# --------------------------------------------------------------------------- signals and NaN


@pytest.mark.parametrize("workers", [0, 2], ids=["main-process", "group-with-workers"])
def test_sigterm_saves_and_exits_zero(task_data, tmp_path, workers):
    """SIGTERM to the trainer, or to its whole process group with DataLoader workers (a
    terminal's Ctrl-C, a scheduler's preemption, `timeout`): one checkpoint, exit 0."""
    run = tmp_path / "run"
    cfg = load_config(None, tiny_overrides("pix2pix", task_data["pix2pix"], run, "train.max_steps=100000",
                                           f"data.num_workers={workers}"))
    save_config(cfg, tmp_path / "c.yaml")
    proc = subprocess.Popen(train_command(tmp_path / "c.yaml"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 240
    while not (run / "metrics.jsonl").exists() or len((run / "metrics.jsonl").read_text().splitlines()) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    if workers:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    checkpoints = list_checkpoints(run)
    assert len(checkpoints) == 1
    state = json.loads((checkpoints[0] / "trainer_state.json").read_text())
    assert state["step"] >= 2
    assert "saving a checkpoint" in err.decode()
    assert "Traceback" not in err.decode()


def test_a_signal_during_the_final_evaluation_still_saves_everything(task_data, tmp_path):
    """SIGTERM after the last step, while the final evaluation runs: it finishes, the last
    checkpoint and model/ are written whole, and fit returns normally."""
    run = tmp_path / "run"

    class SignalledLate(Trainer):
        def evaluate(self):
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, delivered to this process
            return super().evaluate()

    cfg = load_config(None, tiny_overrides("pix2pix", task_data["pix2pix"], run, "train.max_steps=2"))
    summary = SignalledLate(cfg).fit()
    assert summary["step"] == 2 and "model" in summary
    assert [p.name for p in list_checkpoints(run)] == ["step-000002"]
    assert not list((run / "checkpoints").glob(".tmp-*"))
    load_model(run / "model")


def test_an_error_with_data_workers_exits_instead_of_hanging(tmp_path):
    """A file that fails only when decoded, mid-run, with DataLoader workers: one message,
    exit 2, and the process ends (multiprocessing's exit stops the workers)."""
    root = make_task_data(tmp_path / "data", "colorization", n_train=4, n_val=0, size=40)
    save_undecodable_jpeg(root / "train" / "bad.jpg", seed=0)
    cfg = load_config(None, tiny_overrides("colorization", root, tmp_path / "run", "train.max_steps=50",
                                           "data.num_workers=2"))
    save_config(cfg, tmp_path / "c.yaml")
    proc = subprocess.run(train_command(tmp_path / "c.yaml"), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "bad.jpg" in proc.stderr and "Traceback" not in proc.stderr


def test_nonfinite_loss_stops_with_term_and_step(task_data, tmp_path):
    run = tmp_path / "run"
    # An absurd discriminator learning rate blows D up at its first update (end of step 1;
    # CycleGAN updates G first), so G's adversarial term is not finite at step 2: a real inf.
    extra = ("train.lr_d=1e38", "train.max_steps=6", "train.save_every=1", "train.fused_adam=false")
    trainer = make_trainer("cyclegan", task_data["cyclegan"], run, *extra)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    message = str(err.value)
    assert "loss G_A_GAN is" in message and "at step 2" in message
    assert f"the last good checkpoint is {run / 'checkpoints' / 'step-000001'}" in message
    assert [p.name for p in list_checkpoints(run)] == ["step-000001"]
    load_model(run / "checkpoints" / "step-000001" / "model")  # still loadable


def test_skip_nonfinite_counts_and_finishes(task_data, tmp_path):
    run = tmp_path / "run"
    extra = ("train.lr_d=1e38", "train.max_steps=5", "train.skip_nonfinite=true", "train.fused_adam=false")
    summary = make_trainer("pix2pix", task_data["pix2pix"], run, *extra).fit()
    assert summary["step"] == 5
    assert summary["nonfinite_skipped"] >= 1
    assert any(r.get("nonfinite_skipped", 0) >= 1 for r in read_metrics(run))
    assert (run / "model" / "model.safetensors").is_file()


# --------------------------------------------------------------------------- engine options


def test_plateau_scheduler_reads_the_metric(task_data, tmp_path):
    run = tmp_path / "run"
    # No loss term, so G never changes and the metric never improves: every evaluation
    # after the first is a bad one and (patience 0) halves the LR, which must stay cut.
    extra = ("train.scheduler=plateau", "train.plateau_patience=0", "train.lr_g=1e-3",
             "eval.every=1", "train.max_steps=4", "eval.metric=psnr_y", "loss.gan_weight=0",
             "loss.pixel_weight=0", "model.discriminator.name=none")
    trainer = make_trainer("srgan", task_data["srgan"], run, *extra)
    trainer.fit()
    lrs = [r["lr/G"] for r in read_metrics(run) if "lr/G" in r]
    assert lrs == pytest.approx([1e-3, 1e-3, 0.5e-3, 0.25e-3], rel=1e-9)
    assert trainer.optim.G.param_groups[0]["lr"] == pytest.approx(0.125e-3, rel=1e-9)


def test_bf16_channels_last_and_accumulation_run(task_data, tmp_path):
    run = tmp_path / "run"
    summary = make_trainer(
        "pix2pix", task_data["pix2pix"], run,
        "mixed_precision=bf16", "train.channels_last=true", "train.grad_accum=2", "train.max_steps=2",
    ).fit()
    assert summary["step"] == 2
    rows = [r for r in read_metrics(run) if "loss/D_real" in r]
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["loss/D_real"])) for r in rows)


def test_fp16_on_cpu_is_refused(task_data, tmp_path):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        make_trainer("pix2pix", task_data["pix2pix"], tmp_path / "r", "mixed_precision=fp16")


def test_srgan_gan_stage_starts_from_psnr_stage(task_data, tmp_path):
    stage1 = tmp_path / "psnr"
    make_trainer("srgan", task_data["srgan"], stage1, "model.discriminator.name=none", "train.max_steps=2").fit()
    stage2 = make_trainer(
        "srgan", task_data["srgan"], tmp_path / "gan", f"model.init_from={stage1}",
        "loss.perceptual_weight=1", "loss.perceptual_layers={conv2_2: 1.0}", "loss.vgg_weights=none",
    )
    _, g1 = load_model(stage1)
    for key, value in g1["G"].state_dict().items():
        assert torch.equal(value, stage2.nets.G["G"].state_dict()[key].cpu())
    assert "D" in stage2.nets.D
    stage2.fit()
    rows = [r for r in read_metrics(tmp_path / "gan") if "loss/G_perceptual" in r]
    assert rows and all(r["loss/G_perceptual"] > 0 for r in rows)


def test_wandb_offline_and_tensorboard_runs_are_written(task_data, tmp_path):
    run = tmp_path / "run"
    make_trainer(
        "pix2pix", task_data["pix2pix"], run, "log.wandb=offline", "log.tensorboard=true",
        "log.images_every=1", "train.max_steps=2",
    ).fit()
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert list(offline[0].glob("*.wandb")), "no W&B run file"
    events = list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    # A resumed run continues the same W&B run (same id; `wandb sync` merges the folders).
    run_id = (run / "wandb_run_id").read_text().strip()
    assert offline[0].name.endswith(f"-{run_id}")
    make_trainer("pix2pix", task_data["pix2pix"], run, "log.wandb=offline", "train.max_steps=3",
                 resume="auto").fit()
    folders = sorted((run / "wandb").glob("offline-run-*"))
    # offline-run-<time>-<id>, with "-1" added by W&B when both runs started in one second
    assert len(folders) == 2 and all(re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{run_id}(-\d+)?", f.name)
                                     for f in folders), [f.name for f in folders]


# --------------------------------------------------------------------------- several processes


DRIVER = r"""
import json, os, sys
import torch
from img2img.config import load_config
from img2img.engine import Trainer
cfg = load_config(sys.argv[1])
trainer = Trainer(cfg)
seen = []
dataset_cls = type(trainer.data.train_set)
original = dataset_cls.__getitem__
def recording(self, key):
    if self is trainer.data.train_set:
        seen.append(key[0] if isinstance(key, tuple) else key)
    return original(self, key)
dataset_cls.__getitem__ = recording
trainer.fit()
rank = trainer.rank
out = os.path.join(cfg.output_dir, f"rank{rank}")
torch.save({k: v.cpu() for k, v in trainer.nets.G["G"].state_dict().items()}, out + ".pt")
with open(out + ".json", "w") as f:
    json.dump({"seen": seen, "world": trainer.world_size}, f)
"""


def test_two_process_torchrun_on_cpu(task_data, tmp_path):
    run = tmp_path / "run"
    # device auto on a machine without a GPU: the CPU, and a real two-process group
    device = "device=cpu" if torch.cuda.is_available() else "device=auto"
    cfg = load_config(None, tiny_overrides("pix2pix", task_data["pix2pix"], run, "train.max_steps=3", "train.batch_size=1",
                                           "eval.every=3", device))
    save_config(cfg, tmp_path / "c.yaml")
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(tmp_path / "driver.py"), str(tmp_path / "c.yaml")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    info = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(i["world"] == 2 for i in info)
    seen0, seen1 = info[0]["seen"], info[1]["seen"]
    assert len(seen0) == len(seen1) == 3
    assert set(seen0).isdisjoint(seen1), (seen0, seen1)  # 6 images, 3 steps x 2 ranks: one epoch
    w0, w1 = (torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    evals = [r for r in read_metrics(run) if "eval/psnr" in r]
    assert len(evals) == 1  # evaluated once, sharded, logged by the main process


def test_a_bad_file_met_by_one_process_is_reported_once_by_it(tmp_path):
    """Under torchrun, the process whose share holds a file that fails only when decoded
    names it (rank 1 included); the other stops with one line instead of a trace."""
    root = make_task_data(tmp_path / "data", "colorization", n_train=3, n_val=0, size=40)
    save_undecodable_jpeg(root / "train" / "bad.jpg", seed=1)
    device = "device=cpu" if torch.cuda.is_available() else "device=auto"
    cfg = load_config(None, tiny_overrides("colorization", root, tmp_path / "run", "train.max_steps=20",
                                           "train.batch_size=1", device))
    save_config(cfg, tmp_path / "c.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519",
           "-m", "img2img", "train", str(tmp_path / "c.yaml")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("img2img: error")]
    assert len([e for e in errors if "bad.jpg" in e]) == 1, result.stderr[-3000:]
    assert "[rank0]: Traceback" not in result.stderr and "[rank1]: Traceback" not in result.stderr
