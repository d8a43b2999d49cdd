"""The config loader: YAML, dotted overrides, and every user error."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys

import jsonschema
import pytest

from img2img.config import (
    Config,
    all_keys,
    config_schema,
    from_dict,
    load_config,
    parse_override,
    read_yaml,
    save_config,
)
from img2img.errors import ConfigError
from img2img.tasks import BUILTIN, Task, build_task, register, task_names
from tests.conftest import REPO

RECIPES = sorted((REPO / "configs").rglob("*.yaml"))


@dataclasses.dataclass
class GlowOptions:
    """The options of a task defined here, for the JSON schema's per-task ``task_options``."""

    #: How strong the glow is.
    strength: float = dataclasses.field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    mode: str = dataclasses.field(default="soft", metadata={"choices": ("soft", "hard")})
    passes: int | None = dataclasses.field(default=None, metadata={"min": 1})


@register
class GlowTask(Task):
    """A task that is only registered (the schema command finds it with IMG2IMG_PLUGINS)."""

    name = "glow_schema"
    Options = GlowOptions


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_have_the_keys_tools_depend_on():
    keys = set(all_keys())
    for key in (
        "output_dir",
        "seed",
        "device",
        "train.max_steps",
        "train.batch_size",
        "train.save_every",
        "data.root",
        "data.on_error",
        "log.wandb",
    ):
        assert key in keys
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.device == "auto" and cfg.data.on_error == "raise" and cfg.log.wandb == "off"


def test_yaml_then_overrides(tmp_path):
    path = write(
        tmp_path,
        """
task: cyclegan
output_dir: runs/x
seed: 7
train:
  max_steps: 10
  batch_size: 2
  lr_g: 1e-4
log:
  wandb: offline
model:
  generator:
    name: resnet_9blocks
""",
    )
    cfg = load_config(
        path,
        [
            "train.batch_size=4",
            "data.root=/some/where",
            "log.wandb=off",
            "train.betas=[0.9, 0.99]",
            "loss.perceptual_layers.conv3_4=0.5",
            "mixed_precision=no",
        ],
    )
    assert cfg.task == "cyclegan"
    assert cfg.seed == 7
    assert cfg.train.max_steps == 10
    assert cfg.train.batch_size == 4
    assert cfg.train.lr_g == pytest.approx(1e-4)
    assert cfg.data.root == "/some/where"
    assert cfg.log.wandb == "off"  # 'off' is a string, not YAML 1.1's boolean false
    assert cfg.mixed_precision == "no"
    assert cfg.train.betas == [0.9, 0.99]
    assert cfg.loss.perceptual_layers == {"conv5_4": 1.0, "conv3_4": 0.5}
    assert cfg.model.generator.name == "resnet_9blocks"


def test_string_override_keeps_text_as_is():
    assert parse_override("data.root=123") == ("data.root", "123")
    assert parse_override("output_dir=runs/a=b") == ("output_dir", "runs/a=b")
    assert parse_override("model.init_from=null") == ("model.init_from", None)
    assert parse_override("train.max_steps=5") == ("train.max_steps", 5)


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(None, ["train.max_steps=3", "task=srgan", "model.generator.name=srresnet"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.batchsize=4", "unknown config key 'train.batchsize'; did you mean train.batch_size"),
        ("trian.max_steps=4", "did you mean train.max_steps"),
        ("batch_size=4", "did you mean train.batch_size"),
        ("log.wanb=offline", "did you mean log.wandb"),
    ],
)
def test_unknown_key_suggests_closest(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert expected in str(err.value)


def test_unknown_key_in_yaml(tmp_path):
    path = write(tmp_path, "train:\n  max_step: 10\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train.max_step'; did you mean train.max_steps"):
        load_config(path)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.batch_size=abc", "train.batch_size: expected an integer, got 'abc'"),
        ("train.batch_size=0", "train.batch_size: invalid value 0; must be >= 1"),
        ("train.batch_size=1.5", "train.batch_size: expected an integer, got 1.5"),
        ("log.wandb=maybe", "log.wandb: invalid value 'maybe'; allowed: off|offline|online"),
        ("device=tpu", "device: invalid value 'tpu'; allowed: auto|cpu|cuda"),
        ("data.on_error=ignore", "data.on_error: invalid value 'ignore'; allowed: raise|skip"),
        ("train.channels_last=maybe", "train.channels_last: expected true or false, got 'maybe'"),
        ("train.lr_g=fast", "train.lr_g: expected a number, got 'fast'"),
        ("data.scale=5", "data.scale: invalid value 5; allowed: 1|2|3|4"),
        ("train.betas=[0.5]", "train.betas: expected two numbers in [0, 1)"),
        ("train.ema=2", "train.ema: invalid value 2.0; must be <= 1.0"),
        ("train.lr_g=nan", "train.lr_g: expected a finite number, got 'nan'"),
        ("train.ema=.nan", "train.ema: expected a finite number, got nan"),
        ("train.betas=[0.5,.inf]", "train.betas[1]: expected a finite number, got inf"),
        ("train.plateau_factor=1", "train.plateau_factor: invalid value 1.0; must be < 1.0"),
    ],
)
def test_wrong_type_or_value_names_key_value_and_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        load_config(None, ["train.batch_size"])
    with pytest.raises(ConfigError, match="train is a section"):
        load_config(None, ["train=3"])


