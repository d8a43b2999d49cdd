"""What img2img may delete or replace: only what it can prove it wrote.

**The rule.** img2img removes, clears or replaces a folder, or overwrites a file in one,
only when the folder carries *proof* that img2img wrote it and everything affected is
covered by that proof. Absent paths and empty folders are always fine. Anything else is
refused before anything is touched, with one :class:`~img2img.errors.UserError` naming the
folder, why, and what to do ("choose another --out, or remove it yourself").

**What counts as proof** (:func:`proof`), in this order:

1. ``.img2img.json`` in the folder, written by :func:`mark`: a JSON object with
   ``"format": "img2img.folder"``, a ``kind`` (``model``, ``run``, ``checkpoint``,
   ``sample-data``, ``predictions``), ``entries``, the paths img2img wrote there, and
   ``patterns``, names it writes as it goes (``samples/step-*.png``).
2. For folders written before these manifests existed, a signature img2img itself writes:

   - ``model``: ``config.json`` holding ``"format": "img2img.model"`` (every model folder,
     new ones too: its format fixes what it holds, ``config.json`` and
     ``model.safetensors``);
   - ``checkpoint``: a folder named ``step-N`` whose ``trainer_state.json`` says
     ``"step": N`` and whose ``model/`` is a model folder; it holds Accelerate's state files
     (``model*.safetensors``, ``optimizer*.bin``, ``random_states_*.pkl``, ...), the rank
     and EMA tensors and ``trainer_state.json``;
   - ``run``: ``config.yaml`` holding a complete resolved img2img config (every key, as
     training writes it) whose ``output_dir`` ends in this folder's name;
   - ``sample-data``: ``manifest.json`` of ``img2img data sample`` (``"format": 1`` and
     the ``crops`` it lists).

**Entries** are relative POSIX paths, taken literally; **patterns** are the same with
``*``, ``?`` and ``[...]`` matched per path component. One that names a folder covers
everything inside it (a tracker's ``wandb``). One ending in ``/`` is only a container:
its contents must be covered on their own. A folder inside that carries its own proof
(a checkpoint's ``model/``, the ``step-N`` folders of a run's ``checkpoints/``) is
covered when its own proof covers it. Folders on the way to an entry are img2img's;
they are removed once they are empty. Symbolic links are never followed.

So a folder is *replaceable* (:func:`check_replaceable`, :func:`remove`) when its proof is
of the expected kind and it holds nothing that is not covered: a file the user added
(``notes.txt`` next to a model's two files) makes img2img refuse. :func:`clear_listed`
(sample data) removes only what the proof lists, and refuses when something uncovered
lies inside a folder it would otherwise remove; other things beside them stay.

A file the user names on the command line (``predict photo.jpg --out result.png``,
``export --format onnx --out model.onnx``, ``eval --out results.json``) is replaced: naming
it is the request. Files img2img names itself inside an ``--out`` folder (predictions)
are checked against the folder's manifest (:func:`check_files`). The temporary names it
writes beside a target and renames into place (``.NAME.PID.THREAD.tmp`` of
:func:`img2img.files.atomic_write`, ``.tmp-step-N``) are its own; a temporary *folder* is still removed only with its proof (a crashed save's).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from img2img.errors import UserError
from img2img.files import write_text_atomic

MARKER = ".img2img.json"
FORMAT = "img2img.folder"
NOUNS = {
    "model": "an img2img model directory",
    "run": "an img2img run directory",
    "checkpoint": "an img2img checkpoint",
    "sample-data": "img2img sample data",
    "predictions": "an img2img predictions folder",
    "prepare-tmp": "a temporary folder of img2img data prepare",
}
DEFAULT_HINT = "choose another folder, or remove it yourself"

#: What a run directory holds at its top level (anything new the trainer writes there
#: belongs here too). Trackers write what they like inside their folders; the exported
#: models and the checkpoints carry their own proof.
RUN_ENTRIES = ["config.yaml", "metrics.jsonl", "wandb_run_id", "wandb", "tensorboard", "checkpoints/"]
RUN_PATTERNS = ["samples/step-*.png"]
#: What a checkpoint written before manifests holds (its ``model/`` has its own proof).
LEGACY_CHECKPOINT_PATTERNS = [
    "trainer_state.json", "rank_*.safetensors", "ema.safetensors", "model*.safetensors",
    "model*.bin", "optimizer*.bin", "scheduler*.bin", "sampler*.bin", "dl_state_dict*.bin",
    "random_states_*.pkl", "scaler.pt", "custom_checkpoint_*.pkl",
]
MODEL_ENTRIES = ["config.json", "model.safetensors"]
#: Top-level config keys added after run directories got manifests (a resolved config
#: of an older run lacks them).
LATER_KEYS = ("task_options",)
SAMPLE_DATA_FILES = ["LICENSES.md", "manifest.json", ".complete"]
#: The one checkpoint-name rule: a run's checkpoints are ``checkpoints/step-NNNNNN`` (the
#: step, six digits or more), each written first as ``.tmp-step-NNNNNN`` and renamed into
#: place. The engine, the model finder and the proof below all read names by it.
CHECKPOINT_PREFIX = "step-"
CHECKPOINT_TMP_PREFIX = ".tmp-"


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:06d}"


def checkpoint_step(name: str) -> int | None:
    """The step a checkpoint folder's name says; None for any other name."""
    match = re.fullmatch(re.escape(CHECKPOINT_PREFIX) + "([0-9]+)", name)
    return int(match[1]) if match else None


