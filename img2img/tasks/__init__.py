"""Tasks: what is learned. One module per method, and the registry that finds them.

A task (:class:`~img2img.tasks.base.Task`) owns everything about its method: networks,
data, how images go in and out of the network, losses, update order, visuals, evaluation,
its demo. The engine, evaluation, inference, export, the data check and the demo ask it
and never name it (see :mod:`img2img.tasks.base` for the hooks and their defaults).

**The registry.** ``config.task`` names a task. The built-in ones are listed here by
module path and imported only when used, so one broken task module cannot break the
others and ``img2img --help`` imports no torch. A new method registers itself::

    from img2img.tasks import Task, register

    @register
    class DenoiseTask(Task):
        name = "denoise"
        ...

For the command line (a fresh process), name the module that registers it in the
environment: ``IMG2IMG_PLUGINS=mypackage.tasks img2img train ...`` (comma-separated
module names, imported on the first registry lookup). Nothing is imported because a
config or model file says so: a model folder naming an unknown task is an error that says
to load its plugin.
"""

from __future__ import annotations

import difflib
import importlib
import os
from typing import TYPE_CHECKING

from img2img.errors import ConfigError, UserError

if TYPE_CHECKING:
    from torch import nn

    from img2img.config import Config
    from img2img.tasks.base import Task

#: The built-in tasks: name -> "module:Class".
BUILTIN = {
    "pix2pix": "img2img.tasks.pix2pix:Pix2PixTask",
    "cyclegan": "img2img.tasks.cyclegan:CycleGANTask",
    "cut": "img2img.tasks.cut:CUTTask",
    "srgan": "img2img.tasks.srgan:SRGANTask",
    "esrgan": "img2img.tasks.esrgan:ESRGANTask",
    "realesrgan": "img2img.tasks.realesrgan:RealESRGANTask",
    "colorization": "img2img.tasks.colorization:ColorizationTask",
    "stargan": "img2img.tasks.stargan:StarGANTask",
    "inpaint": "img2img.tasks.inpaint:InpaintTask",
}
#: The environment variable naming plugin modules that register tasks.
PLUGINS_ENV = "IMG2IMG_PLUGINS"

_registered: dict[str, type[Task]] = {}
_plugins_loaded: set[str] = set()


def register(cls: type[Task]) -> type[Task]:
    """Register a :class:`Task` subclass under its ``name`` (a decorator; returns the
    class). Registering a name twice with another class is an error; built-in names
    cannot be taken."""
    from img2img.tasks.base import Task

    if not isinstance(cls, type) or not issubclass(cls, Task):
        raise TypeError(f"register() takes a Task subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError(f"{cls.__name__}.name must be an identifier-like string, got {name!r}")
    if name in BUILTIN and f"{cls.__module__}:{cls.__qualname__}" != BUILTIN[name]:
        raise ValueError(f"task name {name!r} is taken by a built-in task")
    other = _registered.get(name)
    if other is not None and (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"task name {name!r} is already registered by {other.__module__}.{other.__qualname__}")
    _registered[name] = cls
    return cls


def _load_plugins() -> None:
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        if module in _plugins_loaded:
            continue
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise UserError(f"{PLUGINS_ENV}: cannot import the plugin module {module!r} ({err})") from None
        _plugins_loaded.add(module)


def task_names() -> list[str]:
    """Every task name a config may use: the built-in ones, then the registered ones."""
    _load_plugins()
    return [*BUILTIN, *(n for n in _registered if n not in BUILTIN)]


def task_class(name: str) -> type[Task]:
    """The class of task ``name``; a ConfigError naming the known ones otherwise."""
    if name in BUILTIN:
        if name not in _registered:
            module, _, cls_name = BUILTIN[name].partition(":")
            _registered[name] = getattr(importlib.import_module(module), cls_name)
        return _registered[name]
    _load_plugins()
    if name in _registered:
        return _registered[name]
    known = task_names()
    if not str(name).strip():
        raise ConfigError(f"task is not set: name the method with task=NAME (known: {', '.join(known)})")
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"task: unknown task {name!r}{hint} (known: {', '.join(known)}; a task from a plugin "
        f"needs its module in {PLUGINS_ENV})"
    )


def build_task(config: Config) -> Task:
    """The task object of ``config.task``, its options read and its config checked
    (a ConfigError names the key before any work is done)."""
    return task_class(config.task)(config)


def build_generators(config: Config) -> dict[str, nn.Module]:
    """The generators of a config's task (what is exported and predicts), initialised."""
    return build_task(config).build_generators()


def build_networks(config: Config) -> dict[str, nn.Module]:
    """All named networks of a config's task: generators first, then discriminators."""
    task = build_task(config)
    return {**task.build_generators(), **task.build_discriminators()}


def __getattr__(name: str):
    # ``from img2img.tasks import Task`` without importing torch at package import.
    if name == "Task":
        from img2img.tasks.base import Task

        return Task
    raise AttributeError(f"module 'img2img.tasks' has no attribute {name!r}")