def test_missing_yaml_names_the_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(missing)
    assert str(err.value) == f"config file not found: {missing}"


def test_invalid_yaml_names_path_and_line(tmp_path):
    path = write(tmp_path, "train:\n  max_steps: 10\n  batch_size: [1, 2\nseed: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"invalid YAML in {path}, line ")
    assert "\n" not in message


def test_yaml_top_level_must_be_mapping(tmp_path):
    path = write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path)


def test_section_must_be_mapping(tmp_path):
    for text in ("train: 5\n", "model: false\n", "model: []\n"):
        with pytest.raises(ConfigError, match=f"{text.split(':')[0]}: expected a mapping"):
            load_config(write(tmp_path, text))
    assert load_config(write(tmp_path, "train:\n")).train.batch_size == 1  # an empty section is fine


def test_a_key_given_twice_is_an_error(tmp_path):
    path = write(tmp_path, "train:\n  batch_size: 2\n  batch_size: 3\n")
    with pytest.raises(ConfigError, match=r"line 3 column 3: key 'batch_size' appears twice"):
        load_config(path)


def test_cross_key_rules():
    from img2img.tasks import build_task

    # a task's own rules are checked when it is built, before any work
    with pytest.raises(ConfigError, match="colorization maps L"):
        build_task(load_config(None, ["task=colorization", "model.in_channels=3"]))
    with pytest.raises(ConfigError, match="the srgan task needs srresnet"):
        build_task(load_config(None, ["task=srgan"]))
    with pytest.raises(ConfigError, match="eval.metric: psnr needs paired targets; the cyclegan task evaluates fid or kid or is: set eval.metric=fid"):
        build_task(load_config(None, ["task=cyclegan", "eval.every=10"]))
    with pytest.raises(ConfigError, match="step scheduler needs at least one milestone"):
        load_config(None, ["train.scheduler=step"])
    assert build_task(load_config(None, ["task=colorization"])).channels() == (1, 2)
    with pytest.raises(ConfigError, match="train.decay_start: 40 is after train.max_steps"):
        load_config(None, ["train.decay_start=40", "train.max_steps=4"])
    # decay_start only matters to the linear schedule
    assert load_config(None, ["train.decay_start=40", "train.max_steps=4", "train.scheduler=constant"])


# --------------------------------------------------------------------------- JSON schema