# --------------------------------------------------------------------------- proof


def _read_json(path: Path) -> object:
    try:
        if not path.is_file() or path.stat().st_size > 64 << 20:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


class Proof(NamedTuple):
    kind: str
    entries: list[str]
    patterns: list[str]


def _valid_entry(entry: object) -> bool:
    if not isinstance(entry, str) or not entry or entry.startswith("/"):
        return False
    parts = entry.rstrip("/").split("/")
    return all(p and p not in (".", "..") for p in parts)


def read_marker(folder: Path) -> dict | None:
    """The folder's ``.img2img.json`` if it is a well-formed one of img2img's, else None."""
    data = _read_json(Path(folder) / MARKER)
    if (not isinstance(data, dict) or data.get("format") != FORMAT or data.get("kind") not in NOUNS
            or not isinstance(data.get("entries"), list) or not all(map(_valid_entry, data["entries"]))
            or not isinstance(data.get("patterns", []), list) or not all(map(_valid_entry, data.get("patterns", [])))):
        return None
    return data


def _legacy(folder: Path) -> Proof | None:
    config = _read_json(folder / "config.json")
    if isinstance(config, dict) and config.get("format") == "img2img.model":
        return Proof("model", MODEL_ENTRIES, [])
    step = checkpoint_step(folder.name)
    state = _read_json(folder / "trainer_state.json") if step is not None else None
    if isinstance(state, dict) and state.get("step") == step and _legacy(folder / "model") == (
            "model", MODEL_ENTRIES, []):
        return Proof("checkpoint", [], LEGACY_CHECKPOINT_PATTERNS)
    if (folder / "config.yaml").is_file() and _is_run_config(folder):
        return Proof("run", RUN_ENTRIES, RUN_PATTERNS)
    manifest = _read_json(folder / "manifest.json")
    if isinstance(manifest, dict) and manifest.get("format") == 1 and isinstance(manifest.get("crops"), dict):
        crops = [c for c in manifest["crops"] if _valid_entry(c)]
        return Proof("sample-data", crops + SAMPLE_DATA_FILES, [])
    return None


def _keys(data: object) -> object:
    return {k: _keys(v) for k, v in data.items()} if isinstance(data, dict) else None


def _is_run_config(folder: Path) -> bool:
    from img2img.config import from_dict, parse_yaml_text

    try:
        if (folder / "config.yaml").stat().st_size > 1 << 20:
            return False
        # the config's own safe reader: no aliases, bounded depth (a few bytes of aliases
        # must not cost seconds here, where every folder img2img may touch is checked)
        data = parse_yaml_text((folder / "config.yaml").read_text(encoding="utf-8"))
        if not isinstance(data, dict) or PurePosixPath(str(data.get("output_dir", ""))).name != folder.name:
            return False
        schema = _keys(from_dict(data).to_dict())
        for key in LATER_KEYS:  # a run of an older version was written without them
            if key not in data:
                schema.pop(key, None)
        return schema == _keys(data)
    except Exception:  # not YAML, not a config: no proof
        return False


