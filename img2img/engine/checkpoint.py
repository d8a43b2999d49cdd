"""Checkpoints of a run: the atomic save, pruning, loading with the resume checks, one
message for a damaged checkpoint, and starting from another model (``model.init_from``).

A checkpoint is a folder ``checkpoints/step-NNNNNN/`` (named by the one rule in
:mod:`img2img.ownership`) holding:

- Accelerate's state (``save_state``): the networks (``model*.safetensors``), the
  optimizers (``optimizer*.bin``), the fp16 grad scaler, and each process's random number
  generators, python, numpy, torch and CUDA (``random_states_N.pkl``);
- ``rank_N.safetensors``: what else differs between processes: the image pools (none
  for most tasks; the file is written all the same, so every checkpoint looks alike);
- ``ema.safetensors``: the EMA generators;
- ``model/``: the generators as an exported model;
- ``trainer_state.json``: the step, the position in the data, the best evaluation, the
  skipped steps, the number of processes and the LR schedules.

A save is written under ``.tmp-step-NNNNNN`` and renamed into place, following
:mod:`img2img.ownership`'s rule: a crash leaves the earlier checkpoints as they were, and
only folders img2img can prove it wrote are replaced or pruned. Checkpoints written
before Accelerate's RNG states were the only copy also hold them in
``rank_N.safetensors`` (``rng/*``); they resume alike, as Accelerate restores the same states.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from img2img import files, ownership
from img2img.config import Config
from img2img.errors import UserError
from img2img.log import get_logger

log = get_logger(__name__)


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary ``.tmp-*`` folders excluded)."""
    from img2img.model_io import checkpoint_dirs

    return [p for p in checkpoint_dirs(output_dir) if (p / "trainer_state.json").is_file()]


def resolve_resume(resume: str | None, output_dir: Path) -> Path | None:
    """The checkpoint ``--resume`` names: ``auto`` is the newest of ``output_dir`` (None
    when there is none), a run directory its newest checkpoint, anything else a checkpoint
    folder."""
    if not resume:
        return None
    if resume == "auto":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(resume).expanduser()
    if (path / "trainer_state.json").is_file():
        return path
    if not path.exists():
        there = list_checkpoints(path.parent.parent) if path.parent.name == "checkpoints" else []
        saved = f" ({path.parent} holds {', '.join(p.name for p in there[-5:])})" if there else ""
        raise UserError(f"--resume {resume}: no such folder{saved}; give a run directory (its newest "
                        "checkpoint is used), a checkpoint directory, or auto")
    checkpoints = list_checkpoints(path)
    if not checkpoints and path.name == "checkpoints":  # a run's checkpoints/ folder itself
        checkpoints = list_checkpoints(path.parent)
    if checkpoints:
        return checkpoints[-1]
    raise UserError(
        f"--resume {resume}: not a checkpoint directory (no trainer_state.json), nor a run "
        f"directory with checkpoints (none in {path / 'checkpoints'}); give a run directory "
        "that has saved one, or a checkpoint directory such as RUN/checkpoints/step-NNNNNN"
    )


