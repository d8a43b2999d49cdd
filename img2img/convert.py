"""Import generator weights from the reference repositories' ``.pth`` files.

    from img2img.config import load_config
    from img2img.convert import export_reference_model
    config = load_config("configs/pix2pix/facades.yaml")     # the architecture of the .pth
    export_reference_model("latest_net_G.pth", config, "facades_model")
    t = img2img.load("facades_model")

CycleGAN: ``export_reference_model({"G_A": "latest_net_G_A.pth", "G_B":
"latest_net_G_B.pth"}, config, out)``. BasicSR MSRResNet: the ``.pth`` holds
``{"params": ..., "params_ema": ...}``; ``params_ema`` is taken when present (``key=``
picks another).

Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only,
nothing is unpickled that could run code.

**Key mapping.** After unwrapping (``params_ema``/``params``/``state_dict``) and removing
DataParallel's ``module.`` prefix:

1. If the keys are exactly our generator's (a state dict saved from img2img), they load
   as they are.
2. Otherwise tensors are paired **in forward order**. The reference networks register
   their layers in the order the forward pass runs them: pytorch-CycleGAN-and-pix2pix's
   ``UnetGenerator`` nests ``UnetSkipConnectionBlock`` s whose ``model`` is [down
   layers, inner block, up layers], so its keys (``model.model.0.weight``,
   ``model.model.1.model.1.weight``, ..., ``model.model.3.weight``) run outermost-down ...
   innermost ... outermost-up; ``ResnetGenerator`` is one ``Sequential`` (``model.1.weight``
   ... ``model.26.weight``); BasicSR's ``MSRResNet`` registers ``conv_first``, ``body.N.
   conv1/conv2``, ``upconv1``, ``upconv2``, ``conv_hr``, ``conv_last``. Our generators keep
   the same layers but not the same registration order (our U-Net keeps its encoder and
   decoder in two lists, the decoder outermost first), so our side is ordered by running
   the network once on a blank input and recording the order in which layers with
   weights are first called. Each pair must agree in kind (``weight``, ``bias``,
   ``running_mean``, ``running_var``) and shape, else a :class:`UserError` names both keys.
3. ``num_batches_tracked`` entries are ignored on both sides (only the training-mode
   momentum of BatchNorm reads them; the reference's own checkpoints from PyTorch < 0.4
   lack them). ``running_mean``/``running_var`` in a reference file whose network has no
   running statistics in ours (InstanceNorm saved by PyTorch < 0.4, which the reference
   code itself deletes on load) are dropped.

The config must describe the reference architecture: pix2pix ``unet_256`` with
``norm: batch``, CycleGAN ``resnet_9blocks`` with ``norm: instance``, SRResNet
``srresnet`` with the file's ``ngf``, ``n_blocks`` and ``data.scale``; ESRGAN ``rrdbnet``,
Real-ESRGAN ``srvgg_compact`` and ``span`` likewise (their original key names are ours, but
for SPAN's derived ``eval_conv`` entries, which are dropped; see :mod:`img2img.sr_weights`).

**Value range.** img2img feeds every generator images in [-1, 1], as the pix2pix/CycleGAN
reference does; BasicSR trains MSRResNet on [0, 1]. A BasicSR file (keys ``conv_first``
... ``conv_last``) therefore gets ``model.generator.value_range: unit`` (the network maps
its input to [0, 1] and its output back), recorded in the exported ``config.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from img2img import files, model_io
from img2img.errors import UserError
from img2img.nets.contract import size_contract
from img2img.sr_weights import from_original

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net_g")
SKIPPED = ("num_batches_tracked",)
RUNNING = ("running_mean", "running_var")


def load_reference_state(path: str | Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a reference ``.pth`` file (``torch.load(weights_only=True)``),
    unwrapped from BasicSR's ``params_ema``/``params`` (``key`` picks one) and without
    DataParallel's ``module.`` prefix."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        obj = files.read_weights_file(path)
    except ValueError as err:
        raise UserError(f"cannot read {path}: {err}") from None
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            found = list(obj) if isinstance(obj, dict) else type(obj).__name__
            raise UserError(f"{path}: no {key!r} entry (found {found})")
        obj = obj[key]
    else:
        while isinstance(obj, dict) and not _is_state(obj):
            inner = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                raise UserError(
                    f"{path}: not a state dict (top-level keys {list(obj)[:8]}); pass key= "
                    "to pick the entry that holds the weights"
                )
            obj = obj[inner]
    if not isinstance(obj, dict) or not _is_state(obj):
        raise UserError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    state = {}
    for name, value in obj.items():
        name = name[len("module.") :] if name.startswith("module.") else name
        state[name] = value
    return state


def _is_state(obj: dict) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def forward_order(net: nn.Module, in_channels: int, size: int) -> list[str]:
    """``net``'s state-dict keys, grouped by layer, in the order the forward pass first
    calls each layer (layers never called keep their place at the end)."""
    owner: dict[str, list[str]] = {}
    for key in net.state_dict():
        owner.setdefault(key.rsplit(".", 1)[0] if "." in key else "", []).append(key)
    called: list[str] = []
    hooks = []
    for name, module in net.named_modules():
        if name in owner:
            hooks.append(module.register_forward_pre_hook(
                lambda _m, _i, name=name: called.append(name) if name not in called else None
            ))
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, in_channels, size, size))
    finally:
        for hook in hooks:
            hook.remove()
        net.train(was_training)
    order = called + [name for name in owner if name not in called]
    return [key for name in order for key in owner[name]]


def map_reference_state(
    net: nn.Module, state: dict[str, torch.Tensor], where: str = "reference weights"
) -> dict[str, torch.Tensor]:
    """``state`` renamed to ``net``'s keys (see the module docstring for the rules)."""
    net.eval()
    ours = {k: v for k, v in net.state_dict().items() if _kind(k) not in SKIPPED}
    theirs = {k: v for k, v in state.items() if _kind(k) not in SKIPPED}
    if set(theirs) == set(ours):
        return dict(theirs)
    if not any(_kind(k) in RUNNING for k in ours):
        theirs = {k: v for k, v in theirs.items() if _kind(k) not in RUNNING}
    contract = size_contract(net)
    our_keys = [k for k in forward_order(net, contract.in_channels, contract.min_size) if k in ours]
    their_keys = list(theirs)
    if len(our_keys) != len(their_keys):
        raise UserError(
            f"{where}: {len(their_keys)} tensors do not fit the configured "
            f"{type(net).__name__} with {len(our_keys)}; check the config's generator name, "
            "ngf, norm, n_blocks/num_downs, dropout and scale"
        )
    mapped = {}
    for ours_key, theirs_key in zip(our_keys, their_keys):
        want, got = ours[ours_key], theirs[theirs_key]
        if _kind(ours_key) != _kind(theirs_key) or want.shape != got.shape:
            raise UserError(
                f"{where}: {theirs_key} {tuple(got.shape)} does not fit {ours_key} "
                f"{tuple(want.shape)} of the configured {type(net).__name__}; check the "
                "config's generator name, ngf, norm, n_blocks/num_downs and scale"
            )
        mapped[ours_key] = got
    return mapped


