"""The config loader: YAML, dotted overrides, and every user error."""

from __future__ import annotations

import pytest

from img2img.config import Config, all_keys, load_config, parse_override, save_config
from img2img.errors import ConfigError


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
        ("data.scale=5", "data.scale: invalid value 5; allowed: 2|3|4"),
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
    with pytest.raises(ConfigError, match="eval.metric: psnr needs paired targets; the cyclegan task evaluates fid or kid"):
        build_task(load_config(None, ["task=cyclegan", "eval.every=10"]))
    with pytest.raises(ConfigError, match="step scheduler needs at least one milestone"):
        load_config(None, ["train.scheduler=step"])
    assert build_task(load_config(None, ["task=colorization"])).channels() == (1, 2)
    with pytest.raises(ConfigError, match="train.decay_start: 40 is after train.max_steps"):
        load_config(None, ["train.decay_start=40", "train.max_steps=4"])
    # decay_start only matters to the linear schedule
    assert load_config(None, ["train.decay_start=40", "train.max_steps=4", "train.scheduler=constant"])