class Checkpoints:
    """Saving, pruning and loading the checkpoints of one run directory. ``save`` and
    ``load`` are collectives: every process calls them at the same step."""

    def __init__(self, output_dir: Path, keep_last: int) -> None:
        self.output_dir = output_dir
        self.root = output_dir / "checkpoints"
        self.keep_last = keep_last
        #: The step of the checkpoint last written or resumed (-1: none yet).
        self.saved_step = -1
        self._kept: set[str] = set()  # folders pruning had to leave (said once each)

    # ------------------------------------------------------------------ save
    def save(self, trainer) -> Path:
        acc = trainer.accelerator
        trainer.nets.sync_buffers(trainer.world_size)
        name = ownership.checkpoint_name(trainer.step)
        final, tmp = self.root / name, self.root / (ownership.CHECKPOINT_TMP_PREFIX + name)
        hint = "remove it yourself, or choose another output_dir"
        if trainer.is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            ownership.check_replaceable(final, "checkpoint", hint)
            ownership.remove(tmp, "checkpoint", hint)  # a crashed save's, marked as below
            tmp.mkdir()
            ownership.mark(tmp, "checkpoint", [], ["*"])  # all in it is this save's
        acc.wait_for_everyone()
        try:
            self._write(trainer, tmp)
        except BaseException as err:
            # Out of disk, say: the previous checkpoints stay as they were, and no half one.
            shutil.rmtree(tmp, ignore_errors=True)  # made by this save
            if isinstance(err, (OSError, UserError)) or not isinstance(err, Exception):
                raise
            # A library's own error (safetensors, torch) while writing: one line naming it.
            first = files.first_line(err, "")
            what = f"{type(err).__name__}: {first}" if first else type(err).__name__
            error = UserError(f"cannot write checkpoint {final} ({what}); nothing of it was kept and "
                              "the earlier checkpoints are as they were")
            error.rank_specific = True
            raise error from err
        acc.wait_for_everyone()
        if trainer.is_main:
            ownership.mark(tmp, "checkpoint", ownership.listing(tmp))  # exactly what it holds
            ownership.remove(final, "checkpoint", hint)  # a checkpoint of this step, if any
            os.replace(tmp, final)  # atomic: a crash leaves the previous checkpoints intact
            self.prune(trainer.best.get("step"))
            log.info("saved checkpoint %s", final)
        acc.wait_for_everyone()
        self.saved_step = trainer.step
        return final

    @staticmethod
    def _write(trainer, folder: Path) -> None:
        trainer.accelerator.save_state(str(folder))
        pools = {f"pool/{name}/{key}": value for name, pool in trainer.pools.items()
                 for key, value in pool.state_dict().items()}
        files.save_tensors(pools, folder / f"rank_{trainer.rank}.safetensors")
        if trainer.is_main:
            ema = {f"{n}.{k}": v.detach().cpu() for n, e in trainer.nets.ema.items() for k, v in e.state_dict().items()}
            if ema:
                files.save_tensors(ema, folder / "ema.safetensors")
            trainer.export(folder / "model")
            (folder / "trainer_state.json").write_text(json.dumps(trainer.state_dict(), indent=2))

    def prune(self, best_step: int | None) -> None:
        """Keep the newest ``train.keep_last`` checkpoints and the best one's; remove the
        temporary folders of crashed saves."""
        for path in list_checkpoints(self.output_dir)[:-self.keep_last]:
            if best_step is not None and ownership.checkpoint_step(path.name) == best_step:
                continue
            self._remove(path)
        for stale in self.root.glob(ownership.CHECKPOINT_TMP_PREFIX + "*"):
            self._remove(stale)

    def _remove(self, path: Path) -> None:
        """Delete a checkpoint folder img2img can prove it wrote; keep (and say so once)
        any other: pruning never stops a run."""
        try:
            ownership.remove(path, "checkpoint", "remove it yourself")
        except UserError as err:
            if str(path) not in self._kept:
                self._kept.add(str(path))
                log.warning("not pruned: %s", err)
        except OSError as err:
            log.warning("could not prune %s: %s", path, err.strerror or err)

    # ------------------------------------------------------------------ load
    def load(self, trainer, path: Path) -> None:
        """Restore a checkpoint; a missing or damaged file in it is one UserError that
        names it and the checkpoint to fall back to."""
        try:
            self._load(trainer, path)
        except UserError:
            raise
        except Exception as err:  # json, safetensors, torch and OS errors of a damaged file
            step = ownership.checkpoint_step(path.name)
            earlier = [c for c in list_checkpoints(self.output_dir)
                       if step is not None and ownership.checkpoint_step(c.name) < step]
            fallback = (f"resume from the one before it with --resume {earlier[-1]}, or delete it"
                        if earlier else "delete it to start afresh")
            raise UserError(f"checkpoint {path} is incomplete or damaged ({files.first_line(err)}); {fallback}") from None

    def _load(self, trainer, path: Path) -> None:
        from safetensors.torch import load_file

        state = json.loads((path / "trainer_state.json").read_text())
        before = check_resume_config(path, trainer.config)
        if state["world_size"] != trainer.world_size:
            raise UserError(
                f"{path} was written by {state['world_size']} process(es); resume it with the "
                f"same number (this run has {trainer.world_size})"
            )
        _check_random_states(path, trainer.rank)
        _check_network_shapes(path, trainer.nets.trained())
        trainer.accelerator.load_state(str(path))  # networks, optimizers, scaler, RNG states
        trainer.load_state_dict(state)
        trainer.optim.apply_settings(trainer.config.train, before.train)
        if trainer.nets.ema:
            ema = load_file(str(path / "ema.safetensors"))
            for name, e in trainer.nets.ema.items():
                e.load_state_dict({k[len(name) + 1:]: v for k, v in ema.items() if k.startswith(f"{name}.")})
        tensors = load_file(str(path / f"rank_{trainer.rank}.safetensors"))
        for name, pool in trainer.pools.items():
            prefix = f"pool/{name}/"
            pool.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                                 trainer.device)
        self.saved_step = trainer.step
        log.info("resumed from %s (step %d, epoch %d, batch %d)", path, trainer.step, trainer.epoch,
                 trainer.batch_in_epoch)


