"""The entry points: a run config from a YAML recipe and overrides, and back to a file."""

from __future__ import annotations

from pathlib import Path

from img2img.config.overrides import apply_overrides
from img2img.config.reading import read_yaml
from img2img.config.recipes import resolve_config_path
from img2img.config.schema import Config
from img2img.config.validation import from_dict
from img2img.files import write_text_atomic


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML recipe (a path, or the name of a shipped recipe such as
    ``pix2pix/facades``; or start from the defaults), apply overrides, validate."""
    data = read_yaml(resolve_config_path(path)) if path is not None else {}
    data = apply_overrides(data, list(overrides or []))
    return from_dict(data)


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, config.to_yaml())
