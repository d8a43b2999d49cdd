"""The recipes that ship with img2img, by name: ``pix2pix/facades`` is
``configs/pix2pix/facades.yaml``.

The recipes live in the repository's ``configs/`` folder; a built wheel carries the same
files as the package data ``img2img/recipes/`` (``pyproject.toml`` maps one onto the
other), so a name works from any folder, in a source checkout and in an installed package
alike. A path to a YAML file always wins over a name. A recipe's description is the first
line of its header (the comment lines at the top of the file).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from img2img.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parents[1]
_SENTENCE_END = re.compile(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)\.\s")  # not "et al. ", "e.g. "


def recipe_dir() -> Path:
    """The folder of the shipped recipes: ``img2img/recipes`` in an installed wheel, else
    the source checkout's ``configs/``."""
    installed = _PACKAGE / "recipes"
    return installed if installed.is_dir() else _PACKAGE.parent / "configs"


def recipe_names() -> list[str]:
    """Every shipped recipe's name (``group/stem``), sorted."""
    root = recipe_dir()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def describe(path: Path, width: int = 100) -> str:
    """The first sentence of a recipe's header comment, cut to ``width`` characters (""
    without a header)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    words: list[str] = []
    for line in lines:
        text = line.strip()
        if not text.startswith("#") or text.lstrip("#").strip().startswith("yaml-language-server"):
            if words or not text.startswith("#"):
                break
            continue
        words += text.lstrip("#").split()
        if _SENTENCE_END.search(" ".join(words) + " ") or not text.lstrip("#").strip():
            break
    sentence = _SENTENCE_END.split(" ".join(words) + " ")[0].strip().rstrip(".")
    return sentence if len(sentence) <= width else sentence[: width - 3].rstrip() + "..."


def recipe_path(name: str) -> Path | None:
    """The shipped recipe called ``name`` (``pix2pix/facades``, with or without ``.yaml``,
    or with the repository's ``configs/`` in front); None when there is none."""
    text = name.strip().replace("\\", "/")
    text = text[: -len(".yaml")] if text.endswith(".yaml") else text
    text = text[len("configs/"):] if text.startswith("configs/") else text
    if not text or text.startswith("/") or ".." in text.split("/"):
        return None
    path = recipe_dir() / f"{text}.yaml"
    return path if path.is_file() else None


def resolve_config_path(given: str | Path) -> Path:
    """``given`` as a file: the path itself when it is a file, else the shipped recipe of
    that name (a folder of that name does not hide it); a ConfigError that names the
    closest recipes otherwise."""
    path = Path(given).expanduser()
    if path.is_file():
        return path
    found = recipe_path(str(given))
    if found is not None:  # a folder of that name (a data set's, say) is no config
        return found
    if path.exists():
        return path
    wanted = str(given).replace("\\", "/").removesuffix(".yaml").removeprefix("configs/")
    names = recipe_names()
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.5)
    close += [n for n in names if wanted and n.split("/")[0] == wanted and n not in close][:3]
    hint = (f"; did you mean {', '.join(close[:3])}? ('img2img recipes' lists the recipes)"
            if close and not path.is_absolute() else "")
    raise ConfigError(f"config file not found: {given}{hint}")


def cli_recipes(args) -> int:
    """``img2img recipes``: each shipped recipe's name and its one-line description."""
    names = recipe_names()
    if not names:
        raise ConfigError(f"no recipes found in {recipe_dir()}")
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name.ljust(width)}  {describe(recipe_dir() / f'{name}.yaml')}".rstrip())
    print(f"\nrun one: img2img train NAME data.root=PATH [key=value ...]   ({recipe_dir()})")
    return 0