def proof(folder: str | Path) -> Proof | None:
    """The kind, entries and patterns that prove img2img wrote ``folder`` (see the module
    docstring), or None."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return None
    marker = read_marker(folder)
    if marker is not None:
        return Proof(marker["kind"], list(marker["entries"]), list(marker.get("patterns", [])))
    return _legacy(folder)


# --------------------------------------------------------------------------- coverage


_Rule = tuple[tuple[str, ...], bool]  # path components, and whether they are patterns


def _rules(found: Proof, containers: bool) -> list[_Rule]:
    return [(tuple(e.rstrip("/").split("/")), is_pattern)
            for is_pattern, group in ((False, found.entries), (True, found.patterns))
            for e in group if e.endswith("/") == containers]


def _match(parts: tuple[str, ...], rule: _Rule) -> bool:
    pattern, is_pattern = rule
    if not is_pattern:
        return parts == pattern
    return len(parts) == len(pattern) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pattern))


#: Which folders of their own proof a folder may hold, and where: a run its exported
#: models and its checkpoints, a checkpoint its model. Anything else with a proof of its
#: own inside (a predictions folder in a run) is not covered by the outer folder's proof.
NESTED = {
    "run": {"model": ("model", "model_best"), "checkpoint": ("checkpoints/*",)},
    "checkpoint": {"model": ("model",)},
}


def _may_hold(kind: str, inner: str, rel: tuple[str, ...]) -> bool:
    return any(_match(rel, (tuple(p.split("/")), True)) for p in NESTED.get(kind, {}).get(inner, ()))


def _walk(folder: Path, found: Proof) -> tuple[list[Path], list[Path], list[str]]:
    """Split what ``folder`` holds into (covered paths to delete, img2img's folders on the
    way, uncovered relative paths)."""
    claimed = _rules(found, containers=False)
    containers = _rules(found, containers=True)
    covered: list[Path] = []
    folders: list[Path] = []
    uncovered: list[str] = []

    def on_the_way(parts: tuple[str, ...]) -> bool:
        return any(_match(parts, c) for c in containers) or any(
            len(c[0]) > len(parts) and _match(parts, (c[0][: len(parts)], c[1])) for c in [*claimed, *containers])

    def walk(path: Path, parts: tuple[str, ...]) -> None:
        for child in sorted(path.iterdir()):
            rel = (*parts, child.name)
            if not parts and child.name == MARKER:
                continue
            if any(_match(rel, c) for c in claimed):
                covered.append(child)
                continue
            if child.is_dir() and not child.is_symlink():
                own = proof(child)
                if own is not None and not _may_hold(found.kind, own.kind, rel):
                    own = None  # another kind's folder here is not part of this one
                inner = _walk(child, own)[2] if own is not None else []
                if own is not None and not inner:
                    covered.append(child)
                    continue
                if on_the_way(rel):
                    folders.append(child)
                    walk(child, rel)
                    continue
                if inner:  # its own proof does not cover all of it: name what is not
                    uncovered.extend("/".join((*rel, u)) for u in inner)
                    continue
            uncovered.append("/".join(rel))

    walk(folder, ())
    return covered, folders, uncovered


def _names(paths: list[str]) -> str:
    shown = ", ".join(paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _refusal(folder: Path, kind: str, reason: str, hint: str, verb: str = "replace") -> UserError:
    return UserError(f"{folder} is not {NOUNS[kind]}; refusing to {verb} it ({reason}): {hint}")


def _why_not(folder: Path, kind: str) -> Proof | str:
    """The entries that prove ``folder`` is of ``kind``, or why it is not."""
    found = proof(folder)
    if found is None:
        return f"it has no {MARKER} or other sign that img2img wrote it"
    if found.kind != kind:
        return f"it is {NOUNS[found.kind]}"
    return found


def check_replaceable(folder: str | Path, kind: str, hint: str = DEFAULT_HINT) -> None:
    """Refuse (UserError) unless ``folder`` is absent, empty, or proven to be of ``kind``
    with nothing uncovered in it; a file there is refused too."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir() or folder.is_symlink():
        raise UserError(f"{folder} exists and is a file or a link, not a folder: {hint}")
    if not any(folder.iterdir()):
        return
    found = _why_not(folder, kind)
    if isinstance(found, str):
        raise _refusal(folder, kind, found, hint)
    uncovered = _walk(folder, found)[2]
    if uncovered:
        raise _refusal(folder, kind, f"it holds {_names(uncovered)}, which img2img did not write", hint)


