"""Super-resolution weights in the original code's key layout, both ways.

``img2img export MODEL --format sr-weights --out model.safetensors`` (or ``model.pth``)
writes the generator's weights with the key names of the code it reproduces, so the file
loads where SR models are loaded: spandrel (and through it chaiNNer and ComfyUI), BasicSR
and Real-ESRGAN's scripts. Those networks take and give RGB in [0, 1]; img2img's
SR networks run their layers on [0, 1] too (they only map img2img's [-1, 1] images in
and out), so the file gives the same output there as img2img does here.

=================  ===================================  ===================================
generator          original layout (loads in)           what changes
=================  ===================================  ===================================
``rrdbnet``        BasicSR/Real-ESRGAN ``RRDBNet``      nothing (same module names)
                   (spandrel: ESRGAN; x2/x1 as
                   Real-ESRGAN's pixel-unshuffle form)
``srvgg_compact``  Real-ESRGAN ``SRVGGNetCompact``      nothing
                   (spandrel: Compact)
``span``           SPAN's reference code (spandrel:     the merged ``eval_conv`` of every
                   SPAN)                                Conv3XC is added (dropped on import)
``srresnet``       BasicSR ``MSRResNet`` (not in        ``upsample.0``/``upsample.3`` are
                   spandrel)                            ``upconv1``/``upconv2``; needs
                                                        ``value_range: unit``
``unet_sn`` (D)    Real-ESRGAN ``UNetDiscriminatorSN``  spectral norm's parametrization keys
                                                        are the older hook's ``weight_orig``,
                                                        ``weight_u``, ``weight_v``
=================  ===================================  ===================================

A ``.safetensors`` file holds the plain state dict (with a few metadata strings); a ``.pth``
file holds ``{"params": state dict}``, as BasicSR saves and loads it (spandrel unwraps it).
:func:`from_original` is the other way, used when importing original weights
(:mod:`img2img.convert`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from img2img.errors import UserError
from img2img.nets import SPAN, RRDBNet, SRResNet, SRVGGNetCompact, UNetDiscriminatorSN
from img2img.nets.span import Conv3XC

#: The file types :func:`write_sr_weights` writes.
SUFFIXES = (".safetensors", ".pth")
# Spectral norm's keys: torch's parametrization (ours) and the older hook (the originals').
SN_KEYS = {
    ".parametrizations.weight.original": ".weight_orig",
    ".parametrizations.weight.0._u": ".weight_u",
    ".parametrizations.weight.0._v": ".weight_v",
}
#: Each network's original architecture, and the tools that load the file.
ARCHITECTURES = {
    RRDBNet: ("ESRGAN RRDBNet (BasicSR, Real-ESRGAN)", "spandrel, chaiNNer, ComfyUI, BasicSR"),
    SRVGGNetCompact: ("Real-ESRGAN SRVGGNetCompact", "spandrel, chaiNNer, ComfyUI, Real-ESRGAN"),
    SPAN: ("SPAN", "spandrel, chaiNNer, ComfyUI, SPAN's code"),
    SRResNet: ("BasicSR MSRResNet", "BasicSR"),
    UNetDiscriminatorSN: ("Real-ESRGAN UNetDiscriminatorSN", "Real-ESRGAN"),
}


def _srresnet_names(net: SRResNet) -> dict[str, str]:
    """Our SRResNet's upsampling conv prefixes -> BasicSR's."""
    names = {"upsample.0.": "upconv1."}
    if len(net.upsample) > 3:  # x4: two conv -> shuffle -> LeakyReLU stages
        names["upsample.3."] = "upconv2."
    return names


def _rename(state: dict[str, torch.Tensor], names: dict[str, str], suffixes: bool = False) -> dict[str, torch.Tensor]:
    """``state`` with each prefix (or, with ``suffixes``, ending) in ``names`` replaced."""
    out = {}
    for key, value in state.items():
        for old, new in names.items():
            if suffixes and key.endswith(old):
                key = key[: -len(old)] + new
                break
            if not suffixes and key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def check_exportable(net: nn.Module) -> None:
    """A UserError unless ``net`` has an original layout that gives the same output."""
    if type(net) not in ARCHITECTURES:
        raise UserError(
            f"--format sr-weights: a {type(net).__name__} has no original weights layout; it "
            "applies to rrdbnet, srvgg_compact, span and srresnet generators"
        )
    if isinstance(net, SRResNet) and not net.unit_range:
        raise UserError(
            "--format sr-weights: this srresnet runs its layers on [-1, 1] images "
            "(model.generator.value_range: signed), BasicSR's MSRResNet on [0, 1], so its "
            "weights would give other outputs there; train with value_range: unit to export it"
        )


def to_original(net: nn.Module) -> dict[str, torch.Tensor]:
    """``net``'s weights under the original code's key names (see the module docstring)."""
    check_exportable(net)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if isinstance(net, SRResNet):
        return _rename(state, _srresnet_names(net))
    if isinstance(net, UNetDiscriminatorSN):
        return _rename(state, SN_KEYS, suffixes=True)
    if isinstance(net, SPAN):
        with torch.no_grad():
            for name, module in net.named_modules():
                if isinstance(module, Conv3XC):
                    weight, bias = module.merged()
                    state[f"{name}.eval_conv.weight"] = weight.contiguous()
                    state[f"{name}.eval_conv.bias"] = bias.contiguous()
    return state


def from_original(net: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (original key names) under ``net``'s key names; a state dict that already
    has our names comes back as it is. Networks without an original layout get ``state``
    unchanged."""
    if isinstance(net, SRResNet):
        return _rename(state, {v: k for k, v in _srresnet_names(net).items()})
    if isinstance(net, UNetDiscriminatorSN):
        return _rename(state, {v: k for k, v in SN_KEYS.items()}, suffixes=True)
    if isinstance(net, SPAN):
        if "no_norm" in state:
            raise UserError(
                "these SPAN weights were trained without the input's mean-colour "
                "normalisation (a 'no_norm' entry); img2img's span always normalises"
            )
        return {k: v for k, v in state.items() if ".eval_conv." not in k}
    return dict(state)


