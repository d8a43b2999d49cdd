"""Shared test setup: no network, offline trackers, small thread counts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCH_HOME", str(Path(__file__).resolve().parent / ".torch_home_unused"))

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


import pytest  # noqa: E402

from tests.tiny import make_task_data  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """In-process tests run torch on one thread: tiny networks gain nothing from a second,
    and on a shared 2-core machine two OpenMP threads per process spin-wait for each other
    and slow tests down several times over. Subprocesses keep torch's default."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def task_data(tmp_path_factory):
    """{task: data root} with tiny data sets for the four tasks (built once per session)."""
    base = tmp_path_factory.mktemp("task_data")
    return {task: make_task_data(base / task, task) for task in ("pix2pix", "colorization", "cyclegan", "srgan")}
