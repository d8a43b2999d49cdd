"""The training engine: how steps run, the same for every task. A task says what is learned
(its networks, data, losses, visuals and evaluation); the engine owns the Accelerator
(devices, processes, mixed precision, gradient accumulation, DDP), the optimizers and LR
schedules, the G/D alternation with ``requires_grad`` toggling, image pools and EMA,
non-finite losses, checkpoints and exact resume, stop signals, logging and periodic
evaluation, and never names a task. Its rooms: ``loop`` (fit, the step, its phases),
``setup`` (checks, accelerator, data loader, building the networks' views and the
optimizers), ``networks`` (the views), ``optimizers`` (optimizers and schedules),
``checkpoint``, ``tracking`` (with ``collapse``, the collapse guard), ``signals``, and the
parts ``ema``, ``pool``, ``schedules`` and ``sampling``.
"""

from img2img.engine.checkpoint import list_checkpoints, resolve_resume
from img2img.engine.loop import Trainer, cli_train

__all__ = ["Trainer", "cli_train", "list_checkpoints", "resolve_resume"]
