"""Export a trained generator: ONNX and TorchScript (each checked at once), an exported
model directory (safetensors), or a Hub-ready model folder.

    img2img export runs/facades --format onnx --out facades.onnx [--opset 17] [--half]
    img2img export runs/h2z --format onnx --direction BtoA --out zebra2horse.onnx
    img2img export RealESRGAN_x4plus.pth --format onnx --out realesrgan.onnx
    img2img export runs/facades --format onnx-raw --out facades_net.onnx
    img2img export runs/sr --format torchscript --out sr.pt
    img2img export runs/sr --format safetensors --out sr_model/
    img2img export runs/sr --format hub --out sr_hub/          (img2img.hub: model card)
    img2img export runs/esrgan --format sr-weights --out esrgan_x4.safetensors  (img2img.sr_weights)

**``--format onnx`` is the whole model** (:mod:`img2img.onnx_graph`): RGB or grey float
NCHW in [0, 1] of any batch and any size from 1x1 in, RGB in [0, 1] (times the scale) out;
the task's colour conversion, the padding to the network's multiple and the crop back
are inside the graph. Before it is kept, its output is compared in ONNX Runtime with
``img2img predict`` (before 8-bit quantisation) at 1x1, 7x13, 67x45 and 301x197, a batch
of two and a grey input: within 1e-4, or 1e-2 with ``--half`` (the network in float16,
inputs, outputs and colour conversions float32).

**``--format onnx-raw`` is the network alone**, exactly as it runs inside img2img:

- input ``input``: float32 NCHW in [-1, 1]; output ``output``: float32 NCHW (U-Net and
  ResNet end in tanh, so [-1, 1]; SRResNet is linear, clamp it). Batch, height and width
  are dynamic.
- **Padding is the caller's job**: height and width must be multiples of the network's
  ``size_multiple`` (U-Net ``2**num_downs``, ResNet 4, SRResNet 1; stored in the ONNX
  metadata as ``size_multiple``, together with ``scale``, ``task``, the channels and
  ``min_size``, the smallest side the network runs on). Pad by reflection (as
  :func:`img2img.nets.contract.pad_to_multiple` does) and crop the output back
  (times ``scale``); ``--format onnx`` does all of this inside the graph.
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
raw file is checked with ONNX Runtime's CPUExecutionProvider on random inputs at two sizes
and batch sizes against PyTorch, and only kept when the largest absolute difference is
below 1e-4 (1e-2 with ``--half``). TorchScript uses ``torch.jit.trace`` and is checked the same way at a size
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

TOLERANCE, HALF_TOLERANCE = 1e-4, 1e-2
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


def _architecture(task: Any) -> str:
    config = task.config
    return config.architecture if hasattr(config, "architecture") else config.model.generator.name


def _metadata(task: Any, name: str, net: nn.Module) -> dict[str, str]:
    contract = size_contract(net)
    return {
        "img2img_task": task.name,
        "img2img_generator": name,
        "img2img_architecture": _architecture(task),
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


class HalfNetwork(nn.Module):
    """A copy of ``net`` in float16 that takes and gives float32 (what ``--half`` exports)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        import copy

        self.net = copy.deepcopy(net).cpu().eval().half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.half()).float()


def _write_onnx(module: nn.Module, example: torch.Tensor, tmp: Path, opset: int, in_axes: dict[int, str],
                metadata: dict[str, str] | None, extra: dict[str, torch.Tensor] | None = None) -> None:
    """Trace ``module`` into the ONNX file ``tmp`` (named, dynamic axes; metadata added);
    ``extra``: example values of more named inputs (1-d: dynamic batch; 4-d: dynamic
    batch, height and width)."""
    try:
        import onnx
    except ImportError:
        raise UserError("ONNX export needs onnx: pip install 'img2img[export]'") from None
    with _quiet_exporters(), torch.no_grad(), _exporter_errors(opset):
        extra = extra or {}
        axes = {name: ({0: "batch"} if t.ndim < 4 else {0: "batch", 2: "height", 3: "width"})
                for name, t in extra.items()}
        torch.onnx.export(
            module, (example, *extra.values()), str(tmp), input_names=[ONNX_INPUT, *extra],
            output_names=[ONNX_OUTPUT],
            dynamic_axes={ONNX_INPUT: in_axes, **axes, ONNX_OUTPUT: {0: "batch", 2: "out_height", 3: "out_width"}},
            opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    model = onnx.load(str(tmp))
    onnx.checker.check_model(model)
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(tmp))


