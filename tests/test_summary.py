"""``img2img summary`` on the shipped recipes prints the reference parameter counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from img2img.config import load_config
from img2img.summary import count_parameters, summary_table
from img2img.tasks import build_networks

REPO = Path(__file__).resolve().parents[1]

RECIPES = {
    "configs/pix2pix/facades.yaml": {"G": 54_413_955, "D": 2_768_705},
    "configs/cyclegan/horse2zebra.yaml": {
        "G_A": 11_378_179,
        "G_B": 11_378_179,
        "D_A": 2_764_737,
        "D_B": 2_764_737,
    },
    # the shared PatchGAN with batch norm on 3-channel HR images
    "configs/srgan/div2k_x4.yaml": {"G": 1_517_571, "D": 2_765_633},
    "configs/srgan/div2k_x4_psnr.yaml": {"G": 1_517_571},
}


def summary(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "img2img", "summary", *args],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_summary_json_gives_the_exact_counts(recipe):
    out = summary(recipe, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == RECIPES[recipe]  # stdout holds the JSON object only


def test_summary_table_has_classes_and_separated_counts():
    out = summary("configs/pix2pix/facades.yaml")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["network", "class", "parameters"]
    assert ["G", "UNetGenerator", "54,413,955"] in [line.split() for line in lines]
    assert ["D", "PatchGAN", "2,768,705"] in [line.split() for line in lines]
    assert lines[-1].split() == ["total", "57,182,660"]


def test_summary_applies_overrides():
    out = summary("configs/pix2pix/facades.yaml", "model.generator.ngf=8",
                  "model.discriminator.name=none", "--json")
    assert out.returncode == 0, out.stderr
    counts = json.loads(out.stdout)
    assert list(counts) == ["G"]
    assert counts["G"] < 54_413_955 / 50


def test_summary_table_in_process():
    config = load_config(
        REPO / "configs/cyclegan/horse2zebra.yaml",
        ["model.generator.ngf=4", "model.generator.n_blocks=9", "model.discriminator.ndf=4"],
    )
    nets = build_networks(config)
    text = summary_table(nets)
    total = sum(count_parameters(net) for net in nets.values())
    assert f"{total:,}" in text.splitlines()[-1]
    assert text.count("ResnetGenerator") == 2 and text.count("PatchGAN") == 2
