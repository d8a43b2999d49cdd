"""Typed run configuration: dataclasses loaded from YAML, overridden by ``key.sub=value``.

A run is described by one :class:`Config`. It is built from a YAML recipe (no inheritance,
no includes: what the file says is what runs), then command-line overrides such as
``train.batch_size=4`` are applied, then every value is checked against its declared type
and allowed values before any work starts. Every mistake raises :class:`ConfigError` with a
message that names the key, the value and what is allowed. Values echoed in messages are cut
to about 100 characters (:func:`short_repr`); sizes and counts have upper bounds, so that
no value can allocate without bound before a check runs; YAML aliases are refused.

This module imports neither torch nor numpy, so ``img2img --help`` stays fast.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from img2img.errors import ConfigError

#: Every metric evaluation reports, in display order, and whether higher is better. The
#: best model and the plateau schedule follow ``eval.metric``'s direction.
METRICS = {"psnr": True, "ssim": True, "psnr_y": True, "ssim_y": True, "fid": False, "kid": False}
GENERATORS = (
    "unet_128",
    "unet_256",
    "unet",
    "resnet_6blocks",
    "resnet_9blocks",
    "resnet",
    "srresnet",
    "srresnet_bn",
)
DISCRIMINATORS = ("patchgan", "pixelgan", "multiscale", "vgg", "none")
NORMS = ("batch", "instance", "none", "spectral")
INITS = ("normal", "xavier", "kaiming", "orthogonal")
GAN_MODES = ("vanilla", "lsgan", "wgangp", "hinge")
PIXEL_LOSSES = ("l1", "mse", "charbonnier")
SCHEDULERS = ("constant", "linear", "step", "cosine", "plateau")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")

# Upper bounds of sizes a config may ask for: far above any real use, they stop a typo or
# a hostile file (ngf: 1000000000) from allocating without bound before any check runs.
#: Channel widths (model.generator.ngf, model.discriminator.ndf): 8 x the usual 64.
MAX_WIDTH = 512
#: Image sides of training crops and resizes (data.load_size, crop_size, gt_size): one
#: 8192 x 8192 sample is already 0.8 GB as float.
MAX_SIDE = 8192
#: The largest config file read; recipes are a few kilobytes.
MAX_CONFIG_BYTES = 1 << 20
#: How deeply YAML mappings and lists may nest; the schema is 3 levels deep.
MAX_YAML_DEPTH = 32
#: Values echoed in error messages are cut to about this many characters.
MAX_ECHO = 100


def _choices(*values: str, **extra: Any) -> Any:
    return {"choices": values, **extra}


# --------------------------------------------------------------------------- schema


@dataclass
class GeneratorConfig:
    """The generator backbone. Names fix the depth: ``unet_256`` has 8 downsamplings,
    ``resnet_9blocks`` 9 residual blocks; the plain ``unet``/``resnet`` names read
    ``num_downs``/``n_blocks``."""

    name: str = field(default="unet_256", metadata=_choices(*GENERATORS))
    ngf: int = field(default=64, metadata={"min": 1, "max": MAX_WIDTH})
    norm: str = field(default="batch", metadata=_choices(*NORMS))
    dropout: bool = True
    num_downs: int = field(default=8, metadata={"min": 1, "max": 12})
    n_blocks: int | None = field(default=None, metadata={"min": 0, "max": 256})
    padding: str = field(default="reflect", metadata=_choices("reflect", "replicate", "zero"))
    init: str = field(default="normal", metadata=_choices(*INITS))
    init_gain: float = field(default=0.02, metadata={"min": 0.0})
    value_range: str = field(default="signed", metadata=_choices("signed", "unit"))


@dataclass
class DiscriminatorConfig:
    """The discriminator: the 70x70 PatchGAN is ``patchgan`` with ``n_layers: 3``."""

    name: str = field(default="patchgan", metadata=_choices(*DISCRIMINATORS))
    ndf: int = field(default=64, metadata={"min": 1, "max": MAX_WIDTH})
    n_layers: int = field(default=3, metadata={"min": 0, "max": 16})
    norm: str = field(default="batch", metadata=_choices(*NORMS))
    num_scales: int = field(default=2, metadata={"min": 1, "max": 8})
    init: str = field(default="normal", metadata=_choices(*INITS))
    init_gain: float = field(default=0.02, metadata={"min": 0.0})


@dataclass
class ModelConfig:
    """Networks. ``in_channels``/``out_channels`` left empty take the task's natural values
    (3 -> 3; colorization 1 -> 2)."""

    in_channels: int | None = field(default=None, metadata={"min": 1, "max": 64})
    out_channels: int | None = field(default=None, metadata={"min": 1, "max": 64})
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    init_from: str | None = None


@dataclass
class LossConfig:
    """Objective weights. Terms a task does not use are ignored by it."""

    gan_mode: str = field(default="vanilla", metadata=_choices(*GAN_MODES))
    gan_weight: float = field(default=1.0, metadata={"min": 0.0})
    pixel: str = field(default="l1", metadata=_choices(*PIXEL_LOSSES))
    pixel_weight: float = field(default=100.0, metadata={"min": 0.0})
    cycle_weight: float = field(default=10.0, metadata={"min": 0.0})
    identity_weight: float = field(default=0.5, metadata={"min": 0.0})
    perceptual_weight: float = field(default=0.0, metadata={"min": 0.0})
    perceptual_layers: dict[str, float] = field(default_factory=lambda: {"conv5_4": 1.0})
    vgg_weights: str = "imagenet"
    gp_weight: float = field(default=10.0, metadata={"min": 0.0})
    r1_weight: float = field(default=0.0, metadata={"min": 0.0})
    d_loss_scale: float = field(default=0.5, metadata={"min": 0.0})
    pool_size: int = field(default=50, metadata={"min": 0, "max": 1000})


@dataclass
class TrainConfig:
    """Optimisation and the engine's switches."""

    max_steps: int = field(default=1000, metadata={"min": 1})
    batch_size: int = field(default=1, metadata={"min": 1, "max": 4096})
    save_every: int = field(default=1000, metadata={"min": 1})
    keep_last: int = field(default=3, metadata={"min": 1})
    grad_accum: int = field(default=1, metadata={"min": 1})
    lr_g: float = field(default=2e-4, metadata={"min": 0.0})
    lr_d: float = field(default=2e-4, metadata={"min": 0.0})
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    weight_decay: float = field(default=0.0, metadata={"min": 0.0})
    scheduler: str = field(default="linear", metadata=_choices(*SCHEDULERS))
    decay_start: int | None = field(default=None, metadata={"min": 0})
    milestones: list[int] = field(default_factory=list)
    gamma: float = field(default=0.5, metadata={"min": 0.0})
    cosine_periods: list[int] = field(default_factory=list)
    restart_weights: list[float] = field(default_factory=list)
    eta_min: float = field(default=0.0, metadata={"min": 0.0})
    plateau_patience: int = field(default=5, metadata={"min": 0})
    plateau_factor: float = field(default=0.5, metadata={"min": 0.0, "below": 1.0})
    warmup_steps: int = field(default=0, metadata={"min": 0})
    max_grad_norm: float = field(default=0.0, metadata={"min": 0.0})
    ema: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    channels_last: bool = False
    compile: bool = False
    fused_adam: bool = True
    tf32: bool = True
    skip_nonfinite: bool = False


