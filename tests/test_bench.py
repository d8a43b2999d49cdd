"""tools/bench.py train runs end to end and writes sensible JSON (that it works, not how fast)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_train_smallest_case_writes_rows(tmp_path):
    out = tmp_path / "bench.json"
    env = {
        **os.environ,
        "IMG2IMG_BENCH_TRAIN": "pix2pix:1",
        "IMG2IMG_BENCH_TRAIN_MODES": "fp32,fast",
        "OMP_NUM_THREADS": "1",  # the case subprocesses: one thread on a shared 2-core machine
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench.py"), "train", "--quick", "--sizes", "32",
         "--steps", "1", "--device", "cpu", "--json", str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["quick"] is True
    rows = result["sections"]["train"]["rows"]
    assert [(r["task"], r["batch"], r["size"], r["mode"]) for r in rows] == [
        ("pix2pix", 1, 32, "fp32"), ("pix2pix", 1, 32, "fast")
    ]
    for row in rows:
        assert "note" not in row, row  # a failed case carries a note instead of numbers
        assert row["steps"] == 1 and row["threads"] == 1
        for key in ("ms_per_step", "steps_per_s", "images_per_s", "cpu_ms_per_step", "peak_rss_mb"):
            assert row[key] > 0, (key, row)
        assert abs(row["steps_per_s"] * row["ms_per_step"] - 1000) < 1e-6 * row["ms_per_step"]
        assert row["images_per_s"] == row["steps_per_s"] * row["batch"]
        assert row["network"] == "unet(5 downs)"
        assert row["ref_ms"] is None and row["vs_ref"] is None  # only at 256 px, batch 1
    assert "| pix2pix" in proc.stdout  # the markdown table


def _bench_train(module: str = "bench_train"):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(REPO / "tools"))


def test_bench_train_cases_select_and_size(monkeypatch):
    bench_train = _bench_train()
    monkeypatch.delenv("IMG2IMG_BENCH_TRAIN", raising=False)
    monkeypatch.delenv("IMG2IMG_BENCH_TRAIN_MODES", raising=False)

    class Opts:
        quick, device, sizes, steps = False, "cpu", None, None

    full = bench_train.cases(Opts)
    keys = {(c["task"], c["batch"], c["size"], c["mode"]) for c in full}
    assert ("pix2pix", 16, 256, "fp32") in keys and ("cyclegan", 8, 256, "fast+compile") in keys
    assert ("srgan", 16, 128, "fast") in keys and ("colorization", 1, 256, "fp32") in keys
    assert all(c["budget_s"] for c in full)

    Opts.quick = True
    quick = bench_train.cases(Opts)
    assert {c["size"] for c in quick} == {64} and {c["mode"] for c in quick} == {"fp32", "fast"}
    assert max(c["batch"] for c in quick) <= 2

    monkeypatch.setenv("IMG2IMG_BENCH_TRAIN", "cyclegan:1,srgan")
    Opts.quick, Opts.sizes, Opts.steps = False, [128], 3
    picked = bench_train.cases(Opts)
    assert {(c["task"], c["batch"]) for c in picked} == {("cyclegan", 1), ("srgan", 16)}
    assert {c["size"] for c in picked} == {128} and {c["steps"] for c in picked} == {3}
    assert not any(c["budget_s"] for c in picked)

    # U-Nets shrink with the image; unet_256 itself needs 256 px.
    bench_config = _bench_train("bench_train_config")
    assert bench_config.network_overrides("pix2pix", 256)[1] == "unet_256"
    assert bench_config.network_overrides("pix2pix", 64) == (
        ["model.generator.name=unet", "model.generator.num_downs=6"], "unet(6 downs)")


def test_engine_step_equals_the_classic_loop(tmp_path):
    """The fp32 engine step computes what the classic reference's plain loop computes (the
    benchmark's ``classic`` mode): after two steps from the same weights on the same batches
    (two, because Adam's first update is lr x sign(gradient) whatever the loss weights),
    every parameter agrees, and so do the generators' BatchNorm statistics (the
    discriminators' depend on the order real and fake pass through them, which the
    reference itself varies between pix2pix and CycleGAN, and are never used: D always
    runs in train mode)."""
    import itertools

    import torch

    from img2img.engine import Trainer

    bench_config = _bench_train("bench_train_config")
    bench_classic = _bench_train("bench_train_classic")
    for task in ("pix2pix", "cyclegan"):
        root = bench_config.make_data(tmp_path / task / "data", task, 32)
        config = bench_config.build_config(
            task, 1, 32, "fp32", "cpu", root, tmp_path / task / "run", "model.generator.dropout=false",
            *(["model.generator.name=resnet_6blocks", "model.generator.ngf=8", "model.discriminator.ndf=8"]
              if task == "cyclegan" else []))
        engine = Trainer(config)
        classic = Trainer(config)
        for name, net in engine.nets.G.items():
            classic.nets.G[name].load_state_dict(net.state_dict())
        for name, net in engine.nets.D.items():
            classic.nets.D[name].load_state_dict(net.state_dict())
        before = {n: [p.detach().clone() for p in net.parameters()] for n, net in engine.nets.G.items()}
        source = engine.batches()
        raws = [next(source), next(source)]
        classic_step = bench_classic.classic_step(classic, task)
        for raw in raws:
            engine.train_step(itertools.repeat(raw))
            classic_step(classic.task.prepare(raw, classic.device))
        for kind in ("G", "D"):
            for name, net in getattr(engine.nets, kind).items():
                theirs = getattr(classic.nets, kind)[name].state_dict()
                state = net.state_dict() if kind == "G" else dict(net.named_parameters())
                for key, value in state.items():
                    # A conv bias just before an instance norm gets a gradient of rounding
                    # noise only (the norm removes it), which Adam scales to +-lr steps.
                    noise = task == "cyclegan" and key.endswith(".bias")
                    if value.is_floating_point() and not noise:
                        torch.testing.assert_close(value, theirs[key], rtol=1e-4, atol=1e-6, msg=f"{task} {name}.{key}")
        for name, net in engine.nets.G.items():  # the step did change the weights
            assert any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters())), name
