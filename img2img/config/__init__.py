"""Typed run configuration: dataclasses loaded from YAML, overridden by ``key.sub=value``.

A run is described by one :class:`Config`. It is built from a YAML recipe (no inheritance,
no includes: what the file says is what runs), then command-line overrides such as
``train.batch_size=4`` are applied, then every value is checked against its declared type
and allowed values before any work starts. Every mistake raises :class:`ConfigError` with a
message that names the key, the value and what is allowed. Values echoed in messages are cut
to about 100 characters (:func:`short_repr`); sizes and counts have upper bounds, so that
no value can allocate without bound before a check runs; YAML aliases are refused. The
package owns the schema (:mod:`~img2img.config.schema`: the section dataclasses and their
rules), YAML reading (:mod:`~img2img.config.reading`), the words of its errors
(:mod:`~img2img.config.messages`), dotted overrides (:mod:`~img2img.config.overrides`),
validation (:mod:`~img2img.config.validation`), loading and saving
(:mod:`~img2img.config.load`) and the JSON schema for editors
(:mod:`~img2img.config.json_schema`). It sits below the tasks and knows none of them, and it
imports neither torch nor numpy, so ``img2img --help`` stays fast.
"""

from __future__ import annotations

from img2img.config.json_schema import config_schema
from img2img.config.load import load_config, save_config
from img2img.config.messages import MAX_ECHO, clip_text, short_repr
from img2img.config.overrides import apply_overrides, parse_override
from img2img.config.reading import parse_yaml_text, read_yaml
from img2img.config.schema import (
    DISCRIMINATORS,
    GAN_MODES,
    GENERATORS,
    INITS,
    MAX_CONFIG_BYTES,
    MAX_SIDE,
    MAX_WIDTH,
    MAX_YAML_DEPTH,
    METRICS,
    NORMS,
    PIXEL_LOSSES,
    PREPROCESS,
    SCHEDULERS,
    Config,
    DataConfig,
    DiscriminatorConfig,
    EvalConfig,
    GeneratorConfig,
    LogConfig,
    LossConfig,
    ModelConfig,
    TrainConfig,
    all_keys,
)
from img2img.config.validation import build_section, from_dict, validate
from img2img.errors import ConfigError

__all__ = [
    "DISCRIMINATORS",
    "GAN_MODES",
    "GENERATORS",
    "INITS",
    "MAX_CONFIG_BYTES",
    "MAX_ECHO",
    "MAX_SIDE",
    "MAX_WIDTH",
    "MAX_YAML_DEPTH",
    "METRICS",
    "NORMS",
    "PIXEL_LOSSES",
    "PREPROCESS",
    "SCHEDULERS",
    "Config",
    "ConfigError",
    "DataConfig",
    "DiscriminatorConfig",
    "EvalConfig",
    "GeneratorConfig",
    "LogConfig",
    "LossConfig",
    "ModelConfig",
    "TrainConfig",
    "all_keys",
    "apply_overrides",
    "build_section",
    "clip_text",
    "config_schema",
    "from_dict",
    "load_config",
    "parse_override",
    "parse_yaml_text",
    "read_yaml",
    "save_config",
    "short_repr",
    "validate",
]