@pytest.fixture(scope="module")
def cli_schema():
    """``img2img config schema`` in a fresh process, with this file as a plugin."""
    env = {**os.environ, "IMG2IMG_PLUGINS": "tests.test_config",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-m", "img2img", "config", "schema"],
                         capture_output=True, text=True, timeout=180, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr
    schema = json.loads(out.stdout)  # stdout holds the JSON document only
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


def schema_errors(schema, data):
    return [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(data)]


def test_schema_command_names_every_task(cli_schema):
    # the built-in tasks, then the registered ones (here: this file's, as a plugin)
    assert cli_schema["properties"]["task"]["enum"] == [*BUILTIN, "glow_schema"]
    assert {"pix2pix", "cyclegan", "srgan", "colorization", "glow_schema"} <= set(task_names())
    assert cli_schema["required"] == ["task"] and cli_schema["additionalProperties"] is False


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_recipe_validates_against_the_schema(cli_schema, recipe):
    assert schema_errors(cli_schema, read_yaml(recipe)) == []


def _set(data, dotted, value):
    data = copy.deepcopy(data)
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return data


# (dotted key, value): each rejected by the loader and by the schema alike
LOADER_REJECTS = [
    ("ouput_dir", "runs/x"),
    ("train.batchsize", 4),
    ("model.generator.nfg", 8),
    ("log.wandb", "maybe"),
    ("device", "tpu"),
    ("data.scale", 5),
    ("train.batch_size", 0),
    ("model.generator.ngf", 100_000),
    ("train.plateau_factor", 1.0),
    ("train.channels_last", "maybe"),
    ("train.lr_g", "fast"),
    ("train.max_steps", 1.5),
    ("model.generator.n_blocks", -1),
    ("train", 5),
]


@pytest.mark.parametrize("dotted, value", LOADER_REJECTS)
def test_schema_rejects_typos_and_bad_values_as_the_loader_does(cli_schema, dotted, value):
    data = _set(read_yaml(REPO / "configs/pix2pix/facades.yaml"), dotted, value)
    with pytest.raises(ConfigError):
        from_dict(data)
    assert schema_errors(cli_schema, data), f"the schema accepts {dotted}={value!r}"


def test_schema_checks_the_task_and_each_tasks_options(cli_schema):
    recipe = read_yaml(REPO / "configs/pix2pix/facades.yaml")
    glow = {**recipe, "task": "glow_schema"}
    assert schema_errors(cli_schema, {**glow, "task_options": {"strength": 0.2, "mode": "hard"}}) == []
    assert schema_errors(cli_schema, {**glow, "task_options": {"passes": None}}) == []
    for options in ({"strenght": 0.2}, {"mode": "medium"}, {"strength": 2.0}, {"passes": 0}):
        with pytest.raises(ConfigError):
            build_task(from_dict({**glow, "task_options": options}))
        assert schema_errors(cli_schema, {**glow, "task_options": options}), options
    # the built-in tasks take no options; an unknown or missing task is flagged
    assert schema_errors(cli_schema, {**recipe, "task_options": {"strength": 0.2}})
    assert schema_errors(cli_schema, {**recipe, "task": "pix2pixx"})
    assert schema_errors(cli_schema, {k: v for k, v in recipe.items() if k != "task"})


def test_schema_accepts_what_the_loader_accepts(cli_schema):
    data = {"task": "srgan", "output_dir": 7, "train": {"lr_g": "1e-4", "max_steps": 10.0},
            "model": {"generator": {"n_blocks": None}}, "loss": {"perceptual_layers": {"conv3_4": 1}},
            "data": {"lr_root": None, "root": 123}}
    assert from_dict(data).train.lr_g == 1e-4
    assert schema_errors(cli_schema, data) == []


def test_schema_mirrors_the_dataclasses():
    schema = config_schema({"pix2pix": None, "glow_schema": GlowOptions})
    defaults = Config().to_dict()
    for dotted in all_keys():
        node, default = schema, defaults
        for part in dotted.split("."):
            node, default = node["properties"][part], default[part]
        assert node.get("description"), f"{dotted} has no description (a #: comment above it)"
        if dotted != "task":
            assert node["default"] == default, dotted
    assert schema["properties"]["train"]["properties"]["batch_size"]["maximum"] == 4096
    assert schema["properties"]["train"]["properties"]["plateau_factor"]["exclusiveMaximum"] == 1.0
    assert schema["properties"]["data"]["properties"]["scale"]["enum"] == [1, 2, 3, 4]
    glow = schema["allOf"][1]
    assert glow["if"]["properties"]["task"] == {"const": "glow_schema"}
    options = glow["then"]["properties"]["task_options"]
    assert options["properties"]["strength"]["description"] == "How strong the glow is."
    assert options["properties"]["passes"]["type"] == ["integer", "null"]
    assert options["additionalProperties"] is False
    # without the task list (the config package knows no task): any name, any options
    assert "enum" not in config_schema()["properties"]["task"]
