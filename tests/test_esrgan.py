"""ESRGAN-family training: the relativistic GAN, the esrgan task on rrdbnet/srvgg_compact/
span with the vgg128 and unet_sn discriminators, exact resume, bf16 + EMA, two processes,
tiled prediction and ONNX export of the new networks, and their published sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import img2img
from img2img.config import load_config, save_config
from img2img.engine import Trainer
from img2img.errors import ConfigError
from img2img.losses import GANLoss, PerceptualLoss
from img2img.model_io import save_model
from img2img.summary import count_parameters, summary_table
from img2img.tasks import build_generators, build_networks, build_task
from tests.tiny import TINY, make_task_data

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- losses


def test_ragan_is_esrgans_relativistic_average_bce():
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(2, 1, 4, 4, generator=gen).requires_grad_(True)
    f = torch.randn(2, 1, 4, 4, generator=gen).requires_grad_(True)
    gan = GANLoss("ragan")
    real, fake = gan.discriminator_terms(r, f)
    # softplus(-x) is BCE with label 1, softplus(x) with label 0
    assert torch.allclose(real, F.softplus(-(r - f.mean())).mean())
    assert torch.allclose(fake, F.softplus(f - r.mean()).mean())
    # the other side's mean is detached in D's terms, as BasicSR's ESRGANModel does
    assert torch.autograd.grad(real, f, allow_unused=True)[0] is None
    assert torch.autograd.grad(fake, r, allow_unused=True)[0] is None
    g = gan.generator_loss(f, real_logits=r)
    expected = (F.softplus(r - f.mean()).mean() + F.softplus(-(f - r.mean())).mean()) / 2
    assert torch.allclose(g, expected)
    assert torch.autograd.grad(g, r, allow_unused=True)[0] is None  # D's real logits: no gradient
    assert torch.autograd.grad(g, f)[0].abs().sum() > 0
    with pytest.raises(ValueError, match="needs real_logits"):
        gan.generator_loss(f)


def test_per_pixel_realness_maps_work_with_every_objective():
    """unet_sn's output is a logit per pixel; each objective is a mean over the map."""
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(GANLoss("vanilla").generator_loss(x), F.softplus(-x).mean())
    assert torch.allclose(GANLoss("lsgan").discriminator_terms(x, x)[1], (x**2).mean())
    assert torch.allclose(GANLoss("hinge").discriminator_terms(x, x)[0], F.relu(1 - x).mean())


def test_perceptual_loss_with_real_esrgans_layer_weights():
    layers = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    loss = PerceptualLoss(layers, weights="none")
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    feats_x, feats_y = loss.vgg(x), loss.vgg(y)
    expected = sum(w * (feats_x[k] - feats_y[k]).abs().mean() for k, w in layers.items())
    assert torch.allclose(loss(x, y), expected)


def test_ragan_and_generators_are_refused_where_they_do_not_apply():
    with pytest.raises(ConfigError, match="loss.gan_mode: the srgan task supports vanilla"):
        build_task(load_config(None, ["task=srgan", "model.generator.name=srresnet", "loss.gan_mode=ragan"]))
    with pytest.raises(ConfigError, match="the esrgan task needs rrdbnet or srvgg_compact or span"):
        build_task(load_config(None, ["task=esrgan", "model.generator.name=unet"]))
    with pytest.raises(ConfigError, match="rrdbnet upsamples by 1, 2 or 4, got 3"):
        build_networks(load_config(None, ["task=esrgan", "model.generator.name=rrdbnet", "data.scale=3"]))
    with pytest.raises(ConfigError, match="span has a fixed six blocks"):
        build_networks(load_config(None, ["task=esrgan", "model.generator.name=span", "model.generator.n_blocks=4"]))
    with pytest.raises(ConfigError, match="eval.metric: lpips needs eval.lpips"):
        build_task(load_config(None, ["task=esrgan", "model.generator.name=rrdbnet", "eval.every=5",
                                      "eval.metric=lpips"]))


# --------------------------------------------------------------------------- sizes


PUBLISHED = [  # (overrides, network, parameters): the reference code's default sizes
    ([], "G", 16_697_987),  # ESRGAN RRDBNet x4: 64 features, 23 RRDBs, growth 32
    ([], "D", 14_499_401),  # ESRGAN VGGStyleDiscriminator128
    (["model.generator.name=srvgg_compact"], "G", 621_424),  # 16 convs (reference default)
    (["model.generator.name=srvgg_compact", "model.generator.n_blocks=32"], "G", 1_213_296),  # general-x4v3
    (["model.generator.name=span", "model.generator.ngf=48"], "G", 1_840_488),  # training form
    (["model.discriminator.name=unet_sn"], "D", 4_376_897),  # Real-ESRGAN U-Net discriminator
]


