"""The command line: help without torch, user errors exit 2 with one line."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from img2img.cli import build_parser, main

SUBCOMMANDS = ["train", "eval", "predict", "export", "summary", "data", "demo", "config"]


def run(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "img2img", *args], capture_output=True, text=True, timeout=120, **kw
    )


def test_every_subcommand_is_listed():
    text = build_parser().format_help()
    for name in SUBCOMMANDS:
        assert name in text


@pytest.mark.parametrize(
    "args", [["--help"], ["config", "schema", "--help"]] + [[name, "--help"] for name in SUBCOMMANDS]
)
def test_help_does_not_import_torch(args):
    code = (
        "import sys\n"
        "from img2img.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('torch', 'numpy', 'accelerate', 'wandb') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_help_is_fast():
    run("--help")  # warm the file cache
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        out = run("--help")
        best = min(best, time.perf_counter() - start)
        assert out.returncode == 0
    assert best < 0.5, f"img2img --help took {best:.2f}s"


def test_console_script_and_module_agree():
    import shutil

    exe = shutil.which("img2img") or str(__import__("pathlib").Path(sys.executable).with_name("img2img"))
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.startswith("img2img ")


def test_user_error_exits_2_without_traceback(tmp_path):
    out = run("summary", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip() == f"img2img: error: config file not found: {tmp_path / 'missing.yaml'}"


def test_bad_override_exits_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: pix2pix\n")
    out = run("summary", str(cfg), "train.batch_size=abc")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "train.batch_size: expected an integer, got 'abc'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_overrides_may_follow_options(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: pix2pix\n")
    assert main(["train", str(cfg), "--resume", "auto", "train.batch_size=abc"]) == 2
    assert "train.batch_size: expected an integer, got 'abc'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", str(cfg), "--resume", "auto", "--bogus"])
    assert exc.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_unknown_subcommand_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_errors_raised_in_dataloader_workers_keep_one_line(tmp_path):
    """A corrupt image found by a worker mid-training: one message, no worker traceback."""
    code = r'''
import sys
import torch
from torch.utils.data import DataLoader, Dataset
from img2img.cli import _user_message
from img2img.errors import DataError

class Bad(Dataset):
    def __len__(self):
        return 2
    def __getitem__(self, i):
        raise DataError("cannot read /data/x.png: truncated file")

try:
    next(iter(DataLoader(Bad(), num_workers=1)))
except DataError as err:
    assert "Original Traceback" in str(err)
    print(_user_message(err))
'''
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cannot read /data/x.png: truncated file"