def _metadata(net: nn.Module) -> dict[str, str]:
    return {
        "architecture": ARCHITECTURES[type(net)][0],
        "scale": str(getattr(net, "scale", 1)),
        "in_channels": str(getattr(net, "in_channels", 3)),
        "out_channels": str(getattr(net, "out_channels", 3)),
        "value_range": "images in and out in [0, 1] (the original code's convention)",
        "written_by": "img2img export --format sr-weights",
    }


def write_sr_weights(net: nn.Module, path: str | Path) -> Path:
    """Write ``net``'s weights in the original layout to ``path`` (``.safetensors`` or
    ``.pth``), atomically."""
    from img2img.files import atomic_write, save_tensors

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(
            f"--out {path}: --format sr-weights writes a .safetensors file (or .pth for "
            "BasicSR's scripts); give a name ending in one of them"
        )
    state = to_original(net)
    with atomic_write(path) as tmp:
        if suffix == ".safetensors":
            save_tensors({k: v.contiguous() for k, v in state.items()}, tmp, metadata=_metadata(net))
        else:
            torch.save({"params": state}, tmp)
    return path


def cli_write_sr_weights(net: nn.Module, out: str) -> int:
    """The ``--format sr-weights`` branch of ``img2img export``."""
    from img2img.outputs import writable_parent

    path = Path(out).expanduser()
    if path.is_dir() or out.endswith(("/", "\\")):
        raise UserError(f"--out {out}: give a file name ending in .safetensors or .pth")
    check_exportable(net)
    try:
        path = write_sr_weights(net, writable_parent(path))
    except OSError as err:
        raise UserError(f"--out {out}: cannot write the weights ({err.strerror or err})") from None
    architecture, tools = ARCHITECTURES[type(net)]
    print(
        f"wrote {path} ({architecture} key layout; RGB in [0, 1] in and out, "
        f"x{getattr(net, 'scale', 1)}; loads in {tools})"
    )
    return 0
