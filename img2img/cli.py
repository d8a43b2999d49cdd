"""The ``img2img`` command line.

Every subcommand names its implementation as ``"module:function"`` and imports it only
when it runs, so ``img2img --help`` and ``img2img SUB --help`` never import torch.
A :class:`~img2img.errors.UserError` ends the command with one message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from img2img import __version__
from img2img.errors import UserError

DIRECTION_HELP = "which generator translates, for a model with one per direction (default: AtoB)"
EPILOG = "Run 'img2img SUBCOMMAND --help' for the options of one subcommand."
RECIPE_HELP = ("a YAML recipe: a path, or the name of a shipped one such as pix2pix/facades "
               "('img2img recipes' lists them)")
MODEL_HELP = (
    "run directory, exported model directory or checkpoint directory; a model on the "
    "Hugging Face Hub only with the hf:// prefix: hf://owner/name, or hf://owner/name@REV "
    "pinned to a branch, tag or commit (a local path that does not exist is an error, never "
    "a download)"
)


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides such as train.batch_size=4 log.wandb=offline",
    )


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML recipe",
        description="Train from a YAML recipe; KEY=VALUE arguments override its keys. "
        "On several GPUs: accelerate launch -m img2img train CONFIG (or torchrun).",
    )
    p.add_argument("config", help=RECIPE_HELP)
    _add_overrides(p)
    p.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="continue from the newest checkpoint of output_dir (auto), of a run directory, "
        "or from a checkpoint directory",
    )
    p.set_defaults(handler="img2img.engine:cli_train")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="PSNR/SSIM (and FID/KID) of a trained model against a baseline",
        description="Evaluate a run directory or exported model on a folder of images.",
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--data", required=True, help="folder of evaluation images")
    p.add_argument("--lr-dir", help="SR only: folder of matching low-resolution inputs")
    p.add_argument("--crop-border", type=int, help="pixels cut from each edge (SR: the scale)")
    p.add_argument("--per-image", action="store_true", help="print a row per image")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--out", help="also write the results as JSON to this file")
    p.add_argument("--report", metavar="HTML",
                   help="also write a self-contained HTML page: the metric table and, per image, "
                   "input | output | target | baseline with its metrics, sortable by the gap to the baseline")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--fid-weights", help="local FID Inception weights file (unpaired models)")
    p.add_argument("--lpips", choices=("off", "alex", "vgg"),
                   help="also LPIPS v0.1 with this backbone (paired models; default: eval.lpips)")
    p.add_argument("--lpips-weights", help="the LPIPS v0.1 linear-layer file (alex.pth or vgg.pth)")
    p.add_argument("--lpips-backbone",
                   help="torchvision's AlexNet/VGG16 weights file (default: imagenet, torch.hub's cache)")
    p.set_defaults(handler="img2img.evaluate:cli_eval")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="run a model on images of any size",
        description="Translate a file, a folder (recursively) or a glob; writes PNGs.",
    )
    p.add_argument("model", help=MODEL_HELP + "; or a third-party SR weights file (.pth, .safetensors) "
                   "that spandrel recognises")
    p.add_argument("input", help="an image file, a folder or a glob pattern")
    p.add_argument("--out", required=True,
                   help="output folder (never the input folder); for one input file, also an "
                        "output file name such as result.png")
    p.add_argument("--tile", type=int, default=0, help="tile size in pixels (0: whole image)")
    p.add_argument("--tile-overlap", type=int, default=None,
                   help="overlap between tiles (default: what the network needs, from its receptive field)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="tiles, or same-size images, per network call (default: 1)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the network runs (auto: a GPU when there is one)")
    p.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB", help=DIRECTION_HELP)
    p.add_argument("--to", default=None, metavar="DOMAIN",
                   help="for a multi-domain model: the target domain, by name or index, or 'all' "
                        "(one output per domain, in a subfolder of --out named after it)")
    p.add_argument("--mask", default=None, metavar="FILE_OR_FOLDER",
                   help="for an inpainting model: the hole masks (white = hole), a folder with one per "
                        "input matched by file stem, or one file for every input; each the size of its image")
    p.set_defaults(handler="img2img.inference.predict:cli_predict")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a generator to ONNX, safetensors or TorchScript",
        description="Export a trained generator; ONNX exports are checked with ONNX Runtime.",
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--format", required=True,
                   choices=("onnx", "onnx-raw", "safetensors", "torchscript", "hub", "sr-weights"),
                   help="onnx: the whole model (RGB in [0, 1] of any size in and out; colour "
                   "conversion and padding inside); onnx-raw: the network alone; hub: a model "
                   "folder with a model card for the Hugging Face Hub; "
                   "sr-weights: an SR generator's weights in its original code's key layout "
                   "(.safetensors or .pth; loads in spandrel, chaiNNer, ComfyUI)")
    p.add_argument("--out", required=True, help="output file or directory")
    p.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB", help=DIRECTION_HELP)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--half", action="store_true",
                   help="onnx, onnx-raw: the network in float16 (input and output stay float32)")
    p.set_defaults(handler="img2img.export:cli_export")


def _add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        help="the networks of a config and their parameter counts",
        description="Build the networks of a config and print each one's class and exact "
        "parameter count.",
    )
    p.add_argument("config", help=RECIPE_HELP)
    _add_overrides(p)
    p.add_argument("--json", action="store_true", help="print {network: parameters} as JSON")
    p.set_defaults(handler="img2img.summary:cli_summary")


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="sample data, standard data sets, and checks",
        description="Build the bundled sample data, prepare standard data sets, check a data "
        "folder.",
    )
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    s = dsub.add_parser("sample", help="build the small sample data sets from bundled photos")
    s.add_argument("--out", default="sample_data", help="output folder (default: sample_data)")
    s.add_argument("--force", action="store_true", help="rebuild even if it exists")
    s.set_defaults(handler="img2img.data.sample:cli_sample")

    pr = dsub.add_parser("prepare", help="download (or take) and lay out a standard data set")
    pr.add_argument(
        "name", nargs="?", help="data set name, e.g. facades, horse2zebra, DIV2K, Set5"
    )
    pr.add_argument("--out", default="datasets", help="folder that receives NAME/")
    pr.add_argument("--archive", help="an already-downloaded archive to use instead")
    pr.add_argument("--list", action="store_true", help="list the known data sets")
    pr.add_argument(
        "--no-verify",
        action="store_true",
        help="accept an archive whose checksum does not match (or has none on record)",
    )
    pr.set_defaults(handler="img2img.data.prepare:cli_prepare")

    c = dsub.add_parser("check", help="scan the data of a config and report unreadable files")
    c.add_argument("config", help=RECIPE_HELP)
    _add_overrides(c)
    c.set_defaults(handler="img2img.datacheck:cli_check")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from img2img.demo import kinds  # the recipes in configs/demo (no torch)

    p = sub.add_parser(
        "demo",
        help="train a small model on the bundled sample data (CPU, about two minutes)",
        description="Build the sample data if missing, train a small model, evaluate it "
        "beside the trivial baseline, and print where everything is.",
    )
    p.add_argument(
        "kind",
        nargs="?",
        default="colorize",
        choices=kinds(),
        help="which demo: a recipe in configs/demo (default: colorize)",
    )
    p.add_argument("--out", default="runs/demo", help="parent folder of the run directory")
    p.add_argument("--data", default="sample_data", help="sample data folder")
    p.add_argument("--method", help="train the demo with another method's recipe (configs/demo/"
                   "KIND_METHOD.yaml, e.g. unpaired --method cut); several, comma-separated, or "
                   "all: each in turn, metrics side by side")
    p.add_argument("--steps", type=int, help="training steps (default: the demo's own)")
    _add_overrides(p)
    p.set_defaults(handler="img2img.demo:cli_demo")


def _add_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config",
        help="the run config: its JSON schema for editors",
        description="Tools for the YAML run config.",
    )
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    s = csub.add_parser(
        "schema",
        help="print the JSON schema of the run config",
        description="Print the JSON schema of the run config (every registered task, with its "
        "task_options) for editors that complete and check YAML: "
        "img2img config schema > img2img.schema.json",
    )
    s.set_defaults(handler="img2img.cli:cli_config_schema")


def _add_recipes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recipes",
        help="list the recipes that ship with img2img",
        description="List the shipped recipes by name, each with its one-line description; "
        "pass a name where a config is asked for: img2img train pix2pix/facades data.root=PATH",
    )
    p.set_defaults(handler="img2img.config.recipes:cli_recipes")


def cli_config_schema(args: argparse.Namespace) -> int:
    """Print the config's JSON schema. The config package knows no task; this layer, above
    both, hands it every registered task's name and options dataclass."""
    import json

    from img2img.config import config_schema
    from img2img.tasks import task_class, task_names

    tasks = {name: task_class(name).Options for name in task_names()}
    print(json.dumps(config_schema(tasks), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="img2img",
        description="Image-to-image translation with GANs: paired and unpaired translation, "
        "super-resolution and colourisation on one Accelerate training engine.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"img2img {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_train, _add_eval, _add_predict, _add_export, _add_summary, _add_data,
                _add_demo, _add_config, _add_recipes):
        add(sub)
    return parser


def _resolve(handler: str) -> Callable[[argparse.Namespace], int | None]:
    module_name, func_name = handler.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (err.name == module_name or module_name.startswith(err.name + ".")):
            raise UserError(f"this subcommand is not built yet ({module_name} is missing)") from None
        raise
    return getattr(module, func_name)


def _user_message(err: Exception) -> str:
    """The user's one-line message. An error raised inside a DataLoader worker comes back
    wrapped by PyTorch ("Caught DataError in DataLoader worker process 0. Original
    Traceback ..."); its last line holds the message."""
    message = str(err)
    if message.startswith("Caught ") and "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        name = type(err).__name__
        for prefix in (f"{type(err).__module__}.{name}: ", f"{name}: "):
            if last.startswith(prefix):
                return last[len(prefix):]
        return last
    return message


def _report(message: str, every_rank: bool = False) -> None:
    """The error line, from the main process; with ``every_rank`` (an error only the
    process that met it may know of, such as a bad file in its share of the data) from
    any process, naming its rank."""
    from img2img.log import is_main_process, process_rank

    if is_main_process():
        print(f"img2img: error: {message}", file=sys.stderr)
    elif every_rank:
        print(f"img2img: error (rank {process_rank()}): {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also come after options (train CONFIG --resume auto lr=...)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from img2img.log import setup_logging

    setup_logging(verbose=args.verbose)
    try:
        if getattr(args, "config", None) is not None and hasattr(args, "overrides"):
            # Validate the whole config before any work (or heavy import) starts.
            from img2img.config import load_config

            args.cfg = load_config(args.config, args.overrides)
        result = _resolve(args.handler)(args)
    except UserError as err:
        _report(_user_message(err), every_rank=err.rank_specific)
        return err.exit_code
    except KeyboardInterrupt:
        _report("interrupted")
        return 130
    except RuntimeError as err:
        # Under torchrun: the process that met an error has reported it and left; the
        # others then fail in their next collective. One line says so instead of a trace.
        peer_gone = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and any(p in str(err) for p in peer_gone):
            _report("stopped: another process of this run failed (its message is above)", every_rank=True)
            return 2
        raise
    except OSError as err:
        # Out of disk, permission denied, a read-only file system, a file where a folder
        # should be: the user's environment, not a bug.
        if err.errno in (28, 13, 122, 30, 20, 21):  # ENOSPC EACCES EDQUOT EROFS ENOTDIR EISDIR
            where = f" ({err.filename})" if getattr(err, "filename", None) else ""
            _report(f"{err.strerror}{where}")
            return 2
        raise
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
