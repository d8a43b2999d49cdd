"""Where a model comes from and where it runs: the device, the exported model directory
behind a path (a run, model or checkpoint directory, or a Hub model named explicitly as
``hf://owner/name[@revision]``), and its config and generators read from there.

Only safetensors weights are read; nothing is unpickled. Nothing is fetched from the Hub
without the ``hf://`` prefix: a local path that does not exist is "model not found",
whatever it looks like.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from img2img import model_io
from img2img.errors import UserError
from img2img.files import first_line
from img2img.log import get_logger

log = get_logger(__name__)

# Loading from the Hugging Face Hub is explicit: hf://owner/name, or hf://owner/name@revision.
HUB_PREFIX = "hf://"
HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A branch, a tag or a commit hash (branches may hold slashes: refs/pr/1).
HUB_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]*$")
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".pkl")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise UserError(f"invalid device {device!r}: {err}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r}: no CUDA device is available; use cpu or auto")
    return dev


def _closest(missing: Path) -> str:
    """"; did you mean X?" for the folders beside ``missing`` whose names are close to its
    name ("" when there are none)."""
    import difflib

    try:
        names = [p.name for p in missing.parent.iterdir() if p.is_dir()]
    except OSError:
        return ""
    close = difflib.get_close_matches(missing.name, names, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(str(missing.parent / n) for n in close)}?" if close else ""


def find_model(path: str | Path) -> Path:
    """The exported model directory behind ``path``: a run, model or checkpoint directory,
    the ``config.json``/``model.safetensors`` file of one, or a Hugging Face Hub model
    named explicitly, ``hf://owner/name`` or ``hf://owner/name@revision`` (see
    :func:`fetch_hub_model`). A local path that does not exist is a "model not found"
    UserError, whatever it looks like: nothing is fetched without the ``hf://`` prefix."""
    text = str(path)
    if text.startswith(HUB_PREFIX):
        return fetch_hub_model(*parse_hub_model(text))
    local = Path(path).expanduser()
    if not local.exists():
        raise UserError(
            f"model not found: {text} does not exist{_closest(local)} (give a run directory, an exported model "
            f"directory or a checkpoint directory; a model on the Hugging Face Hub is named "
            f"explicitly: {HUB_PREFIX}owner/name or {HUB_PREFIX}owner/name@revision)"
        )
    if not local.is_file():
        return model_io.resolve_model_dir(local)
    if local.name in (model_io.CONFIG_FILE, model_io.WEIGHTS_FILE):
        return model_io.resolve_model_dir(local.parent)
    if local.suffix.lower() in PICKLE_SUFFIXES:
        raise UserError(
            f"{local} is a weights file, not an img2img model folder: img2img.load, predict and "
            "export read third-party SR weights (through spandrel, weights only); to train or "
            "evaluate, import reference weights with img2img.convert.export_reference_model(weights, "
            "config, out_dir) and use that directory"
        )
    raise UserError(
        f"{local} is a file, not a model; give the directory that holds "
        f"{model_io.CONFIG_FILE} and {model_io.WEIGHTS_FILE} (or a run directory)"
    )


def parse_hub_model(text: str) -> tuple[str, str | None]:
    """``hf://owner/name`` -> ``("owner/name", None)``; ``hf://owner/name@rev`` ->
    ``("owner/name", "rev")``, where ``rev`` is a branch, a tag or a commit hash."""
    repo_id, at, revision = text[len(HUB_PREFIX):].partition("@")
    if not HUB_REPO_ID.match(repo_id) or (at and (not HUB_REVISION.match(revision) or ".." in revision)):
        raise UserError(
            f"model {text!r}: expected {HUB_PREFIX}owner/name or {HUB_PREFIX}owner/name@revision "
            "(a branch, a tag or a commit hash)"
        )
    return repo_id, (revision if at else None)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _download(ref: str, repo_id: str, revision: str | None) -> Path:
    """``snapshot_download`` of the two files of an exported model; its failures as one
    UserError that says what to check."""
    offline = _hub_offline()
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(
            f"model {ref}: loading from the Hugging Face Hub needs huggingface_hub "
            "(pip install huggingface_hub)"
        ) from None
    try:
        local = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=[model_io.CONFIG_FILE, model_io.WEIGHTS_FILE],
        )
    except Exception as err:  # offline, no network, no such repo or revision, no access
        hint = (
            " (HF_HUB_OFFLINE is set and the model is not in the local Hub cache; unset it "
            "or download the model directory yourself)"
            if offline
            else " (check the repo id, the revision, your network and HF_TOKEN for private repos)"
        )
        raise UserError(
            f"model {ref} could not be fetched from the Hugging Face Hub{hint}: "
            f"{type(err).__name__}: {first_line(err)}"
        ) from None
    return Path(local)


def fetch_hub_model(repo_id: str, revision: str | None = None) -> Path:
    """Fetch the exported model ``repo_id`` (at ``revision``: a branch, tag or commit hash;
    the default branch when None) from the Hugging Face Hub into its local cache and return
    that folder. Only ``config.json`` and ``model.safetensors`` are fetched, nothing
    pickled; one log line says what was fetched (repo, revision, commit, local folder)."""
    ref = f"{HUB_PREFIX}{repo_id}" + (f"@{revision}" if revision else "")
    local = _download(ref, repo_id, revision)
    missing = [n for n in (model_io.CONFIG_FILE, model_io.WEIGHTS_FILE) if not (local / n).is_file()]
    if missing:
        raise UserError(
            f"model {ref}: the Hub repo has no {' and '.join(missing)} at its top level (an "
            f"img2img model is {model_io.CONFIG_FILE} + {model_io.WEIGHTS_FILE}, as "
            "`img2img export --format safetensors` writes it)"
        )
    # The Hub cache keeps each snapshot in a folder named by its commit hash.
    commit = local.name if re.fullmatch(r"[0-9a-f]{40}", local.name) else "unknown"
    log.info("fetched %s from the Hugging Face Hub (revision %s, commit %s) into %s",
             f"{HUB_PREFIX}{repo_id}", revision or "main", commit, local)
    return local


def read_model(path: str | Path, device: str | torch.device = "auto") -> tuple[Any, dict[str, nn.Module], torch.device]:
    """The config and generators of the model at ``path`` (see :func:`find_model`), read
    onto ``device``, and that device. A third-party weights file (``.pth``, ``.safetensors``,
    ...) is read through spandrel (:mod:`~img2img.inference.external`); its config is then
    an :class:`~img2img.inference.external.External`."""
    from img2img.inference.external import is_weights_file, load_external

    local = Path(str(path)).expanduser()
    dev = resolve_device(device)
    if not str(path).startswith(HUB_PREFIX) and local.is_file() and is_weights_file(local):
        external, generators = load_external(local)
        for net in generators.values():
            net.to(dev)
        return external, generators, dev
    directory = find_model(path)
    config, generators = model_io.load_model(directory, str(dev))
    return config, generators, dev
