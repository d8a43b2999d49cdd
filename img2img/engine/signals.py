"""Stop signals: SIGTERM and SIGINT while training, the decision of all processes to stop,
and what the DataLoader workers do with the same signals.

A first signal asks for a stop: the step in progress finishes, the processes agree on it
after the step (:meth:`StopSignal.agreed`, a collective), save a checkpoint and return. A
second signal stops at once (``KeyboardInterrupt``). The workers keep serving batches while
the main process trains and end as soon as it is leaving (:func:`worker_init`).
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

#: Set to 1 by the main process once it is leaving (its own exit, or the end of training):
#: shared with the DataLoader workers (see :func:`worker_init`).
_LEAVING = None


class StopSignal:
    """The stop request of one run: the first SIGTERM or SIGINT caught while training."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @contextmanager
    def catching(self) -> Iterator[None]:
        """Catch SIGTERM and SIGINT (main thread only) and put the previous handlers back."""

        def handler(signum, frame):
            if self.signum is not None:  # a second signal: stop now
                raise KeyboardInterrupt
            self.signum = signum

        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def agreed(self, accelerator) -> bool:
        """Whether any process caught a signal. Every process calls it after every step:
        they stop together, at the same step, or one would wait for the others forever."""
        flag = 1.0 if self.signum is not None else 0.0
        if accelerator.num_processes > 1:
            total = accelerator.reduce(torch.tensor([flag], device=accelerator.device), reduction="sum")
            flag = float(total)
            if flag and self.signum is None:
                self.signum = signal.SIGTERM
        return flag > 0


# --------------------------------------------------------------------------- data workers


def leaving_flag():
    """The shared "main process is leaving" flag, made once per process, set at exit."""
    global _LEAVING
    if _LEAVING is None:
        import atexit
        import multiprocessing

        _LEAVING = multiprocessing.Value("b", 0, lock=False)
        # Registered after multiprocessing's own exit handler, so it runs before it: the
        # workers that handler then stops with SIGTERM see the flag and leave.
        atexit.register(set_leaving)
    _LEAVING.value = 0  # a new run (several can train in one process, one after another)
    return _LEAVING


def set_leaving() -> None:
    """Tell the DataLoader workers that the main process is leaving: a signal ends them."""
    if _LEAVING is not None:
        _LEAVING.value = 1


def worker_init_fn(num_workers: int) -> Callable[[int], None] | None:
    """The DataLoader's ``worker_init_fn``: :func:`worker_init` bound to this process's flag."""
    return functools.partial(worker_init, leaving=leaving_flag()) if num_workers > 0 else None


def worker_init(worker_id: int, leaving=None) -> None:
    """Seed a worker's python and numpy generators from its torch seed, and set its signals.

    SIGTERM and SIGINT often reach the whole process group (Ctrl-C in a terminal, a
    scheduler's preemption, ``timeout``, torchrun passing a SIGTERM on). The workers then
    keep serving batches, so that every process finishes its step in step with the others
    (a worker gone mid-step leaves one rank waiting in a collective for another) and the
    main process saves and stops them. Once the main process is leaving (its exit, where
    multiprocessing stops workers with SIGTERM), the signal ends the worker at once, with
    exit code 0: an error in the main process never hangs its exit.
    """
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    global _LEAVING
    _LEAVING = leaving
    signal.signal(signal.SIGTERM, _worker_signal)
    signal.signal(signal.SIGINT, _worker_signal)


def _worker_signal(signum, frame) -> None:
    if _LEAVING is None or _LEAVING.value:
        os._exit(0)
