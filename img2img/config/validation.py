"""Checking a config: each value against its declared type and rules, then the rules that
span several keys.

Values are coerced to their canonical form (an integer-valued float to an int, a number
given for a string to its text, ``1e-4`` read by YAML as text to a float); anything else
is a ConfigError that names the key, the value (cut short) and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Union

from img2img.config.messages import MAX_ECHO, clip_text, short_repr, suggest, unknown_key
from img2img.config.schema import Config, type_hints
from img2img.errors import ConfigError


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"a list of {_type_name(item)}".replace("of a number", "of numbers").replace(
            "of an integer", "of integers")
    if origin is dict:
        _, value = typing.get_args(tp)
        return f"a mapping of names to {_type_name(value)}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _bad_type(dotted: str, value: Any, tp: Any) -> ConfigError:
    return ConfigError(f"{clip_text(dotted)}: expected {_type_name(tp)}, got {short_repr(value)}")


def _coerce_union(value: Any, tp: Any, dotted: str) -> Any:
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return coerce(value, arg, dotted)
        except ConfigError:
            continue
    raise _bad_type(dotted, value, tp)


def _coerce_bool(value: Any, dotted: str) -> bool:
    if isinstance(value, bool):
        return value
    raise _bad_type(dotted, value, bool)


def _coerce_int(value: Any, dotted: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _bad_type(dotted, value, int)


def _coerce_float(value: Any, dotted: str) -> float:
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        raise _bad_type(dotted, value, float)
    if not math.isfinite(number):
        raise ConfigError(f"{clip_text(dotted)}: expected a finite number, got {short_repr(value)}")
    return number


def _coerce_str(value: Any, dotted: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise _bad_type(dotted, value, str)


_SCALARS = {bool: _coerce_bool, int: _coerce_int, float: _coerce_float, str: _coerce_str}


def coerce(value: Any, tp: Any, dotted: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in canonical form."""
    if tp is Any:  # a task's options, checked by the task's own dataclass
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return _coerce_union(value, tp, dotted)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str) and "," in value:  # train.betas=0.5,0.999
            listed = "[" + ",".join(v.strip() for v in value.strip().strip("[]()").split(",")) + "]"
            raise ConfigError(f"{clip_text(dotted)}: expected {_type_name(tp)}, got "
                              f"{short_repr(value)}; write a list in brackets: "
                              f"{clip_text(dotted)}={clip_text(listed)}")
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):  # betas=0.5
            raise ConfigError(f"{clip_text(dotted)}: expected {_type_name(tp)}, got "
                              f"{short_repr(value)}; write a list in brackets: "
                              f"{clip_text(dotted)}=[{clip_text(str(value))},...]")
        if not isinstance(value, (list, tuple)):
            raise _bad_type(dotted, value, tp)
        return [coerce(v, item, f"{dotted}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, value_t = typing.get_args(tp)
        if not isinstance(value, dict):
            raise _bad_type(dotted, value, tp)
        return {str(k): coerce(v, value_t, f"{dotted}.{k}") for k, v in value.items()}
    if tp in _SCALARS:
        return _SCALARS[tp](value, dotted)
    raise TypeError(f"unsupported config annotation {tp!r} for {dotted}")


def check_rules(dotted: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    """A ConfigError if ``value`` breaks a field's ``choices``/``min``/``max``/``below``."""
    if value is None:
        return
    dotted, shown = clip_text(dotted), short_repr(value)
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = "|".join(str(c) for c in choices)
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.75)
        hint = f" (did you mean {dotted}={close[0]}?)" if close and isinstance(value, str) else ""
        raise ConfigError(f"{dotted}: invalid value {shown}{hint}; allowed: {allowed}")
    span = ""
    if "min" in meta and "max" in meta:
        note = f", {meta['note']}" if "note" in meta else ""
        span = f" (allowed: {meta['min']} to {meta['max']}{note})"
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{dotted}: invalid value {shown}; must be >= {meta['min']}{span}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{dotted}: invalid value {shown}; must be <= {meta['max']}{span}")
    if "below" in meta and value >= meta["below"]:
        raise ConfigError(f"{dotted}: invalid value {shown}; must be < {meta['below']}")


def build_section(cls: type, data: Any, prefix: str) -> Any:
    """A config section from a mapping, checked as the rest of the config is: ``cls`` is a
    dataclass whose fields carry the same ``min``/``max``/``choices`` metadata; unknown keys
    are named with the section's ``prefix`` (a task's ``task_options.``)."""
    return _build(cls, {} if data is None else data, prefix)


def _check_known(cls: type, data: dict[str, Any], names: typing.Container[str], prefix: str) -> None:
    for key in data:
        if key in names:
            continue
        if cls.__module__ != Config.__module__:  # a task's options: suggest among its own keys
            own = [f"{prefix}{n}" for n in names]
            hint = suggest(f"{prefix}{key}", own) if len(str(key)) <= MAX_ECHO else ""
            raise ConfigError(f"unknown config key '{clip_text(prefix + str(key))}'{hint}")
        raise unknown_key(f"{prefix}{key}")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {short_repr(data)}")
    hints = type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    _check_known(cls, data, names, prefix)
    kwargs = {}
    for name, f in names.items():
        dotted = f"{prefix}{name}"
        ftype = hints[name]
        if dataclasses.is_dataclass(ftype):
            section = data.get(name)
            if section is not None and not isinstance(section, dict):
                raise ConfigError(
                    f"{dotted}: expected a mapping of keys to values, got {short_repr(section)}")
            kwargs[name] = _build(ftype, section or {}, dotted + ".")
        elif name in data:
            value = coerce(data[name], ftype, dotted)
            check_rules(dotted, value, f.metadata)
            kwargs[name] = value
    return cls(**kwargs)


def _check_schedule(t: Any) -> None:
    if len(t.betas) != 2 or not all(0.0 <= b < 1.0 for b in t.betas):
        raise ConfigError(f"train.betas: expected two numbers in [0, 1), got {short_repr(t.betas)}")
    if t.scheduler == "step" and not t.milestones:
        raise ConfigError("train.milestones: the step scheduler needs at least one milestone step")
    if t.scheduler == "plateau" and t.warmup_steps:
        raise ConfigError("train.warmup_steps: the plateau scheduler has no warm-up; set it to 0")
    if sorted(t.milestones) != t.milestones:
        raise ConfigError(f"train.milestones: must be increasing, got {short_repr(t.milestones)}")
    if t.restart_weights and len(t.restart_weights) != len(t.cosine_periods):
        raise ConfigError(
            "train.restart_weights: needs one weight per entry of train.cosine_periods "
            f"({len(t.cosine_periods)}), got {len(t.restart_weights)}"
        )
    if t.cosine_periods and any(p < 1 for p in t.cosine_periods):
        raise ConfigError(
            f"train.cosine_periods: each period must be >= 1, got {short_repr(t.cosine_periods)}")
    if t.scheduler == "linear" and t.decay_start is not None and t.decay_start > t.max_steps:
        raise ConfigError(
            f"train.decay_start: {t.decay_start} is after train.max_steps ({t.max_steps}); for a "
            f"run this short also set train.decay_start={t.max_steps // 2} (or "
            "train.decay_start=null: the decay then starts at half of the run)"
        )


def validate(config: Config) -> Config:
    """Rules that span several keys (the task checks its own when it is built)."""
    _check_schedule(config.train)
    for name, weight in config.loss.perceptual_layers.items():
        if weight < 0:
            raise ConfigError(
                f"loss.perceptual_layers.{clip_text(name)}: weight must be >= 0, got {weight}")
    return config


def from_dict(data: dict[str, Any]) -> Config:
    """The checked config of a mapping (a YAML file's, or a saved run's)."""
    return validate(_build(Config, data, ""))
