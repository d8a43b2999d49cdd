"""Reading YAML for a config: the safe loader, its limits, and one message per mistake.

The loader is PyYAML's SafeLoader with YAML 1.2 booleans (only ``true``/``false``, so
``wandb: off`` stays a string), a key given twice in one mapping refused, aliases
(``*name``) refused and nesting limited to :data:`MAX_YAML_DEPTH`. Files over
:data:`MAX_CONFIG_BYTES` are not read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from img2img.config.messages import clip_text, short_repr
from img2img.config.schema import MAX_CONFIG_BYTES, MAX_YAML_DEPTH
from img2img.errors import ConfigError
from img2img.files import first_line


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false are booleans, so ``wandb: off`` stays a string.
    A key given twice in one mapping is an error (PyYAML keeps the last silently).
    Aliases (``*name``) are refused, so that a few hundred bytes cannot expand into
    gigabytes ("billion laughs"; recipes never need them), and so is nesting deeper than
    :data:`MAX_YAML_DEPTH`."""

    _depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in img2img configs; write "
                "the value out in full", self.peek_event().start_mark)
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {short_repr(key)} appears twice in one mapping",
                    key_node.start_mark)
            seen[key] = True
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def parse_yaml_text(text: str, source: str = "<string>") -> Any:
    """The value YAML ``text`` holds; a ConfigError naming ``source`` (and the line and
    column where known) if it is not valid YAML or breaks a limit."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or first_line(err)
        raise ConfigError(f"invalid YAML in {source}{where}: {clip_text(problem)}") from None
    except (ValueError, RecursionError) as err:
        if isinstance(err, ValueError) and "digits" in str(err):
            reason = "an integer with more than 4300 digits"
        else:
            reason = first_line(err)
        raise ConfigError(f"invalid YAML in {source}: {clip_text(reason)}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds (empty for an empty file)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if path.is_dir():
        raise ConfigError(f"config path is a directory, not a YAML file: {path}")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {size:,} bytes is not a config (an img2img config is a small YAML file, "
            f"at most {MAX_CONFIG_BYTES:,} bytes); check the path"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    data = parse_yaml_text(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys to values, got {type(data).__name__}"
        )
    return data
