"""The exported model format: ``config.json`` + ``model.safetensors`` in one directory.

``config.json`` holds the resolved run config (so the generators can be rebuilt exactly)
and the names of the generators; ``model.safetensors`` holds their weights with keys
``<generator name>.<parameter name>`` (``G.model.0.weight``; CycleGAN has ``G_A.*`` and
``G_B.*``). Loading never unpickles anything.

The same directory shape is written at the end of training (``output_dir/model``), inside
every checkpoint (``checkpoints/step-NNNNNN/model``), and by ``Translator.save_pretrained``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from img2img import files
from img2img.errors import UserError

if TYPE_CHECKING:
    from torch import nn

    from img2img.config import Config

FORMAT = "img2img.model"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def check_replaceable(directory: str | Path, hint: str = "choose another folder, or remove it yourself") -> None:
    """Refuse to write a model directory over a file, or over a folder that is neither empty
    nor an exported model directory holding nothing but its two files (see
    :mod:`img2img.ownership`): :func:`save_model` replaces what is there as a whole."""
    from img2img import ownership

    ownership.check_replaceable(Path(directory).expanduser(), "model", hint)


def save_model(
    directory: str | Path, config: Config, generators: dict[str, nn.Module],
    hint: str = "choose another folder, or remove it yourself",
) -> Path:
    """Write the generators and the config to ``directory`` atomically (temp dir, rename).
    An existing model directory there is replaced; anything else there is refused (a
    UserError ending in ``hint``). A failure (out of disk) leaves the previous directory
    as it was and no temporary one."""
    from img2img import ownership

    directory = Path(directory).expanduser()
    check_replaceable(directory, hint)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, net in generators.items():
        for key, value in net.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().to("cpu").contiguous()
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "task": config.task,
        "generators": list(generators),
        "config": config.to_dict(),
    }
    # The temporary and the previous folders are removed only when they are model folders
    # (a crash may leave them): config.json, the proof, is written first.
    tmp = directory.with_name(f".{directory.name}.tmp")
    old = directory.with_name(f".{directory.name}.old")
    for stale in (tmp, old):
        ownership.remove(stale, "model", hint=f"it is in the way of writing {directory}; remove it yourself")
    tmp.mkdir()
    try:
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        files.save_tensors(tensors, tmp / WEIGHTS_FILE, metadata={"format": FORMAT})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # made just now by this call
        raise
    if directory.exists():
        directory.rename(old)  # checked above: a model folder and nothing else
    tmp.rename(directory)
    if old.exists():
        shutil.rmtree(old)  # the previous model folder, proven above
    return directory


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """The ``checkpoints/step-NNNNNN`` folders of a run directory, oldest step first
    (numerically: ``step-1000000`` comes after ``step-999999``). Temporary folders of an
    unfinished save (``.tmp-step-*``) are not among them."""
    from img2img.ownership import CHECKPOINT_PREFIX, checkpoint_step

    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.glob(CHECKPOINT_PREFIX + "*") if p.is_dir() and checkpoint_step(p.name) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p.name))


def resolve_model_dir(path: str | Path) -> Path:
    """An exported model directory, found from a model dir, a checkpoint dir or a run dir.

    A run directory resolves to its ``model/`` (written at the end of training), else to
    the ``model/`` of its newest checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"model not found: {path} does not exist")
    if (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
        return path
    if (path / "model" / CONFIG_FILE).is_file():
        return path / "model"
    for ckpt in reversed(checkpoint_dirs(path)):
        if (ckpt / "model" / CONFIG_FILE).is_file():
            return ckpt / "model"
    raise UserError(
        f"{path} is not a model: expected {CONFIG_FILE} and {WEIGHTS_FILE} in it, or a run "
        "directory with model/ or checkpoints/step-*/model/"
    )


def read_model_config(directory: str | Path) -> tuple[Config, list[str]]:
    """The config and generator names stored in an exported model directory."""
    from img2img.config import from_dict
    from img2img.errors import ConfigError

    directory = resolve_model_dir(directory)
    path = directory / CONFIG_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path} is not an img2img model config (no \"format\": \"{FORMAT}\")")
    version, stored, names = meta.get("version", 0), meta.get("config"), meta.get("generators")
    if not isinstance(version, int) or not isinstance(stored, dict) or not (
        isinstance(names, list) and names and all(isinstance(n, str) for n in names)
    ):
        raise UserError(
            f"{path} is damaged: it needs an integer \"version\", a \"config\" mapping and a "
            "non-empty \"generators\" list of names; export the model again from its run"
        )
    if version > VERSION:
        raise UserError(f"{path} was written by a newer img2img (format version {version}); upgrade")
    try:
        config = from_dict(stored)
    except ConfigError as err:
        raise UserError(f"{path}: stored config is invalid: {err}") from None
    return config, list(names)


def load_model(path: str | Path, device: str = "cpu") -> tuple[Config, dict[str, nn.Module]]:
    """Rebuild the generators of an exported model and load their weights (eval mode)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from img2img.tasks import build_generators

    directory = resolve_model_dir(path)
    config, names = read_model_config(directory)
    generators = build_generators(config)
    if sorted(generators) != sorted(names):
        raise UserError(
            f"{directory}: stored generators {names} do not match the task's {list(generators)}"
        )
    weights_path = directory / WEIGHTS_FILE
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise UserError(f"cannot read weights {weights_path}: {err}") from None
    for name, net in generators.items():
        prefix = f"{name}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        load_state_dict_strict(net, state, f"{weights_path} [{name}]")
        net.to(device).eval()
    return config, generators


def load_state_dict_strict(net: nn.Module, state: dict, where: str) -> None:
    """``load_state_dict`` with a one-line error naming the first missing/unexpected key."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise UserError(f"weights in {where} do not fit the network: {', '.join(parts)}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise UserError(
                f"weights in {where} do not fit the network: {key} has shape "
                f"{tuple(value.shape)}, expected {tuple(expected[key].shape)}"
            )
    net.load_state_dict(state)
