"""Export a trained generator: ONNX and TorchScript (each checked against PyTorch at once),
or an exported model directory (safetensors).

    img2img export runs/facades --format onnx --out facades.onnx [--opset 17]
    img2img export runs/h2z --format onnx --direction BtoA --out zebra2horse.onnx
    img2img export runs/sr --format torchscript --out sr.pt
    img2img export runs/sr --format safetensors --out sr_model/

**The exported graph is the network alone**, exactly as it runs inside img2img:

- input ``input``: float32 NCHW in [-1, 1]; output ``output``: float32 NCHW (U-Net and
  ResNet end in tanh, so [-1, 1]; SRResNet is linear, clamp it). Batch, height and width
  are dynamic.
- **Padding is the caller's job**: height and width must be multiples of the network's
  ``size_multiple`` (U-Net ``2**num_downs``, ResNet 4, SRResNet 1; stored in the ONNX
  metadata as ``size_multiple``, together with ``scale``, ``task``, the channels and
  ``min_size``, the smallest side the network runs on). Pad by reflection (as
  :func:`img2img.nets.contract.pad_to_multiple` does) and crop the output back
  (times ``scale``). Putting a data-dependent reflect pad into the graph would need
  shape arithmetic that the exporters trace into constants or guards, so it is left out.
- Pre/post-processing: ``x = 2 * rgb01 - 1`` before, ``rgb01 = (y + 1) / 2`` (clamped) after.
- **Colorization** exports the L -> ab network as it is: input N1HW, the Lab lightness
  normalised as ``L / 50 - 1``; output N2HW, ``a / 110`` and ``b / 110``. To colourise,
  convert the RGB image to Lab (D65), feed the normalised L, and recombine the
  *input's* L with the predicted ab before converting back to RGB (what
  :func:`img2img.data.color.rgb_to_lab_norm` / ``lab_norm_to_rgb`` do).

ONNX export uses PyTorch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``): it needs no extra package, works offline, and exports the U-Net's
transposed convolutions, the ResNet's reflection padding and the SRResNet's pixel shuffle
and bilinear upsampling with dynamic height and width. (The dynamo exporter needs
``onnxscript`` and explicit symbolic-shape constraints for the U-Net's multiples.) The
file is checked with ONNX Runtime's CPUExecutionProvider on random inputs at two sizes
and batch sizes against PyTorch, and only kept when the largest absolute difference is
below 1e-4. TorchScript uses ``torch.jit.trace`` and is checked the same way at a size
other than the traced one.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from img2img import model_io
from img2img.errors import UserError
from img2img.files import atomic_write, first_line
from img2img.nets.contract import size_contract
from img2img.outputs import make_folder, writable_parent

TOLERANCE = 1e-4
ONNX_INPUT, ONNX_OUTPUT = "input", "output"


def check_shapes(net: nn.Module) -> list[tuple[int, int, int, int]]:
    """Two input shapes (N, C, H, W) that differ in batch, height and width, valid for
    ``net``: multiples of its ``size_multiple``, at least 32 px and its minimum size."""
    contract = size_contract(net)
    m, cin = contract.multiple, contract.in_channels
    base = contract.padded(32)
    return [(2, cin, base, base + m), (1, cin, base + m, base)]


def _random_input(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=gen) * 2 - 1


def _metadata(task: Any, name: str, net: nn.Module) -> dict[str, str]:
    contract = size_contract(net)
    return {
        "img2img_task": task.name,
        "img2img_generator": name,
        "img2img_architecture": task.config.model.generator.name,
        "size_multiple": str(contract.multiple),
        "min_size": str(contract.min_size),
        "scale": str(contract.scale),
        "in_channels": str(contract.in_channels),
        "out_channels": str(contract.out_channels),
        "padding": "caller pads H and W to multiples of size_multiple (reflect) and crops "
        "the output back (x scale)",
        **task.export_notes(),
    }


@contextlib.contextmanager
def _quiet_exporters():
    """The deprecation notes of the TorchScript-based exporters and tracing are not the
    user's to act on; the check below is what tells whether the export is right."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _exporter_errors(opset: int):
    """The exporter's refusals (an opset it does not support, an operator it cannot
    express at that opset) as one UserError."""
    try:
        yield
    except (RuntimeError, ValueError) as err:
        raise UserError(f"ONNX export at opset {opset} failed: {first_line(err)} (--opset picks another)") from None