@pytest.mark.parametrize("overrides, net, count", PUBLISHED)
def test_default_sizes_are_the_published_ones(overrides, net, count):
    base = ["task=esrgan", "model.generator.name=rrdbnet", "model.discriminator.name=vgg128"]
    nets = build_networks(load_config(None, [*base, *overrides]))
    assert count_parameters(nets[net]) == count


def test_summary_command_shows_esrgans_sizes():
    out = subprocess.run([sys.executable, "-m", "img2img", "summary", "configs/esrgan/esrgan_x4.yaml", "--json"],
                         capture_output=True, text=True, timeout=180, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"G": 16_697_987, "D": 14_499_401}
    table = summary_table(build_networks(load_config(str(REPO / "configs/esrgan/rrdb_psnr_x4.yaml"))))
    assert ["G", "RRDBNet", "16,697,987"] in [line.split() for line in table.splitlines()]


def test_span_merged_form_has_the_inference_size():
    from img2img.sr_weights import to_original

    net = build_generators(load_config(None, ["task=esrgan", "model.generator.name=span", "model.generator.ngf=48"]))["G"]
    merged = {k: v for k, v in to_original(net).items()
              if ".eval_conv." in k or k.startswith(("conv_cat.", "upsampler."))}
    assert sum(v.numel() for v in merged.values()) == 426_288


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def sr_data(tmp_path_factory):
    base = tmp_path_factory.mktemp("esrgan_data")
    return {"small": make_task_data(base / "small", "srgan"),
            "large": make_task_data(base / "large", "srgan", n_train=4, n_val=1, size=128)}


def esrgan_overrides(data: Path, out: Path, *extra: str) -> list[str]:
    return [*TINY["common"], "task=esrgan", "loss.pixel_weight=1", "loss.gan_weight=0.1",
            "eval.metric=psnr_y", f"data.root={data}", f"output_dir={out}", *extra]


RRDB_VGG128 = ["model.generator.name=rrdbnet", "model.generator.n_blocks=1", "data.scale=4",
               "data.gt_size=128", "model.discriminator.name=vgg128", "loss.gan_mode=ragan",
               "loss.perceptual_weight=1", "loss.vgg_weights=none", "train.scheduler=constant",
               "loss.perceptual_layers={conv1_2: 0.1, conv2_2: 0.1}"]  # shallow: cheap on 128 px


