"""CUT and FastCUT: PatchNCE against hand-computed values, the anti-aliased networks, the
projection head built from a first batch (in checkpoints, resumed bit-exactly, under
torchrun), the two modes' terms, predict/export of a CUT model, and the collapse guard."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from img2img.cli import main
from img2img.config import load_config, save_config
from img2img.engine import Trainer, list_checkpoints
from img2img.engine.collapse import HISTORY, CollapseGuard
from img2img.errors import ConfigError, UserError
from img2img.losses import patch_nce_loss
from img2img.nets import build_discriminator, build_generator
from img2img.nets.antialias import BlurDownsample, BlurUpsample, pad_edges
from img2img.nets.projection import PatchProjectionHead
from tests.tiny import TINY, kill_resume_and_compare, made_up_fid_weights, save_png, smooth_image

CUT = [
    *TINY["common"], "task=cut", "model.generator.name=resnet_aa", "model.generator.n_blocks=1",
    "model.generator.norm=instance", "model.generator.dropout=false", "model.discriminator.name=patchgan_aa",
    "model.discriminator.norm=instance", "loss.gan_mode=lsgan", "eval.metric=fid",
    "data.preprocess=resize_and_crop", "data.load_size=36", "data.crop_size=32",
    # with one residual block the encoder is layers 0-12: input, stem, the two downsampling
    # convs, the block
    "task_options.nce_layers=[0,4,8,12]", "task_options.num_patches=16", "task_options.head_features=16",
]


def cut_config(data: Path, out: Path, *extra: str):
    return load_config(None, [*CUT, f"data.root={data}", f"output_dir={out}", *extra])


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- PatchNCE


def test_patch_nce_matches_a_hand_computed_value():
    # one image, two patches of 2-D unit features; query 0 equals key 0, query 1 is
    # between the keys
    s = 1 / math.sqrt(2)
    q = torch.tensor([[1.0, 0.0], [s, s]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # row 0: positive q0.k0 = 1, negatives: k0 (itself, masked to -10), k1: 0
    # row 1: positive q1.k1 = s, negatives: k0: s, k1 (itself, masked to -10)
    for t in (1.0, 0.07):
        row0 = -1 / t + math.log(math.exp(1 / t) + math.exp(-10 / t) + math.exp(0 / t))
        row1 = -s / t + math.log(math.exp(s / t) + math.exp(s / t) + math.exp(-10 / t))
        got = patch_nce_loss(q, k, images=1, temperature=t)
        assert got.dtype == torch.float32
        assert abs(float(got) - (row0 + row1) / 2) < 1e-5


def test_negatives_come_from_the_same_image_only():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(2 * 5, 4), dim=1)
    k = torch.nn.functional.normalize(torch.randn(2 * 5, 4), dim=1)
    both = patch_nce_loss(q, k, images=2)
    apart = (patch_nce_loss(q[:5], k[:5], images=1) + patch_nce_loss(q[5:], k[5:], images=1)) / 2
    assert torch.allclose(both, apart, atol=1e-6)
    # the second image's keys do not enter the first image's rows: changing them changes
    # the loss only by the second image's own part
    k2 = k.clone()
    k2[5:] = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    changed = patch_nce_loss(q, k2, images=2)
    assert torch.allclose(changed, (patch_nce_loss(q[:5], k[:5], 1) + patch_nce_loss(q[5:], k2[5:], 1)) / 2,
                          atol=1e-6)
    # seen as one image of 10 patches (negatives across the batch) it is another loss
    assert not torch.allclose(both, patch_nce_loss(q, k, images=1))
    # the keys carry no gradient
    qg, kg = q.clone().requires_grad_(True), k.clone().requires_grad_(True)
    patch_nce_loss(qg, kg, images=2).backward()
    assert qg.grad is not None and kg.grad is None


def test_head_samples_the_same_positions_in_each_image_and_projects_to_unit_length():
    torch.manual_seed(0)
    feats = [torch.randn(2, 3, 6, 6), torch.randn(2, 8, 3, 3)]
    head = PatchProjectionHead.from_features(feats, features=16)
    assert head.in_channels == [3, 8]
    out, where = head(feats, num_patches=20)
    assert [tuple(o.shape) for o in out] == [(40, 16), (18, 16)]  # 20 patches; 9 positions only
    assert all(torch.allclose(o.norm(dim=1), torch.ones(len(o)), atol=1e-5) for o in out)
    assert sorted(where[1].tolist()) == list(range(9))
    again, _ = head(feats, num_patches=20, positions=where)
    assert all(torch.equal(a, b) for a, b in zip(out, again))
    # image 1's vector at sampled position p is the MLP of image 1's feature there
    p = int(where[0][3])
    expected = head.mlps[0](feats[0][1].flatten(1)[:, p])
    assert torch.allclose(out[0][20 + 3], expected / expected.norm(), atol=1e-5)


# --------------------------------------------------------------------------- networks


def test_antialiased_networks_follow_the_reference_layout():
    cfg = load_config(None, ["model.generator.name=resnet_9blocks_aa", "model.generator.norm=instance",
                             "model.generator.dropout=false", "model.discriminator.name=patchgan_aa",
                             "model.discriminator.norm=instance"])
    g = build_generator(cfg.model.generator, 3, 3)
    plain = build_generator(load_config(None, ["model.generator.name=resnet_9blocks", "model.generator.norm=instance",
                                               "model.generator.dropout=false"]).model.generator, 3, 3)
    count = sum(p.numel() for p in g.parameters())
    assert count == sum(p.numel() for p in plain.parameters()) == 11_378_179
    assert g.num_layers == 32 and not any("filt" in k for k in g.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = g(x, [0, 4, 8, 12, 16])
        assert [tuple(f.shape[1:]) for f in feats] == [(3, 70, 70), (128, 64, 64), (256, 32, 32),
                                                       (256, 16, 16), (256, 16, 16)]
        assert g(x).shape == x.shape
    cfg.model.generator.antialias = False  # the switch: strided convs, the same layer count
    strided = build_generator(cfg.model.generator, 3, 3)
    assert sum(p.numel() for p in strided.parameters()) == count
    assert strided(x, [4])[0].shape[-1] == 32  # layer 4 is the stride-2 conv there
    d = build_discriminator(cfg.model.discriminator, 3)
    assert d(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # as the 70x70 PatchGAN
    # blur-pool: a constant stays constant, sizes halve and double exactly
    ones = torch.ones(1, 2, 8, 8)
    assert torch.allclose(BlurDownsample(2)(ones), torch.ones(1, 2, 4, 4))
    assert torch.allclose(BlurUpsample(2)(ones), torch.ones(1, 2, 16, 16))
    # and the reference's formulas: [1 2 1] x [1 2 1] / 16 after a reflection pad, stride 2;
    # [1 3 3 1] x [1 3 3 1] / 16 transposed with stride 2 after a replication pad, cropped
    x = torch.randn(1, 2, 6, 10, dtype=torch.float64)
    f3 = torch.tensor([1.0, 2, 1], dtype=torch.float64)
    f4 = torch.tensor([1.0, 3, 3, 1], dtype=torch.float64)
    down = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"),
                                      (f3[:, None] * f3 / 16).expand(2, 1, 3, 3), stride=2, groups=2)
    up = torch.nn.functional.conv_transpose2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"),
                                              (f4[:, None] * f4 / 16).expand(2, 1, 4, 4), stride=2, padding=2,
                                              groups=2)[:, :, 1:-1, 1:-1]
    assert torch.allclose(BlurDownsample(2).double()(x), down) and torch.allclose(BlurUpsample(2).double()(x), up)
    # under CPU autocast the pads keep bf16 (F.pad would go through float32), same values
    xb = torch.randn(1, 2, 5, 6).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for p, mode in ((1, "reflect"), (3, "reflect"), (1, "replicate")):
            got = pad_edges(xb, p, mode)
            assert got.dtype == torch.bfloat16
            assert torch.equal(got, torch.nn.functional.pad(xb.float(), (p, p, p, p), mode=mode).bfloat16())


def test_cut_refuses_generators_without_encoder_layers(tmp_path):
    with pytest.raises(ConfigError, match="model.generator.name: the cut task reads"):
        Trainer(cut_config(tmp_path, tmp_path / "run", "model.generator.name=resnet"))
    with pytest.raises(ConfigError, match=r"task_options.nce_layers: \[0, 40\]"):
        Trainer(cut_config(tmp_path, tmp_path / "run", "task_options.nce_layers=[0,40]"))
    with pytest.raises(ConfigError, match="task_options.mode"):
        Trainer(cut_config(tmp_path, tmp_path / "run", "task_options.mode=fast"))


@pytest.mark.parametrize("recipe, mode, epochs", [("cut/horse2zebra.yaml", "cut", (200, 200)),
                                                   ("cut/horse2zebra_fastcut.yaml", "fastcut", (150, 50))])
def test_recipes_build_the_papers_networks(recipe, mode, epochs):
    from img2img.tasks import build_task

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / recipe)
    task = build_task(config)
    assert task.options.mode == mode and task.options.nce_layers == [0, 4, 8, 12, 16]
    G, D = task.build_generators(), task.build_discriminators()
    assert sum(p.numel() for p in G["G"].parameters()) == 11_378_179 and set(D) == {"D"}
    per_epoch = 1334  # max(|trainA|, |trainB|) of horse2zebra, batch 1
    assert config.train.decay_start == epochs[0] * per_epoch and config.train.max_steps == sum(epochs) * per_epoch
    assert config.loss.pool_size == 0 and config.loss.gan_mode == "lsgan" and config.train.batch_size == 1


# --------------------------------------------------------------------------- the two modes


class Passes:
    """Images through each named network per call (forward hooks on the plain modules)."""

    def __init__(self, trainer: Trainer) -> None:
        self.calls: dict[str, list[int]] = {}
        for name, net in trainer.nets.trained().items():
            net.register_forward_hook(self._hook(name))

    def _hook(self, name):
        def hook(module, args, out):
            first = args[0][0] if isinstance(args[0], list) else args[0]
            self.calls.setdefault(name, []).append(first.shape[0])
        return hook


@pytest.mark.parametrize("mode", ["cut", "fastcut"])
def test_identity_term_for_cut_only_and_the_passes_of_each_mode(mode, task_data, tmp_path):
    trainer = Trainer(cut_config(task_data["cyclegan"], tmp_path / "run", f"task_options.mode={mode}",
                                 "train.batch_size=1"))
    o = trainer.task.options
    assert (o.nce_weight, o.nce_idt, o.flip_equivariance) == ((1.0, True, False) if mode == "cut" else
                                                              (10.0, False, True))
    passes = Passes(trainer)
    batch = trainer.task.prepare(next(trainer.batches()), trainer.device)
    out = trainer.task.forward(trainer.nets.train_G, batch)
    terms = trainer.task.generator_loss(trainer.nets.frozen_D, batch, out)
    if mode == "cut":
        assert set(terms) == {"G_GAN", "NCE", "NCE_idt"}
        assert torch.allclose(terms["NCE"] + terms["NCE_idt"], (out["nce"] + out["nce_idt"]) / 2)
        # G on A and B at once (reading their encoder features on the way), its encoder on
        # (G(A), G(B)); the head on each term's keys and queries; D on G(A) for G's GAN term
        assert passes.calls == {"G": [2, 2], "F": [1, 1, 1, 1], "D": [1]}
    else:
        assert set(terms) == {"G_GAN", "NCE"} and "idt_B" not in out
        assert torch.allclose(terms["NCE"], 10 * out["nce"])
        # under flip-equivariance the keys get their own encoder pass, flipped or not
        assert passes.calls == {"G": [1, 1, 1], "F": [1, 1], "D": [1]}
    trainer.fit()
    logged = {k for r in read_metrics(tmp_path / "run") for k in r if k.startswith("loss/")}
    assert ("loss/NCE_idt" in logged) == (mode == "cut") and "loss/NCE" in logged


def test_head_lives_in_checkpoints_not_in_the_model_and_shapes_are_checked_on_resume(task_data, tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(cut_config(task_data["cyclegan"], run, "train.max_steps=2", "train.save_every=2"))
    head = trainer.nets.extra["G"]["F"]
    assert head.in_channels == [3, 16, 32, 32]  # the encoder's widths at ngf 8, from a batch
    trainer.fit()
    saved = load_file(str(run / "checkpoints" / "step-000002" / "model_2.safetensors"))  # G, D, then F
    state = head.state_dict()
    assert set(saved) == set(state) and len(saved) == 4 * 2 * 2  # 4 MLPs of 2 linear layers
    assert all(torch.equal(saved[k], state[k].cpu()) for k in state)
    exported = load_file(str(run / "model" / "model.safetensors"))
    assert all(k.startswith("G.") for k in exported)
    # a resume whose head would have other shapes is one message naming the network
    with pytest.raises(UserError, match="its network F differs from this run's"):
        Trainer(cut_config(task_data["cyclegan"], run, "train.max_steps=4", "task_options.head_features=8"),
                resume="auto").fit()


def test_head_trains_under_bf16_and_gradient_accumulation(task_data, tmp_path):
    trainer = Trainer(cut_config(task_data["cyclegan"], tmp_path / "run", "mixed_precision=bf16",
                                 "train.grad_accum=2", "train.max_steps=2", "train.batch_size=1"))
    head = trainer.nets.extra["G"]["F"]
    before = [p.detach().clone() for p in head.parameters()]
    trainer.fit()
    assert all(not torch.equal(a, b) for a, b in zip(before, head.parameters()))  # G's optimizer steps it
    assert head.mlps[0][0].weight.dtype == torch.float32  # autocast, not a cast of the weights
    losses = [r for r in read_metrics(tmp_path / "run") if "loss/NCE" in r]
    assert len(losses) == 2 and all(math.isfinite(r["loss/NCE"]) for r in losses)


def test_predict_and_export_use_the_cut_generator(task_data, tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(cut_config(task_data["cyclegan"], run, "train.max_steps=1")).fit()
    save_png(tmp_path / "in.png", smooth_image(np.random.default_rng(0), 30, 42))
    assert main(["predict", str(run), str(tmp_path / "in.png"), "--out", str(tmp_path / "out.png")]) == 0
    assert (tmp_path / "out.png").is_file()
    assert main(["predict", str(run), str(tmp_path / "in.png"), "--out", str(tmp_path / "b.png"),
                 "--direction", "BtoA"]) == 2
    assert "one generator" in capsys.readouterr().err
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "g.onnx")]) == 0
    assert "ONNX Runtime check" in capsys.readouterr().out


# --------------------------------------------------------------------------- resume, torchrun


def test_resume_after_sigkill_is_bit_identical(task_data, tmp_path):
    # flip-equivariance on with the identity term: every random draw of both modes
    steps = ["train.max_steps=8", "train.save_every=3", "train.batch_size=2",
             "task_options.flip_equivariance=true"]
    kill_resume_and_compare(tmp_path, lambda run: cut_config(task_data["cyclegan"], run, *steps), kill_at=3,
                            files=["model/model.safetensors", "checkpoints/step-000008/model_2.safetensors"])  # G; the head


DRIVER = """
import json, os, sys
import torch
from img2img.config import load_config
from img2img.engine import Trainer
cfg = load_config(sys.argv[1])
trainer = Trainer(cfg)
trainer.fit()
out = os.path.join(cfg.output_dir, f"rank{trainer.rank}.pt")
nets = {**trainer.nets.G, **trainer.nets.extra["G"]}
torch.save({f"{n}.{k}": v.cpu() for n, net in nets.items() for k, v in net.state_dict().items()}, out)
"""


@pytest.mark.parametrize("mode, port", [("cut", 29531), ("fastcut", 29532)])
def test_two_process_torchrun_with_the_head(mode, port, task_data, tmp_path):
    # cut: the keys read during G's pass (a tuple through DDP); fastcut: each process
    # draws its own flips, and both run the same passes
    run = tmp_path / "run"
    device = "device=cpu" if torch.cuda.is_available() else "device=auto"
    save_config(cut_config(task_data["cyclegan"], run, "train.max_steps=3", "train.batch_size=1",
                           f"task_options.mode={mode}", device), tmp_path / "c.yaml")
    (tmp_path / "driver.py").write_text(DRIVER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(tmp_path / "driver.py"), str(tmp_path / "c.yaml")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    w0, w1 = (torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert any(k.startswith("F.") for k in w0)
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    assert len(list_checkpoints(run)) == 1
    assert [r["step"] for r in read_metrics(run) if "loss/NCE" in r] == [1, 2, 3]


# --------------------------------------------------------------------------- collapse guard


def test_collapse_guard_tells_a_constant_output_from_a_varied_one():
    torch.manual_seed(0)
    inputs = [torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(HISTORY // 2)]
    constant = CollapseGuard({"fake_B": "A"}, threshold=0.05, warmup=0)
    varied = CollapseGuard({"fake_B": "A"}, threshold=0.05, warmup=0)
    for x in inputs:
        constant.observe({"A": x}, {"fake_B": torch.full_like(x, 0.3)})
        varied.observe({"A": x}, {"fake_B": -0.5 * x})
    low, ok = float(constant.ratios()["collapse/fake_B"]), float(varied.ratios()["collapse/fake_B"])
    assert low < 1e-6 and abs(ok - 0.5) < 1e-5
    assert varied.check(40, {"collapse/fake_B": ok}) is None
    message = constant.check(40, {"collapse/fake_B": low})
    assert "step 40" in message and "fake_B" in message and "train.lr_g" in message
    assert constant.check(41, {"collapse/fake_B": low}) is None  # once
    early = CollapseGuard({"fake_B": "A"}, threshold=0.05, warmup=100)
    assert early.check(40, {"collapse/fake_B": 0.0}) is None  # before the warm-up


@pytest.mark.parametrize("collapsed", [True, False])
def test_collapse_guard_warns_on_a_collapsed_run_only(collapsed, task_data, tmp_path, caplog):
    run = tmp_path / "run"
    trainer = Trainer(cut_config(task_data["cyclegan"], run, "train.max_steps=8", "log.every=4",
                                 "log.collapse_warmup=0", "train.lr_g=0", "task_options.mode=fastcut"))
    if collapsed:  # the last conv gives its bias whatever it is shown: a constant image
        with torch.no_grad():
            trainer.nets.G["G"].layers[-2].weight.zero_()
    logger = logging.getLogger("img2img")  # it stops propagating once the command line set it up
    logger.addHandler(caplog.handler)
    try:
        trainer.fit()
    finally:
        logger.removeHandler(caplog.handler)
    ratios = [r["collapse/fake_B"] for r in read_metrics(run) if "collapse/fake_B" in r]
    assert len(ratios) == 1  # step 8: 16 images seen, the history is full
    # (one record may reach caplog's handler twice: through the root logger and directly)
    warned = sorted({r.message for r in caplog.records if "hardly vary" in r.message})
    if collapsed:
        assert ratios[0] < 1e-3 and len(warned) == 1 and "step 8" in warned[0]
        assert "task_options.mode=cut" in warned[0]  # FastCUT's own remedy
    else:
        assert ratios[0] > 0.05 and not warned


# --------------------------------------------------------------------------- benchmark


def test_bench_train_runs_cut_and_compares_with_cyclegan():
    tools = str(Path(__file__).resolve().parents[1] / "tools")
    sys.path.insert(0, tools)
    try:
        import bench_train
        import bench_train_run
    finally:
        sys.path.remove(tools)
    same = {"size": 256, "mode": "fp32", "device": "cpu"}
    rows = bench_train.versus_cyclegan([
        {"task": "cyclegan", "batch": 1, **same, "ms_per_step": 1000.0, "added_mb": 400.0},
        {"task": "cut", "batch": 1, **same, "ms_per_step": 700.0, "added_mb": 300.0},
        {"task": "fastcut", "batch": 8, **same, "ms_per_step": 900.0, "added_mb": 350.0},  # no CycleGAN row
    ])
    assert rows[1]["vs_cyclegan_ms"] == pytest.approx(0.7) and rows[1]["vs_cyclegan_mem"] == pytest.approx(0.75)
    assert "vs_cyclegan_ms" not in rows[0] and "vs_cyclegan_ms" not in rows[2]
    row = bench_train_run.run_case({"task": "fastcut", "batch": 1, "size": 32, "mode": "fp32", "device": "cpu",
                                    "steps": 1, "budget_s": None, "warmup": 1})
    assert row["network"] == "resnet_9blocks_aa" and row["steps"] == 1 and row["ms_per_step"] > 0


# --------------------------------------------------------------------------- demo


def test_demo_trains_cyclegan_and_cut_and_reports_fid_kid_side_by_side(tmp_path, capsys):


    made_up_fid_weights(tmp_path / "fid.safetensors")
    code = main(["demo", "unpaired", "--method", "all", "--steps", "1", "--out", str(tmp_path / "runs"),
                 "--data", str(tmp_path / "sample"), f"eval.fid_weights={tmp_path / 'fid.safetensors'}",
                 "data.max_val_images=3", "log.wandb=off", "log.progress=false", "device=cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    for run in ("unpaired", "unpaired_cut"):  # each method in its own run directory
        assert (tmp_path / "runs" / run / "model" / "model.safetensors").is_file()
    config = json.loads((tmp_path / "runs" / "unpaired_cut" / "model" / "config.json").read_text())
    assert config["config"]["task"] == "cut"
    table = out.split("side by side", 1)[1].splitlines()
    assert table[1].split() == ["method", "fid", "kid", "is"]  # the Inception Score comes with FID
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in table[2:] if line.strip()}
    assert set(rows) == {"cyclegan", "cut", "baseline"} and all(len(v) == 3 for v in rows.values())
    assert all(v[0] > 0 for v in rows.values())  # FID of 3 images against 3, random features


def test_demo_says_where_to_get_the_fid_weights(capsys):
    from img2img.demo import _report, _side_by_side, chosen_methods
    from img2img.metrics.fid import FID_WEIGHTS_URL

    assert chosen_methods("unpaired", None) == ["cyclegan"] and chosen_methods("unpaired", "cut") == ["cut"]
    with pytest.raises(UserError, match="trained by cyclegan, cut"):
        chosen_methods("unpaired", "pix2pix")
    _report("unpaired", {"run_dir": "runs/demo/unpaired_cut", "seconds": 3.0, "step": 2, "eval": None,
                         "metrics": "distribution"})
    _side_by_side("unpaired", {"cyclegan": {"eval": None}, "cut": {"eval": None}})
    out = capsys.readouterr().out
    assert out.count(FID_WEIGHTS_URL) == 2 and out.count("eval.fid_weights=PATH") == 2