@dataclass
class DataConfig:
    """Where the images are and how they are read. Split folders live under ``root``
    (``root/train``, ``root/val``; ``root/trainA``, ``root/trainB`` for unpaired data)."""

    root: str = ""
    train_split: str = "train"
    val_split: str = "val"
    layout: str = field(default="aligned", metadata=_choices("aligned", "folders"))
    direction: str = field(default="AtoB", metadata=_choices("AtoB", "BtoA"))
    on_error: str = field(default="raise", metadata=_choices("raise", "skip"))
    preprocess: str = field(default="resize_and_crop", metadata=_choices(*PREPROCESS))
    load_size: int = field(default=286, metadata={"min": 1, "max": MAX_SIDE})
    crop_size: int = field(default=256, metadata={"min": 1, "max": MAX_SIDE})
    flip: bool = True
    rot90: bool = False
    scale: int = field(default=4, metadata={"choices": (2, 3, 4)})
    gt_size: int = field(default=128, metadata={"min": 1, "max": MAX_SIDE})
    lr_root: str | None = None
    max_pixels: int = field(default=178_956_970, metadata={"min": 1})
    alpha: str = field(default="white", metadata=_choices("white", "drop"))
    num_workers: int = field(default=2, metadata={"min": 0, "max": 128})
    max_val_images: int = field(default=0, metadata={"min": 0})


