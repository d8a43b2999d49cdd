"""Command-line overrides: ``train.batch_size=4`` sets one key of the config's mapping.

The value is read as YAML (``train.betas=[0.9, 0.99]``), except that a string-typed key
takes the text as it is (``data.root=123`` is the folder "123"); ``null``, ``~`` and
``None`` clear an optional key. A key inside a mapping-valued field
(``loss.perceptual_layers.conv3_4=0.5``) adds to that field's default.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from typing import Any, Union

from img2img.config.messages import clip_text, short_repr, unknown_key
from img2img.config.reading import parse_yaml_text
from img2img.config.schema import Config, type_hints
from img2img.errors import ConfigError


def _field_type(dotted: str) -> Any:
    """The annotation at a dotted path (``loss.perceptual_layers.conv5_4`` -> float)."""
    cls: Any = Config
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(cls):
            if typing.get_origin(cls) is dict and i == len(parts) - 1:
                return typing.get_args(cls)[1]
            raise unknown_key(dotted)
        hints = type_hints(cls)
        if part not in hints:
            raise unknown_key(dotted)
        cls = hints[part]
    return cls


def parse_override(text: str) -> tuple[str, Any]:
    """``train.batch_size=4`` -> (``"train.batch_size"``, 4); values are YAML, except that
    string-typed keys take the text as it is."""
    if "=" not in text:
        raise ConfigError(
            f"override {short_repr(text)} must look like key.sub=value (e.g. train.batch_size=4)"
        )
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", key):
        raise ConfigError(f"override {short_repr(text)}: {short_repr(key)} is not a dotted config key")
    ftype = _field_type(key)
    if dataclasses.is_dataclass(ftype):
        raise ConfigError(
            f"override {short_repr(text)}: {key} is a section; set one of its keys, e.g. "
            f"{key}.{dataclasses.fields(ftype)[0].name}=..."
        )
    plain = ftype is str or (
        typing.get_origin(ftype) in (Union, types.UnionType)
        and str in typing.get_args(ftype)
        and raw.strip() not in ("null", "~", "None")
    )
    if plain:
        return key, raw
    value = parse_yaml_text(raw, f"override {key}") if raw.strip() else None
    if raw.strip() == "None":
        value = None
    return key, value


def _default_at(parts: list[str]) -> Any:
    node: Any = Config()
    for part in parts:
        node = getattr(node, part, None)
    return node


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``key.sub=value`` set."""
    data = copy.deepcopy(data)
    for text in overrides:
        key, value = parse_override(text)
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                # A dict-valued key (loss.perceptual_layers.conv3_4=...) extends its default.
                default = _default_at(parts[: depth + 1])
                child = node[part] = dict(default) if isinstance(default, dict) else {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {short_repr(text)}: {clip_text(part)} is not a section")
            node = child
        node[parts[-1]] = value
    return data
