"""StarGAN and the engine's critic steps: the reference's networks (layout and parameter
count), conditioning on the target domain, the two D heads and every loss term against
hand-computed values, the D/G update schedule of ``train.d_steps_per_g_step`` and its
exact resume after SIGKILL and under torchrun, predict --to / --to all, the Python API's
domain, ONNX with the domain input, and FID/KID per target domain."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from img2img.cli import main
from img2img.config import load_config, save_config
from img2img.engine import Trainer
from img2img.errors import ConfigError, DataError, UserError
from img2img.nets import build_discriminator, build_generator
from img2img.nets.stargan import DomainPatchDiscriminator, DomainResnetGenerator
from img2img.tasks import build_task
from img2img.tasks.stargan import domain_maps
from tests.tiny import TINY, kill_resume_and_compare, made_up_fid_weights, save_png, smooth_image

STARGAN = [
    *TINY["common"], "task=stargan", "model.generator.name=stargan_resnet", "model.generator.n_blocks=1",
    "model.discriminator.name=stargan_patchgan", "loss.gan_mode=wgangp", "eval.metric=fid",
    "data.preprocess=resize_and_crop", "data.load_size=36", "data.crop_size=32",
]
DOMAINS = {"inverted": lambda x: 255 - x, "plain": lambda x: x, "swapped": lambda x: x[..., ::-1].copy()}


@pytest.fixture(scope="module")
def domain_data(tmp_path_factory) -> Path:
    """train/<domain>/ (4 images each) and val/<domain>/ (2 each), three domains."""
    root = tmp_path_factory.mktemp("domains")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for name, make in DOMAINS.items():
            for i in range(n):
                save_png(root / split / name / f"{i}.png", make(smooth_image(rng, 40, 40)))
    return root


def sg_config(data: Path, out: Path, *extra: str):
    return load_config(None, [*STARGAN, f"data.root={data}", f"output_dir={out}", *extra])


@pytest.fixture(scope="module")
def trained(domain_data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("sg") / "run"
    Trainer(sg_config(domain_data, run, "train.max_steps=2", "train.d_steps_per_g_step=2")).fit()
    return run


# --------------------------------------------------------------------------- networks


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_default_networks_have_the_reference_parameter_counts():
    # yunjey/stargan model.py, Generator(conv_dim=64, c_dim=5, repeat_num=6) and
    # Discriminator(image_size=128, conv_dim=64, c_dim=5, repeat_num=6) (the CelebA
    # defaults of its main.py), counted with PyTorch: 8,430,528 and 44,762,048.
    config = load_config(None, ["task=stargan", "model.generator.name=stargan_resnet",
                                "model.discriminator.name=stargan_patchgan", "model.discriminator.n_layers=6",
                                "data.crop_size=128", "task_options.domains=[a,b,c,d,e]"])
    task = build_task(config)
    G, D = task.build_generators()["G"], task.build_discriminators()["D"]
    assert (count(G), count(D)) == (8_430_528, 44_762_048)
    assert G.in_channels == 8 and D.classify.kernel_size == (2, 2)


def test_layers_follow_the_reference():
    G = DomainResnetGenerator(3 + 2, 3, ngf=8, n_blocks=2)
    convs = [m for m in G.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert all(m.bias is None and m.padding_mode == "zeros" for m in convs)  # zero padding, no bias
    assert [m.kernel_size[0] for m in convs] == [7, 4, 4, 3, 3, 3, 3, 4, 4, 7]
    norms = [m for m in G.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms and all(n.affine for n in norms)
    D = DomainPatchDiscriminator(3, ndf=8, n_layers=3, domains=4, image_size=32)
    assert not any(isinstance(m, (torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d)) for m in D.modules())
    assert all(m.negative_slope == 0.01 for m in D.modules() if isinstance(m, torch.nn.LeakyReLU))
    src, cls = D(torch.zeros(2, 3, 32, 32))
    assert src.shape == (2, 1, 4, 4) and cls.shape == (2, 4)
    assert D.realness.bias is None and D.classify.bias is None


def test_changing_the_target_domain_changes_the_output():
    torch.manual_seed(0)
    G = DomainResnetGenerator(3 + 3, 3, ngf=8, n_blocks=1)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    outs = [G(domain_maps(x, torch.tensor([d]), 3)) for d in range(3)]
    assert all((outs[a] - outs[b]).abs().max() > 1e-3 for a, b in ((0, 1), (0, 2), (1, 2)))
    maps = domain_maps(x, torch.tensor([2]), 3)
    assert torch.equal(maps[:, :3], x) and torch.equal(maps[0, 3:], torch.tensor([0, 0, 1.0])[:, None, None].expand(3, 16, 16))


# --------------------------------------------------------------------------- losses


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    rows = logits.double().tolist()
    return sum(math.log(sum(math.exp(v) for v in row)) - row[y] for row, y in zip(rows, labels.tolist())) / len(rows)


def test_both_heads_and_every_loss_term_against_hand_computed_values(domain_data):
    task = build_task(sg_config(domain_data, Path("unused"), "task_options.cls_weight=2", "task_options.rec_weight=3"))
    torch.manual_seed(0)
    D = build_discriminator(task.config.model.discriminator, 3, domains=3, image_size=32)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    batch = {"A": x, "label": torch.tensor([0, 2])}
    out = {"fake": torch.rand(2, 3, 32, 32) * 2 - 1, "rec": torch.rand(2, 3, 32, 32) * 2 - 1,
           "target": torch.tensor([1, 0])}
    d = task.discriminator_loss({"D": D}, batch, out, lambda name, t: t)
    with torch.no_grad():
        real_src, real_cls = D(x)
        fake_src, fake_cls = D(out["fake"])
    assert d["D_real"].item() == pytest.approx(-real_src.double().mean().item(), abs=1e-6)
    assert d["D_fake"].item() == pytest.approx(fake_src.double().mean().item(), abs=1e-6)
    assert d["D_cls"].item() == pytest.approx(2 * _cross_entropy(real_cls, batch["label"]), rel=1e-5)
    assert set(d) == {"D_real", "D_fake", "D_cls", "D_gp"}
    g = task.generator_loss({"D": D}, batch, out)
    assert g["G_GAN"].item() == pytest.approx(-fake_src.double().mean().item(), abs=1e-6)
    assert g["G_cls"].item() == pytest.approx(2 * _cross_entropy(fake_cls, out["target"]), rel=1e-5)
    assert g["G_rec"].item() == pytest.approx(3 * (out["rec"] - x).abs().double().mean().item(), rel=1e-5)


class LinearCritic(torch.nn.Module):
    """realness = sum(w * x) per image (gradient w everywhere), and a domain head."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        src = (x * self.w).sum((1, 2, 3))[:, None, None, None]
        return src, torch.zeros(x.shape[0], 3)