def export_onnx(
    net: nn.Module,
    path: str | Path,
    *,
    opset: int = 17,
    metadata: dict[str, str] | None = None,
    check: bool = True,
    half: bool = False,
) -> list[float]:
    """Write ``net`` (eval mode; in float16 with ``half``, float32 in and out) as ONNX with
    dynamic batch, height and width; when ``check``, run it in ONNX Runtime (CPU) at two
    shapes and compare with PyTorch (the float32 network).

    Returns the largest absolute differences, one per checked shape. The file is written
    only when every difference is below :data:`TOLERANCE` (:data:`HALF_TOLERANCE` with
    ``half``; else a :class:`UserError`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.cpu().eval()
    shapes = check_shapes(net)
    module = HalfNetwork(net) if half else net
    with atomic_write(path) as tmp:
        _write_onnx(module, _random_input(shapes[0], seed=0), tmp, opset,
                    {0: "batch", 2: "height", 3: "width"}, metadata)
        diffs = check_onnx(net, tmp, shapes, HALF_TOLERANCE if half else TOLERANCE) if check else []
    return diffs


def export_self_contained(translator: Any, path: str | Path, *, opset: int = 17, half: bool = False,
                          metadata: dict[str, str] | None = None) -> list[tuple[tuple[int, ...], float]]:
    """Write the self-contained model of a (CPU, untiled) Translator as ONNX (see
    :mod:`img2img.onnx_graph`) and check it in ONNX Runtime against the Translator on
    odd sizes; the file is kept only within :data:`TOLERANCE` (:data:`HALF_TOLERANCE`
    with ``half``). Returns (input shape, largest difference) per check."""
    from img2img.onnx_graph import SelfContained, parity_check

    path = Path(path)
    wrapper = SelfContained(translator.net, translator.task, half=half).eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(1, 3, 37, 29, generator=gen)
    extra = translator.task.example_inputs(1, 37, 29, gen) if wrapper.extra_names else None
    with atomic_write(path) as tmp:
        _write_onnx(wrapper, example, tmp, opset, {0: "batch", 1: "channels", 2: "height", 3: "width"},
                    metadata, extra)
        try:
            return parity_check(_session(tmp), translator, HALF_TOLERANCE if half else TOLERANCE,
                                translator.task if wrapper.extra_names else None)
        except ValueError as err:
            raise UserError(f"ONNX Runtime check failed: {err}; the export was not written") from None


def _session(path: Path) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("checking the ONNX export needs onnxruntime: pip install 'img2img[export]'") from None
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def check_onnx(net: nn.Module, path: str | Path, shapes: list[tuple[int, ...]],
               tolerance: float = TOLERANCE) -> list[float]:
    """Largest |ONNX Runtime - PyTorch| per input shape; a UserError above ``tolerance``."""
    session = _session(Path(path))
    diffs = []
    for seed, shape in enumerate(shapes, start=1):
        x = _random_input(shape, seed)
        with torch.inference_mode():
            expected = net(x).numpy()
        got = session.run([ONNX_OUTPUT], {ONNX_INPUT: x.numpy()})[0]
        diffs.append(_compare(expected, got, shape, "ONNX Runtime", tolerance))
    return diffs


def _compare(expected: np.ndarray, got: np.ndarray, shape: tuple[int, ...], what: str,
             tolerance: float = TOLERANCE) -> float:
    if got.shape != expected.shape:
        raise UserError(
            f"{what} check failed: output shape {got.shape} for input {shape}, "
            f"PyTorch gives {expected.shape}"
        )
    diff = float(np.abs(got.astype(np.float64) - expected).max())
    if not diff < tolerance:
        raise UserError(
            f"{what} check failed: max |{what} - PyTorch| = {diff:.3g} at input {shape} "
            f"(tolerance {tolerance}); the export was not written"
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


def _cli_safetensors(args: Any, config: Any, generators: dict[str, nn.Module]) -> int:
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


def _cli_onnx(args: Any, translator: Any, name: str, stem: str) -> int:
    net, task = translator.net, translator.task
    path = writable_parent(_file_target(args.out, f"{stem}.onnx"))
    meta = _metadata(task, name, net)
    precision = "float16 network, float32 in and out" if args.half else "float32"
    if args.format == "onnx-raw":
        shapes = check_shapes(net)
        diffs = export_onnx(net, path, opset=args.opset, metadata=meta, half=args.half)
        print(f"wrote {path} (opset {args.opset}, {precision}; the network alone: input NCHW in "
              f"{task.export_notes()['input_range']}; height and width multiples of "
              f"{size_contract(net).multiple}, padding is the caller's)")
        print(f"ONNX Runtime check: max |onnx - torch| = {_shapes_text(shapes, diffs)}")
        return 0
    meta.update(input="float NCHW in [0, 1], RGB or grey, any batch and size",
                output=f"float N3HW RGB in [0, 1], {translator.scale}x the input size",
                padding="inside the graph", input_range="[0, 1]")
    extra = getattr(task, "inference_inputs", {}) or {}
    if extra:  # the task's inputs beyond the image, each a named graph input
        meta["extra_inputs"] = ", ".join(f"{n} ({'int64 [N]' if k == 'global' else 'float [N,1,H,W]'})"
                                         for n, k in extra.items())
    found = export_self_contained(translator, path, opset=args.opset, half=args.half, metadata=meta)
    print(f"wrote {path} (opset {args.opset}, {precision}; input: RGB or grey float NCHW in [0, 1], any "
          f"batch and size{''.join(f', and {e}' for e in meta.get('extra_inputs', '').split(', ') if e)}; "
          f"output: RGB in [0, 1], x{translator.scale}; colour conversion and padding inside)")
    print("ONNX Runtime check against img2img predict: max |onnx - predict| = "
          + _shapes_text([s for s, _ in found], [d for _, d in found]))
    return 0


def cli_export(args: Any) -> int:
    """``img2img export MODEL --format onnx|onnx-raw|safetensors|torchscript|hub --out PATH``."""
    from img2img.inference import Translator
    from img2img.inference.loading import read_model

    if not args.out.strip():
        raise UserError("--out is empty; give the output file (or folder for safetensors and hub)")
    if getattr(args, "half", False) and args.format not in ("onnx", "onnx-raw"):
        raise UserError(f"--half applies to --format onnx and onnx-raw, not {args.format}")
    args.half = getattr(args, "half", False)
    config, generators, _ = read_model(args.model, "cpu")
    translator = Translator(config, generators, device="cpu", direction=args.direction)
    task = translator.task
    name = task.generator_for(args.direction)
    net = generators[name]
    if args.format == "sr-weights":
        from img2img.sr_weights import cli_write_sr_weights

        return cli_write_sr_weights(net, args.out)
    if translator.external and args.format in ("safetensors", "hub"):
        raise UserError(f"--format {args.format} writes img2img model folders; {args.model} is a third-party "
                        "weights file (onnx, onnx-raw and torchscript export it)")
    if args.format == "safetensors":
        return _cli_safetensors(args, config, generators)
    if args.format == "hub":
        from img2img.hub import cli_hub

        return cli_hub(args, config, generators, translator)
    stem = Path(translator.external.source).stem if translator.external else f"{config.task}_{name}"
    try:
        if args.format in ("onnx", "onnx-raw"):
            return _cli_onnx(args, translator, name, stem)
        shapes = check_shapes(net)
        path = writable_parent(_file_target(args.out, f"{stem}.pt"))
        diffs = export_torchscript(net, path)
    except OSError as err:  # out of disk, permissions
        raise UserError(f"--out {args.out}: cannot write the export ({err.strerror or err})") from None
    print(f"wrote {path} (torch.jit.trace; input NCHW in {task.export_notes()['input_range']})")
    print(f"TorchScript check: max |traced - torch| = {_shapes_text(shapes, diffs)}")
    return 0