def _basicsr_unit_range(config: Any, state: dict[str, torch.Tensor]) -> bool:
    """BasicSR's MSRResNet (keys ``conv_first``/``conv_last``) is trained on [0, 1]
    images: its weights need the SRResNet's ``value_range: unit``."""
    return (
        config.model.generator.name == "srresnet"
        and config.model.generator.value_range == "signed"
        and "conv_first.weight" in state
        and "conv_last.weight" in state
    )


def _with_unit_range(config: Any) -> Any:
    import copy

    config = copy.deepcopy(config)
    config.model.generator.value_range = "unit"
    return config


def import_reference_weights(
    pth_path: str | Path, config: Any, *, name: str = "G", key: str | None = None
) -> nn.Module:
    """Our generator ``name`` of ``config``'s task with the weights of a reference ``.pth``
    (eval mode, on the CPU)."""
    from img2img.tasks import build_generators

    generators = build_generators(config)
    if name not in generators:
        raise UserError(
            f"the {config.task} task has generators {list(generators)}, not {name!r}"
        )
    state = load_reference_state(pth_path, key)
    if _basicsr_unit_range(config, state):
        config = _with_unit_range(config)
        generators = build_generators(config)
    net = generators[name]
    mapped = map_reference_state(net, from_original(net, state), str(pth_path))
    missing = {k: v for k, v in net.state_dict().items() if k not in mapped}
    model_io.load_state_dict_strict(net, {**missing, **mapped}, str(pth_path))
    return net.eval()


def export_reference_model(
    weights: str | Path | dict[str, str | Path],
    config: Any,
    out_dir: str | Path,
    *,
    key: str | None = None,
) -> Path:
    """Write an exported model directory (``config.json`` + ``model.safetensors``) from
    reference ``.pth`` weights: one path for single-generator tasks, or ``{"G_A": path,
    "G_B": path}`` for CycleGAN. Load it with :func:`img2img.load`."""
    from img2img.tasks import build_generators

    names = list(build_generators(config))
    if not isinstance(weights, dict):
        if len(names) != 1:
            raise UserError(
                f"the {config.task} task has generators {names}: pass a dict of one .pth "
                f"per generator, e.g. {{'G_A': 'latest_net_G_A.pth', 'G_B': 'latest_net_G_B.pth'}}"
            )
        weights = {names[0]: weights}
    if sorted(weights) != sorted(names):
        raise UserError(f"weights for {sorted(weights)} given; the {config.task} task has {names}")
    if len(names) == 1 and _basicsr_unit_range(config, load_reference_state(weights[names[0]], key)):
        config = _with_unit_range(config)  # saved with the model, so load() rebuilds it so
    generators = {
        name: import_reference_weights(weights[name], config, name=name, key=key) for name in names
    }
    return model_io.save_model(out_dir, config, generators)