@dataclass
class EvalConfig:
    """Periodic evaluation on the validation split and the best checkpoint it picks."""

    every: int = field(default=0, metadata={"min": 0})
    metric: str = field(default="psnr", metadata=_choices(*METRICS))
    crop_border: int | None = field(default=None, metadata={"min": 0})
    fid_weights: str | None = None


@dataclass
class LogConfig:
    """Trackers and how often they hear from the run."""

    wandb: str = field(default="off", metadata=_choices("off", "offline", "online"))
    project: str = "img2img"
    run_name: str | None = None
    tensorboard: bool = False
    every: int = field(default=50, metadata={"min": 1})
    images_every: int = field(default=500, metadata={"min": 0})
    progress: bool = True


@dataclass
class Config:
    """One training run."""

    task: str = ""
    task_options: dict[str, Any] = field(default_factory=dict)
    output_dir: str = "runs/run"
    seed: int = field(
        default=0, metadata={"min": 0, "max": 2**64 - 1, "note": "2**64 - 1, the largest seed torch takes"}
    )
    device: str = field(default="auto", metadata=_choices("auto", "cpu", "cuda"))
    mixed_precision: str = field(default="no", metadata=_choices("no", "fp16", "bf16"))
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)

    # ---------------------------------------------------------------- conveniences
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# --------------------------------------------------------------------------- YAML


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


def short_repr(value: Any) -> str:
    """The repr of a value to echo in a message, at most about :data:`MAX_ECHO` characters
    (long strings, numbers and lists are cut with ``...``) whatever the value holds."""
    text = _REPR.repr(value)
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."


def clip_text(text: str) -> str:
    """Text (a key, an override) cut to about :data:`MAX_ECHO` characters."""
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 2, 8, 8, 6
_REPR.maxstring, _REPR.maxlong, _REPR.maxother = 80, 40, 80


def parse_yaml_text(text: str, source: str = "<string>") -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"invalid YAML in {source}{where}: {clip_text(problem)}") from None
    except (ValueError, RecursionError) as err:
        if isinstance(err, ValueError) and "digits" in str(err):
            reason = "an integer with more than 4300 digits"
        else:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"invalid YAML in {source}: {clip_text(reason)}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
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