def _check_random_states(path: Path, rank: int) -> None:
    """Accelerate's ``load_state`` restores each process's random number generators, but
    only notes it in an info log when it cannot read them: the resume would go on, no
    longer exact. So they are read once first, and a damaged file is the damaged
    checkpoint's message."""
    from accelerate.utils import RNG_STATE_NAME, load

    name = f"{RNG_STATE_NAME}_{rank}.pkl"
    states = load(path / name)  # weights_only: plain containers, tensors and numpy arrays
    if not isinstance(states, dict) or "torch_manual_seed" not in states:
        raise ValueError(f"{name} holds no random number generator states")


def _check_network_shapes(path: Path, nets: dict) -> None:
    """Refuse, with one message, a checkpoint whose networks have other tensors or shapes
    than this run's: settings that shape a network outside ``model.*`` changed (a task's
    option, such as the layers CUT's projection head reads). Accelerate writes the
    networks as ``model.safetensors``, ``model_1.safetensors``, ... in the order it
    wrapped them. A missing file is left to the load (a damaged checkpoint)."""
    from safetensors import safe_open

    for i, (name, net) in enumerate(nets.items()):
        file = path / ("model.safetensors" if i == 0 else f"model_{i}.safetensors")
        if not file.is_file():
            continue
        with safe_open(str(file), framework="pt") as f:
            theirs = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        if theirs != ours:
            differ = sorted(set(theirs) ^ set(ours)) or [k for k in ours if theirs[k] != ours[k]]
            where = ", ".join(f"{k} ({theirs.get(k, 'absent')} there, {ours.get(k, 'absent')} here)"
                              for k in differ[:3])
            raise UserError(
                f"cannot resume {path}: its network {name} differs from this run's ({where}); "
                "resume with the settings it was trained with (model.*, task_options), or start "
                "a new run in another output_dir"
            )


def check_resume_config(path: Path, config: Config) -> Config:
    """Refuse to resume with other networks (their weights would not fit); say which other
    settings changed. Returns the config the checkpoint was written with."""
    from img2img.engine.setup import flat_config, shapes_networks
    from img2img.model_io import read_model_config

    before, _ = read_model_config(path / "model")
    old, new = flat_config(before), flat_config(config)
    changed = [k for k in new if old.get(k) != new[k]]
    blocking = [k for k in changed if k == "task" or shapes_networks(k, config.task)]
    if (before.train.ema > 0) != (config.train.ema > 0):
        blocking.append("train.ema")
    if blocking:
        diffs = ", ".join(f"{k} ({old.get(k)!r} -> {new[k]!r})" for k in blocking)
        raise UserError(
            f"cannot resume {path} with other networks: {diffs}; resume with the settings "
            "it was trained with, or start a new run in another output_dir"
        )
    if changed:
        log.warning("resuming %s with changed settings: %s", path, ", ".join(
            f"{k} {old.get(k)!r} -> {new[k]!r}" for k in changed))
    return before


def init_from(path: str, config: Config, G: dict) -> None:
    """Start the generators from an exported model (``model.init_from``)."""
    from img2img.engine.setup import flat_config, shapes_networks
    from img2img.model_io import load_model, load_state_dict_strict

    try:
        theirs_config, generators = load_model(path)
    except UserError as err:  # the recipe's previous stage, not trained yet
        raise UserError(f"model.init_from: {err}. This run starts from that model: train it first "
                        "(the recipe's header names the stage), or set model.init_from=PATH to "
                        "another model, or model.init_from=null for random weights") from None
    theirs, ours = flat_config(theirs_config), flat_config(config)
    differ = [k for k in ours if shapes_networks(k) and theirs.get(k) != ours[k]]
    settings = "; it differs in " + ", ".join(
        f"{k} ({theirs.get(k)!r} there, {ours[k]!r} here)" for k in differ) if differ else ""
    for name, net in G.items():
        if name not in generators:
            raise UserError(f"model.init_from {path}: it has no generator {name!r}")
        try:
            load_state_dict_strict(net, generators[name].state_dict(), f"model.init_from {path}")
        except UserError as err:
            raise UserError(f"{err} (generator {name}){settings}") from None
    log.info("initialised %s from %s", ", ".join(G), path)
