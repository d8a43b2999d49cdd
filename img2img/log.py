"""Logging through the standard library, printed by the main process only.

Rank is read from the environment that torchrun and ``accelerate launch`` set, so this
module does not import torch.
"""

from __future__ import annotations

import logging
import os
import sys

_CONFIGURED = False


def process_rank() -> int:
    """The global rank of this process (0 when not launched distributed)."""
    for name in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0


def is_main_process() -> bool:
    return process_rank() == 0


class _MainProcessOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return is_main_process()


def setup_logging(verbose: bool = False) -> None:
    """Configure the ``img2img`` logger once: INFO (or DEBUG) to stderr, main process only."""
    global _CONFIGURED
    logger = logging.getLogger("img2img")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if _CONFIGURED:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(_MainProcessOnly())
    logger.addHandler(handler)
    logger.propagate = False
    _CONFIGURED = True


def get_logger(name: str) -> logging.Logger:
    """A child of the ``img2img`` logger (``name`` is usually ``__name__``)."""
    if not name.startswith("img2img"):
        name = f"img2img.{name}"
    return logging.getLogger(name)