def test_esrgan_rrdbnet_vgg128_ragan_resumes_bit_identically(sr_data, tmp_path):
    straight = Trainer(load_config(None, esrgan_overrides(
        sr_data["large"], tmp_path / "a", *RRDB_VGG128, "train.max_steps=4", "train.save_every=2")))
    summary = straight.fit()
    assert summary["step"] == 4
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    terms = {k for r in rows for k in r if k.startswith("loss/")}
    assert {"loss/G_L1", "loss/G_perceptual", "loss/G_GAN", "loss/D_real", "loss/D_fake"} <= terms

    Trainer(load_config(None, esrgan_overrides(
        sr_data["large"], tmp_path / "b", *RRDB_VGG128, "train.max_steps=2", "train.save_every=2"))).fit()
    Trainer(load_config(None, esrgan_overrides(
        sr_data["large"], tmp_path / "b", *RRDB_VGG128, "train.max_steps=4", "train.save_every=2")),
        resume="auto").fit()
    a, b = (load_file(str(tmp_path / run / "model" / "model.safetensors")) for run in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("generator", ["srvgg_compact", "span"])
def test_compact_and_span_train_with_unet_sn_in_bf16_with_ema(generator, sr_data, tmp_path):
    """... and LPIPS picks the best model (eval.metric: lpips, files the test makes)."""
    from tests.test_lpips import make_files

    _, _, lin_file, backbone = make_files(tmp_path, "alex")
    run = tmp_path / "run"
    trainer = Trainer(load_config(None, esrgan_overrides(
        sr_data["small"], run, f"model.generator.name={generator}", "model.generator.n_blocks=1"
        if generator == "srvgg_compact" else "seed=2", "data.scale=2", "data.gt_size=32",
        "model.discriminator.name=unet_sn", "mixed_precision=bf16", "train.ema=0.9", "eval.every=3",
        "eval.metric=lpips", "eval.lpips=alex", f"eval.lpips_weights={lin_file}",
        f"eval.lpips_backbone={backbone}")))
    before = {k: v.clone() for k, v in trainer.nets.G["G"].state_dict().items()}
    summary = trainer.fit()
    assert summary["step"] == 3 and summary["best"]["metric"] == "lpips"
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if "eval/lpips" in line]
    assert evals and evals[-1]["eval/lpips"] == summary["best"]["value"] > 0
    assert evals[-1]["eval_baseline/lpips"] > 0
    after = trainer.nets.G["G"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    exported = load_file(str(run / "model" / "model.safetensors"))
    ema = trainer.nets.for_eval()["G"].state_dict()
    assert all(torch.equal(exported[f"G.{k}"], v.cpu()) for k, v in ema.items())  # the average is exported


DRIVER = r"""
import sys, torch
from img2img.config import load_config
from img2img.engine import Trainer
cfg = load_config(sys.argv[1])
trainer = Trainer(cfg)
trainer.fit()
state = {k: v.cpu() for k, v in trainer.nets.G["G"].state_dict().items()}
state.update({"D." + k: v.cpu() for k, v in trainer.nets.D["D"].state_dict().items()})
torch.save(state, f"{cfg.output_dir}/rank{trainer.rank}.pt")
"""


def test_two_processes_train_rrdbnet_with_unet_sn_and_ragan(sr_data, tmp_path):
    run = tmp_path / "run"
    cfg = load_config(None, esrgan_overrides(
        sr_data["small"], run, "model.generator.name=rrdbnet", "model.generator.n_blocks=1",
        "data.scale=2", "data.gt_size=32", "model.discriminator.name=unet_sn", "loss.gan_mode=ragan",
        "train.batch_size=1", "eval.every=3"))
    save_config(cfg, tmp_path / "c.yaml")
    (tmp_path / "driver.py").write_text(DRIVER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           str(tmp_path / "driver.py"), str(tmp_path / "c.yaml")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    w0, w1 = (torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert w0.keys() == w1.keys() and any(k.endswith("_u") for k in w0)  # spectral norm's state too
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key


# --------------------------------------------------------------------------- inference, export


NETS = {
    "rrdbnet": ["model.generator.name=rrdbnet", "model.generator.n_blocks=1", "data.scale=2"],
    "srvgg_compact": ["model.generator.name=srvgg_compact", "model.generator.n_blocks=2", "data.scale=4"],
    "span": ["model.generator.name=span", "data.scale=3"],
}


def saved(tmp_path: Path, name: str) -> Path:
    config = load_config(None, ["task=esrgan", "model.generator.ngf=8", "model.discriminator.name=none", *NETS[name]])
    torch.manual_seed(0)
    nets = build_generators(config)
    with torch.no_grad():
        for p in nets["G"].parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return save_model(tmp_path / name, config, nets)


@pytest.mark.parametrize("name", list(NETS))
def test_tiled_prediction_matches_whole_and_onnx_export_checks(name, tmp_path):
    from img2img.export import export_onnx

    t = img2img.load(saved(tmp_path, name), device="cpu")
    x = np.random.default_rng(0).random((70, 58, 3)).astype(np.float32)
    whole = t(x)
    tiled = t(x, tile=32, tile_overlap=16, batch_size=2)
    assert whole.shape == tiled.shape == (70 * t.scale, 58 * t.scale, 3)
    psnr = 10 * np.log10(1 / np.mean((whole.astype(np.float64) - tiled) ** 2))
    assert psnr > 45, psnr
    diffs = export_onnx(t.net, tmp_path / f"{name}.onnx")
    assert len(diffs) == 2 and max(diffs) < 1e-4


def test_rrdbnet_growth_is_a_key_and_others_refuse_it():
    from img2img.config import load_config
    from img2img.errors import ConfigError
    from img2img.tasks import build_generators

    def count(*overrides):
        config = load_config(None, ["task=esrgan", "model.generator.name=rrdbnet", "data.scale=4",
                                    "model.generator.ngf=8", "model.generator.n_blocks=1", *overrides])
        return sum(p.numel() for p in build_generators(config)["G"].parameters())

    # one RRDB = 3 dense blocks of 5 convs 3x3: conv k reads 8 + (k-1) * g channels and
    # writes g (the 5th writes 8): the difference between g = 4 and g = 32 per dense block
    def dense(g):
        return sum((8 + k * g) * g * 9 + g for k in range(4)) + (8 + 4 * g) * 8 * 9 + 8
    assert count() - count("model.generator.growth=4") == 3 * (dense(32) - dense(4))
    with pytest.raises(ConfigError, match="model.generator.growth: only rrdbnet .* not srvgg_compact"):
        count("model.generator.name=srvgg_compact", "model.generator.growth=4")
