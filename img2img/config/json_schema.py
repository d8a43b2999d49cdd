"""The JSON schema of the run config, so that editors complete and check YAML recipes.

It is made from the dataclasses of :mod:`img2img.config.schema` and their metadata: the
types, the defaults, ``choices`` as enums, ``min``/``max``/``below`` as bounds, the class
docstrings and the ``#:`` comments above the fields as descriptions, and
``additionalProperties: false`` everywhere, so that a misspelt key is flagged. The schema
follows what the loader accepts: a number where text is expected, ``4.0`` for an integer,
and text that spells a number (PyYAML reads ``1e-4`` as text) for a float.

This module knows no task: the caller passes the task names, each with its options
dataclass (or None), and ``task_options`` is then checked per task with ``if``/``then``.
The loader stays the authority; the schema is an aid for editors (draft-07, which the
YAML language server and the ``jsonschema`` package both read).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Union

from img2img.config.schema import Config, type_hints

DIALECT = "http://json-schema.org/draft-07/schema#"
#: Text that Python's ``float()`` reads as a number (YAML 1.1 reads ``1e-4`` as text).
NUMBER_TEXT = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_FIELD_LINE = re.compile(r"^\s+([A-Za-z_]\w*)\s*:")
_SCALARS: dict[Any, dict[str, Any]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": ["number", "string"], "pattern": NUMBER_TEXT},
    str: {"type": ["string", "number"]},
    type(None): {"type": "null"},
}


def config_schema(tasks: Mapping[str, type | None] | None = None) -> dict[str, Any]:
    """The JSON schema of :class:`Config`. ``tasks`` maps each task name a config may use to
    its options dataclass (None: the task takes no options); without it, ``task`` is any
    string and ``task_options`` any mapping."""
    schema: dict[str, Any] = {"$schema": DIALECT, "title": "img2img run config"}
    schema.update(section_schema(Config))
    schema["required"] = ["task"]
    task = schema["properties"]["task"]
    task.pop("default", None)
    if tasks is not None:
        task["type"], task["enum"] = "string", list(tasks)
        rules = [_task_rule(name, options) for name, options in tasks.items()]
        if rules:
            schema["allOf"] = rules
    return schema


def section_schema(cls: type) -> dict[str, Any]:
    """The schema of one dataclass: an object of exactly its fields."""
    hints, docs = type_hints(cls), field_docs(cls)
    schema: dict[str, Any] = {"type": "object"}
    doc = _class_doc(cls)
    if doc:
        schema["description"] = doc
    schema["properties"] = {
        f.name: _field_schema(f, hints[f.name], docs.get(f.name)) for f in dataclasses.fields(cls)
    }
    schema["additionalProperties"] = False
    return schema


def field_docs(cls: type) -> dict[str, str]:
    """The ``#:`` comment lines right above each field of a dataclass, by field name
    (none when its source cannot be read); a dataclass that extends another keeps the
    comments of the fields it inherits."""
    docs: dict[str, str] = {}
    for base in cls.__mro__[1:]:
        if dataclasses.is_dataclass(base):
            docs.update(field_docs(base))
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return docs
    pending: list[str] = []
    for line in lines:
        text = line.strip()
        if text.startswith("#:"):
            pending.append(text[2:].strip())
            continue
        match = _FIELD_LINE.match(line)
        if pending and match:
            docs[match[1]] = " ".join(pending)
        pending = []
    return docs


def _class_doc(cls: type) -> str | None:
    doc = cls.__doc__
    if not doc or doc.startswith(f"{cls.__name__}("):  # the signature dataclass() writes
        return None
    return " ".join(inspect.cleandoc(doc).split()).replace("``", "`")


def _task_rule(name: str, options: type | None) -> dict[str, Any]:
    if options is None:
        then = {"maxProperties": 0, "description": f"the {name} task takes no options"}
    else:
        then = section_schema(options)
    return {
        "if": {"properties": {"task": {"const": name}}, "required": ["task"]},
        "then": {"properties": {"task_options": then}},
    }


def _field_schema(f: dataclasses.Field, tp: Any, doc: str | None) -> dict[str, Any]:
    if dataclasses.is_dataclass(tp):
        schema = section_schema(tp)
    else:
        schema = _typed(tp, f.metadata)
        default = _default(f)
        if default is not dataclasses.MISSING:
            schema["default"] = default
    if doc:
        schema["description"] = doc
    return schema


def _typed(tp: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The schema of a value of annotation ``tp`` with the field's rules; ``X | None``
    keeps the rules on X and also allows null."""
    args = typing.get_args(tp)
    optional = typing.get_origin(tp) in (Union, types.UnionType) and type(None) in args
    if optional and len(args) == 2:
        (tp,) = [a for a in args if a is not type(None)]
    schema = _value_schema(tp)
    choices = meta.get("choices")
    if choices is not None:
        kinds = {"string" if isinstance(c, str) else "integer" for c in choices}
        schema = {"type": kinds.pop(), "enum": list(choices)} if len(kinds) == 1 else {"enum": list(choices)}
    for rule, keyword in (("min", "minimum"), ("max", "maximum"), ("below", "exclusiveMaximum")):
        if rule in meta:
            schema[keyword] = meta[rule]
    if optional and len(args) == 2:
        schema = _nullable(schema)
    return schema


def _value_schema(tp: Any) -> dict[str, Any]:
    if tp is Any:
        return {}
    if dataclasses.is_dataclass(tp):
        return section_schema(tp)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return {"anyOf": [_value_schema(a) for a in typing.get_args(tp)]}
    if origin is list:
        return {"type": "array", "items": _value_schema(typing.get_args(tp)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _value_schema(typing.get_args(tp)[1])}
    return dict(_SCALARS.get(tp, {}))


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    schema["type"] = [*kinds, "null"]
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return dataclasses.MISSING
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):  # not JSON (a plugin's default): no default shown
        return dataclasses.MISSING