def test_gradient_penalty_is_on_the_realness_head_with_weight_10(domain_data):
    task = build_task(sg_config(domain_data, Path("unused")))
    w = torch.full((1, 3, 4, 4), 0.5)  # ||w|| = 0.5 * sqrt(48)
    x = torch.rand(2, 3, 4, 4)
    terms = task.discriminator_loss({"D": LinearCritic(w)}, {"A": x, "label": torch.tensor([0, 1])},
                                    {"fake": torch.rand(2, 3, 4, 4)}, lambda n, t: t)
    assert terms["D_gp"].item() == pytest.approx(10 * (0.5 * math.sqrt(48) - 1) ** 2, rel=1e-5)
    assert terms["D_cls"].item() == pytest.approx(math.log(3), rel=1e-6)  # zero logits


# --------------------------------------------------------------------------- the critic schedule


def test_each_step_is_k_d_updates_and_one_g_update(domain_data, tmp_path):
    trainer = Trainer(sg_config(domain_data, tmp_path / "run", "train.max_steps=2", "train.d_steps_per_g_step=3"))
    trainer.fit()
    adam_steps = {side: {int(s["step"]) for s in opt.state.values()}
                  for side, opt in (("G", trainer.optim.G), ("D", trainer.optim.D))}
    assert adam_steps == {"G": {2}, "D": {6}}
    assert trainer.epoch * 6 + trainer.batch_in_epoch == 6  # 12 images, batch 2: six batches consumed
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss/G_rec" in r] == [1, 2]
    assert rows[0]["lr/G"] == rows[0]["lr/D"] == 2e-4 and rows[1]["lr/G"] == pytest.approx(1e-4)