def export_onnx(
    net: nn.Module,
    path: str | Path,
    *,
    opset: int = 17,
    metadata: dict[str, str] | None = None,
    check: bool = True,
) -> list[float]:
    """Write ``net`` (eval mode) as ONNX with dynamic batch, height and width; when
    ``check``, run it in ONNX Runtime (CPU) at two shapes and compare with PyTorch.

    Returns the largest absolute differences, one per checked shape. The file is written
    only when every difference is below :data:`TOLERANCE` (else a :class:`UserError`).
    """
    try:
        import onnx
    except ImportError:
        raise UserError("ONNX export needs onnx: pip install 'img2img[export]'") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.cpu().eval()
    shapes = check_shapes(net)
    example = _random_input(shapes[0], seed=0)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with atomic_write(path) as tmp:
        with _quiet_exporters(), torch.no_grad(), _exporter_errors(opset):
            torch.onnx.export(
                net,
                (example,),
                str(tmp),
                input_names=[ONNX_INPUT],
                output_names=[ONNX_OUTPUT],
                dynamic_axes={ONNX_INPUT: dynamic, ONNX_OUTPUT: {0: "batch", 2: "out_height",
                                                                3: "out_width"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model)
        for key, value in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(tmp))
        diffs = check_onnx(net, tmp, shapes) if check else []
    return diffs


def check_onnx(net: nn.Module, path: str | Path, shapes: list[tuple[int, ...]]) -> list[float]:
    """Largest |ONNX Runtime - PyTorch| per input shape; a UserError above TOLERANCE."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(
            "checking the ONNX export needs onnxruntime: pip install 'img2img[export]'"
        ) from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = []
    for seed, shape in enumerate(shapes, start=1):
        x = _random_input(shape, seed)
        with torch.inference_mode():
            expected = net(x).numpy()
        got = session.run([ONNX_OUTPUT], {ONNX_INPUT: x.numpy()})[0]
        diffs.append(_compare(expected, got, shape, "ONNX Runtime"))
    return diffs


def _compare(expected: np.ndarray, got: np.ndarray, shape: tuple[int, ...], what: str) -> float:
    if got.shape != expected.shape:
        raise UserError(
            f"{what} check failed: output shape {got.shape} for input {shape}, "
            f"PyTorch gives {expected.shape}"
        )
    diff = float(np.abs(got.astype(np.float64) - expected).max())
    if not diff < TOLERANCE:
        raise UserError(
            f"{what} check failed: max |{what} - PyTorch| = {diff:.3g} at input {shape} "
            f"(tolerance {TOLERANCE}); the export was not written"
        )
    return diff


def export_torchscript(net: nn.Module, path: str | Path, *, check: bool = True) -> list[float]:
    """Trace ``net`` (eval mode) with ``torch.jit.trace``, save it, load it back and
    compare with PyTorch at an input shape other than the traced one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.cpu().eval()
    shapes = check_shapes(net)
    with atomic_write(path) as tmp:
        with _quiet_exporters(), torch.no_grad():
            traced = torch.jit.trace(net, _random_input(shapes[0], seed=0), check_trace=False)
            torch.jit.save(traced, str(tmp))
        diffs = []
        if check:
            with _quiet_exporters():
                loaded = torch.jit.load(str(tmp), map_location="cpu")
            for seed, shape in enumerate(shapes, start=1):
                x = _random_input(shape, seed)
                with torch.inference_mode():
                    expected, got = net(x).numpy(), loaded(x).numpy()
                diffs.append(_compare(expected, got, shape, "TorchScript"))
    return diffs


def _file_target(out: str, default_name: str) -> Path:
    path = Path(out).expanduser()
    if path.is_dir() or out.endswith(("/", "\\")):
        return path / default_name
    return path


def _shapes_text(shapes: list[tuple[int, ...]], diffs: list[float]) -> str:
    return ", ".join(f"{d:.2e} at {'x'.join(map(str, s))}" for s, d in zip(shapes, diffs))


def cli_export(args: Any) -> int:
    """``img2img export MODEL --format onnx|safetensors|torchscript --out PATH``."""
    from img2img.inference.loading import find_model
    from img2img.tasks import build_task

    if not args.out.strip():
        raise UserError("--out is empty; give the output file (or folder for safetensors)")
    directory = find_model(args.model)
    config, generators = model_io.load_model(directory, "cpu")
    task = build_task(config)
    name = task.generator_for(args.direction)
    net = generators[name]
    if args.format == "safetensors":
        out = Path(args.out).expanduser()
        if out.suffix.lower() == ".safetensors":
            raise UserError(
                f"--out {out}: --format safetensors writes a model folder (config.json + "
                f"model.safetensors, what img2img.load reads); give a folder name such as "
                f"{out.with_suffix('')}")
        try:
            make_folder(out.parent, given=out)
            out = model_io.save_model(out, config, generators, hint="choose another --out, or remove it yourself")
        except OSError as err:
            raise UserError(f"--out {out}: cannot write the model ({err.strerror or err})") from None
        print(f"wrote {out} ({', '.join(generators)}; load it with img2img.load)")
        return 0
    stem = f"{config.task}_{name}"
    shapes = check_shapes(net)
    range_text = "input NCHW in " + task.export_notes()["input_range"]
    try:
        if args.format == "onnx":
            path = writable_parent(_file_target(args.out, f"{stem}.onnx"))
            diffs = export_onnx(net, path, opset=args.opset, metadata=_metadata(task, name, net))
            print(
                f"wrote {path} (opset {args.opset}; {range_text}; dynamic batch, height and "
                f"width; height and width must be multiples of {size_contract(net).multiple}, "
                "padding is the caller's)"
            )
            print(f"ONNX Runtime check: max |onnx - torch| = {_shapes_text(shapes, diffs)}")
            return 0
        path = writable_parent(_file_target(args.out, f"{stem}.pt"))
        diffs = export_torchscript(net, path)
    except OSError as err:  # out of disk, permissions
        raise UserError(f"--out {args.out}: cannot write the export ({err.strerror or err})") from None
    print(f"wrote {path} (torch.jit.trace; {range_text})")
    print(f"TorchScript check: max |traced - torch| = {_shapes_text(shapes, diffs)}")
    return 0
