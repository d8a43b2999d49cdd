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