def test_extra_critic_steps_need_a_discriminator(domain_data, tmp_path):
    with pytest.raises(ConfigError, match="d_steps_per_g_step"):
        Trainer(sg_config(domain_data, tmp_path / "r", "train.d_steps_per_g_step=2", "model.discriminator.name=none"))


def test_resume_after_sigkill_is_bit_identical(domain_data, tmp_path):
    steps = ["train.max_steps=6", "train.save_every=2", "train.d_steps_per_g_step=2"]
    kill_resume_and_compare(tmp_path, lambda run: sg_config(domain_data, run, *steps), kill_at=2,
                            files=["model/model.safetensors", "checkpoints/step-000006/model_1.safetensors"])  # G; D


DRIVER = """
import os, sys
import torch
from img2img.config import load_config
from img2img.engine import Trainer
cfg = load_config(sys.argv[1])
trainer = Trainer(cfg)
trainer.fit()
nets = {**trainer.nets.G, **trainer.nets.D}
state = {f"{n}.{k}": v.cpu() for n, net in nets.items() for k, v in net.state_dict().items()}
state["adam_steps"] = torch.tensor([int(next(iter(o.state.values()))["step"]) for o in (trainer.optim.G, trainer.optim.D)])
torch.save(state, os.path.join(cfg.output_dir, f"rank{trainer.rank}.pt"))
"""