# --------------------------------------------------------------------------- schema walking


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, e.g. ``train.batch_size``."""
    keys = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}{f.name}"
        ftype = hints[f.name]
        if dataclasses.is_dataclass(ftype):
            keys.extend(all_keys(ftype, dotted + "."))
        else:
            keys.append(dotted)
    return keys


def _suggest(key: str, candidates: list[str]) -> str:
    """Keys with the same last part first (``batch_size`` -> ``train.batch_size``), then
    the closest spellings of the whole key, then of its last part."""
    leaf = key.rsplit(".", 1)[-1]
    close = [c for c in candidates if c.rsplit(".", 1)[-1] == leaf]
    close += [c for c in difflib.get_close_matches(key, candidates, n=3, cutoff=0.6) if c not in close]
    if not close:
        leaves: dict[str, list[str]] = {}
        for c in candidates:
            leaves.setdefault(c.rsplit(".", 1)[-1], []).append(c)
        for match in difflib.get_close_matches(leaf, list(leaves), n=3):
            close += leaves[match]
    close = close[:3]
    return f"; did you mean {', '.join(close)}?" if close else ""


def _unknown_key(dotted: str) -> ConfigError:
    hint = _suggest(dotted, all_keys()) if len(dotted) <= MAX_ECHO else ""
    return ConfigError(f"unknown config key '{clip_text(dotted)}'{hint}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"a list of {_type_name(item)}"
    if origin is dict:
        _, value = typing.get_args(tp)
        return f"a mapping of names to {_type_name(value)}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


_MISSING = object()


def _coerce(value: Any, tp: Any, dotted: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in canonical form."""
    if tp is Any:  # a task's options, checked by the task's own dataclass
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, dotted)
            except ConfigError:
                continue
        raise _bad_type(dotted, value, tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise _bad_type(dotted, value, tp)
        return [_coerce(v, item, f"{dotted}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_t, value_t = typing.get_args(tp)
        if not isinstance(value, dict):
            raise _bad_type(dotted, value, tp)
        return {str(k): _coerce(v, value_t, f"{dotted}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _bad_type(dotted, value, tp)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _bad_type(dotted, value, tp)
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise _bad_type(dotted, value, tp)
        if not math.isfinite(number):
            raise ConfigError(f"{clip_text(dotted)}: expected a finite number, got {short_repr(value)}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _bad_type(dotted, value, tp)
    raise TypeError(f"unsupported config annotation {tp!r} for {dotted}")


def _bad_type(dotted: str, value: Any, tp: Any) -> ConfigError:
    return ConfigError(f"{clip_text(dotted)}: expected {_type_name(tp)}, got {short_repr(value)}")


def _check_rules(dotted: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    if value is None:
        return
    dotted, shown = clip_text(dotted), short_repr(value)
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = "|".join(str(c) for c in choices)
        raise ConfigError(f"{dotted}: invalid value {shown}; allowed: {allowed}")
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


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {short_repr(data)}")
    hints = _hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            if cls.__module__ != __name__:  # a task's options: suggest among its own keys
                hint = _suggest(f"{prefix}{key}", [f"{prefix}{n}" for n in names]) if len(str(key)) <= MAX_ECHO else ""
                raise ConfigError(f"unknown config key '{clip_text(prefix + str(key))}'{hint}")
            raise _unknown_key(f"{prefix}{key}")
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
            value = _coerce(data[name], ftype, dotted)
            _check_rules(dotted, value, f.metadata)
            kwargs[name] = value
    return cls(**kwargs)


# --------------------------------------------------------------------------- overrides


def _field_type(dotted: str) -> Any:
    """The annotation at a dotted path (``loss.perceptual_layers.conv5_4`` -> float)."""
    cls: Any = Config
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(cls):
            if typing.get_origin(cls) is dict and i == len(parts) - 1:
                return typing.get_args(cls)[1]
            raise _unknown_key(dotted)
        hints = _hints(cls)
        if part not in hints:
            raise _unknown_key(dotted)
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


# --------------------------------------------------------------------------- entry points


def validate(config: Config) -> Config:
    """Rules that span several keys (the task checks its own when it is built)."""
    t = config.train
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
            f"train.decay_start: {t.decay_start} is after train.max_steps ({t.max_steps})"
        )
    for name, weight in config.loss.perceptual_layers.items():
        if weight < 0:
            raise ConfigError(
                f"loss.perceptual_layers.{clip_text(name)}: weight must be >= 0, got {weight}")
    return config


def from_dict(data: dict[str, Any]) -> Config:
    return validate(_build(Config, data, ""))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML recipe (or start from the defaults), apply overrides, validate."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, list(overrides or []))
    return from_dict(data)


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(config.to_yaml(), encoding="utf-8")
    tmp.replace(path)