def remove(folder: str | Path, kind: str, hint: str = DEFAULT_HINT) -> None:
    """Delete ``folder`` after :func:`check_replaceable`; an absent one is fine."""
    folder = Path(folder)
    check_replaceable(folder, kind, hint)
    if folder.exists():
        shutil.rmtree(folder)


def clear_listed(folder: str | Path, kind: str, names: list[str], hint: str = DEFAULT_HINT) -> None:
    """Delete what the proof of ``folder`` covers, and img2img's folders it empties. The
    folder itself and anything beside img2img's entries stay; something uncovered inside
    one of img2img's folders is refused before anything is deleted. Without proof, the
    folder is refused when it holds any of ``names`` (what a build of ``kind`` writes at
    its top level), else there is nothing to clear."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    found = _why_not(folder, kind)
    if isinstance(found, str):
        present = [n for n in names if (folder / n).exists() or (folder / n).is_symlink()]
        if present:
            raise _refusal(folder, kind, f"it holds {_names(present)} but {found}", hint, "clear")
        return
    covered, folders, uncovered = _walk(folder, found)
    tops = {e.split("/")[0] for e in [*found.entries, *found.patterns]}
    inside = [u for u in uncovered if "/" in u and u.split("/")[0] in tops]
    if inside:
        raise _refusal(folder, kind, f"it holds {_names(inside)}, which img2img did not write", hint, "clear")
    for path in covered:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    for path in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if not any(path.iterdir()):
            path.rmdir()
    (folder / MARKER).unlink(missing_ok=True)


def check_folder_kind(folder: str | Path, kind: str, hint: str = DEFAULT_HINT, verb: str = "write into") -> None:
    """Refuse a non-empty ``folder`` that is not proven to be of ``kind`` (what is in it
    beside img2img's own files does not matter: nothing of it is touched)."""
    folder = Path(folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    found = _why_not(folder, kind)
    if isinstance(found, str):
        raise _refusal(folder, kind, found, hint, verb)


def check_files(folder: str | Path, kind: str, files: list[str], hint: str = DEFAULT_HINT) -> list[str]:
    """Before writing ``files`` (relative paths) into ``folder``: refuse if ``folder``
    carries another kind's proof, or if one of them exists and is not listed in the
    folder's ``kind`` manifest. Returns the manifest's entries (empty when none)."""
    folder = Path(folder)
    found = proof(folder) if folder.is_dir() else None
    if found is not None and found.kind != kind:
        raise _refusal(folder, kind, f"it is {NOUNS[found.kind]}", hint, "write into")
    found = found or Proof(kind, [], [])
    listed = _rules(found, containers=False)
    clashes = [f for f in files if (folder / f).exists() or (folder / f).is_symlink()]
    foreign = [f for f in clashes if not any(_match(tuple(f.split("/")), rule) for rule in listed)]
    if foreign:
        raise UserError(f"{folder} already holds {_names(foreign)}, which img2img did not write; "
                        f"refusing to overwrite: {hint}")
    return found.entries


def mark(folder: str | Path, kind: str, entries: list[str], patterns: list[str] = ()) -> None:
    """Write (atomically) the manifest that proves img2img wrote ``folder``: ``entries``
    (literal paths) and ``patterns`` (see the module docstring). An existing
    ``.img2img.json`` must be img2img's and of the same kind."""
    folder = Path(folder)
    path = folder / MARKER
    if path.exists() or path.is_symlink():
        old = read_marker(folder)
        if old is None or old["kind"] != kind:
            raise UserError(f"{path} is not img2img's {kind} manifest; refusing to replace it: "
                            "remove it yourself, or choose another folder")
    bad = [e for e in [*entries, *patterns] if not _valid_entry(e)]
    if bad:
        raise ValueError(f"invalid manifest entries: {bad[:3]}")
    data = {"format": FORMAT, "version": 1, "kind": kind, "entries": sorted(set(entries)),
            "patterns": sorted(set(patterns))}
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def listing(folder: str | Path) -> list[str]:
    """Every file below ``folder`` (relative POSIX paths, the manifest excluded)."""
    folder = Path(folder)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p != folder / MARKER)