def test_two_process_torchrun(domain_data, tmp_path):
    run = tmp_path / "run"
    device = "device=cpu" if torch.cuda.is_available() else "device=auto"
    save_config(sg_config(domain_data, run, "train.max_steps=2", "train.batch_size=1",
                          "train.d_steps_per_g_step=2", device), tmp_path / "c.yaml")
    (tmp_path / "driver.py").write_text(DRIVER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
           str(tmp_path / "driver.py"), str(tmp_path / "c.yaml")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    w0, w1 = (torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert w0["adam_steps"].tolist() == [2, 4]
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key


# --------------------------------------------------------------------------- data, model, predict


def test_domains_are_found_in_sorted_order_and_saved_with_the_model(trained):
    saved = json.loads((trained / "model" / "config.json").read_text())["config"]
    assert saved["task_options"]["domains"] == ["inverted", "plain", "swapped"]


def test_a_domain_missing_from_the_train_split_is_named(domain_data, tmp_path):
    with pytest.raises(DataError, match="blond missing"):
        build_task(sg_config(domain_data, tmp_path / "r", "task_options.domains=[plain,blond]")).build_dataset("train")


def test_python_api_takes_the_domain_by_name_or_index(trained):
    import img2img

    t = img2img.load(trained)
    x = smooth_image(np.random.default_rng(1), 20, 28)
    by_name, by_index = t(x, domain="swapped"), t(x, domain=2)
    assert by_name.shape == x.shape and np.array_equal(by_name, by_index)
    both = t([x, x], domain=["plain", "swapped"])
    assert np.array_equal(both[1], by_name) and not np.array_equal(both[0], by_name)
    assert np.array_equal(t(x, domain=np.int64(2)), by_name)  # e.g. from np.argmax
    with pytest.raises(UserError, match="unknown domain 'blond'; this model knows inverted, plain, swapped"):
        t(x, domain="blond")
    with pytest.raises(UserError, match="needs the input 'domain'"):
        t(x)


def test_predict_to_one_domain_to_all_and_an_unknown_one(trained, tmp_path, capsys):
    photos = tmp_path / "in"
    for i in range(2):
        save_png(photos / f"p{i}.png", smooth_image(np.random.default_rng(i), 24, 20))
    assert main(["predict", str(trained), str(photos), "--out", str(tmp_path / "one"), "--to", "plain"]) == 0
    assert sorted(p.name for p in (tmp_path / "one").glob("*.png")) == ["p0.png", "p1.png"]
    assert main(["predict", str(trained), str(photos), "--out", str(tmp_path / "all"), "--to", "all"]) == 0
    for name in DOMAINS:
        assert sorted(p.name for p in (tmp_path / "all" / name).glob("*.png")) == ["p0.png", "p1.png"]
    assert (tmp_path / "all" / "plain" / "p0.png").read_bytes() == (tmp_path / "one" / "p0.png").read_bytes()
    capsys.readouterr()
    assert main(["predict", str(trained), str(photos), "--out", str(tmp_path / "bad"), "--to", "blond"]) == 2
    assert "unknown domain 'blond'; this model knows inverted, plain, swapped" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["predict", str(trained), str(photos), "--out", str(tmp_path / "none")]) == 2
    assert "--to DOMAIN|all" in capsys.readouterr().err


def test_onnx_export_takes_the_domain_as_an_input(trained, tmp_path):
    import onnxruntime as ort

    import img2img

    assert main(["export", str(trained), "--format", "onnx", "--out", str(tmp_path / "g.onnx")]) == 0
    session = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input", "domain"]
    t = img2img.load(trained)
    x = torch.rand(3, 3, 21, 18, generator=torch.Generator().manual_seed(0))
    domain = np.array([2, 0, 1], dtype=np.int64)
    got = session.run(["output"], {"input": x.numpy(), "domain": domain})[0]
    expected = t(x, domain=torch.from_numpy(domain)).numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_eval_scores_each_target_domain_against_its_real_images(trained, domain_data, tmp_path, capsys):
    from PIL import Image


    made_up_fid_weights(tmp_path / "fid.safetensors")
    # two of the three domains (the outputs into the third have no real images to meet)
    for name in ("plain", "swapped"):
        for i, path in enumerate(sorted((domain_data / "val" / name).glob("*.png"))):
            save_png(tmp_path / "val" / name / f"{i}.png", np.asarray(Image.open(path)))
    code = main(["eval", str(trained), "--data", str(tmp_path / "val"), "--fid-weights",
                 str(tmp_path / "fid.safetensors"), "--json", "--device", "cpu"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["groups"]) == {"plain", "swapped"}
    for which in ("model", "baseline"):
        per_domain = [g[which]["fid"] for g in result["groups"].values()]
        assert all(v > 0 for v in per_domain)
        assert result[which]["fid"] == pytest.approx(sum(per_domain) / 2)
    # the identity baseline of "plain" is the swapped inputs themselves, against the plain images
    assert result["groups"]["plain"]["baseline"]["fid"] != result["groups"]["swapped"]["baseline"]["fid"]
    assert result["images"] == {"A": 4, "B": 4}


def test_config_checks_name_the_key(domain_data, tmp_path):
    with pytest.raises(ConfigError, match="stargan_resnet"):
        build_task(sg_config(domain_data, tmp_path, "model.generator.name=resnet"))
    with pytest.raises(ConfigError, match="loss.feature_matching_weight: the stargan task has no feature"):
        build_task(sg_config(domain_data, tmp_path, "loss.feature_matching_weight=10"))
    with pytest.raises(ConfigError, match="multiple of 4"):
        build_task(sg_config(domain_data, tmp_path, "data.crop_size=30", "data.load_size=30"))
    G = build_generator(sg_config(domain_data, tmp_path).model.generator, 6, 3)
    assert isinstance(G, DomainResnetGenerator)


@pytest.mark.parametrize("preprocess", ["none", "scale_width"])
def test_training_without_a_fixed_crop_is_refused_naming_the_key(domain_data, tmp_path, preprocess):
    # The domain head covers a data.crop_size image: 40 px images through a head built for
    # 64 px were a shape traceback at the first step (and at 32 px silently another head).
    with pytest.raises(ConfigError, match=f"data.preprocess: .* data.crop_size \\(64 px\\), and preprocess={preprocess}"):
        Trainer(sg_config(domain_data, tmp_path / "run", f"data.preprocess={preprocess}", "data.crop_size=64",
                          "data.load_size=64"))
    assert not (tmp_path / "run" / "checkpoints").exists()
    # evaluation and prediction still read whole images (no discriminator there)
    task = build_task(sg_config(domain_data, tmp_path / "run", "data.preprocess=none"))
    assert task.build_generators()["G"].in_channels == 6


def test_a_resume_with_another_domain_list_is_refused(trained, domain_data, tmp_path):
    """The networks learned the domains by index: the same count in another order (or names)
    would silently translate into the wrong domains."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    config = sg_config(domain_data, run, "train.max_steps=3", "task_options.domains=[plain,inverted,swapped]")
    with pytest.raises(UserError, match=r"cannot resume .* with other networks: task_options.domains "
                                        r"\(.*'inverted', 'plain', 'swapped'.* -> .*'plain', 'inverted', 'swapped'"):
        Trainer(config, resume="auto").fit()
