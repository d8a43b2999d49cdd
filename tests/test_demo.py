"""`img2img demo`: the command `make demo` runs, end to end through the real CLI (a few
steps instead of the demo's hundreds)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from img2img.demo import _report


def _demo(tmp_path: Path, kind: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "img2img", "demo", kind, "--steps", "3", "--out", str(tmp_path / "runs"),
         "--data", str(tmp_path / "sample"), *extra],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )


@pytest.mark.parametrize("kind", ["colorize", "sr"])
def test_demo_trains_evaluates_and_reports(tmp_path, kind):
    proc = _demo(tmp_path, kind)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / kind
    assert f"demo '{kind}' finished" in proc.stdout and "(3 steps)" in proc.stdout
    assert f"run directory : {run}" in proc.stdout
    # the sample data was built, the model written and loadable, the held-out set evaluated
    assert (tmp_path / "sample" / "manifest.json").is_file()
    assert (run / "model" / "config.json").is_file() and (run / "model" / "model.safetensors").is_file()
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/psnr" in line for line in lines), lines[-1]
    match = re.search(r"psnr\s+model (\d+\.\d+)\s+baseline (\d+\.\d+)", proc.stdout)
    assert match and 5 < float(match[1]) < 60 and 5 < float(match[2]) < 60, proc.stdout
    assert (run / "wandb").is_dir()  # the demo logs to W&B offline

    # Running it again replaces the previous demo run instead of refusing or mixing them.
    again = _demo(tmp_path, kind)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "replacing the previous demo run" in again.stderr
    assert len([line for line in (run / "metrics.jsonl").read_text().splitlines()]) == len(lines)


def test_demo_report_of_a_stopped_run(tmp_path, capsys):
    _report("colorize", {"run_dir": str(tmp_path / "colorize"), "seconds": 12.3, "step": 73, "stopped_at": 73})
    out = capsys.readouterr().out
    assert "stopped by a signal at step 73" in out
    assert str(tmp_path / "colorize" / "checkpoints") in out
    assert "finished" not in out
