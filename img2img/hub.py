"""A Hub-ready model folder: ``img2img export MODEL --format hub --out DIR``.

The folder is an exported model directory (``config.json`` + ``model.safetensors``, what
``img2img.load`` reads, offline) plus what the Hugging Face Hub shows:

- ``README.md``, the model card: the Hub's metadata block (``library_name: img2img``,
  ``pipeline_tag: image-to-image``, tags, and a ``license:`` field left for the user to
  fill in, since the licence of the weights depends on the training data), what the
  model does (the task's own description), its recipe (the run config, as YAML), its
  evaluation numbers from the run (the last evaluation in ``metrics.jsonl``, model and
  baseline), a sample grid, and how to load it with ``img2img.load``;
- ``samples.png``: the run's newest sample grid (``samples/step-*.png``, the task's
  columns); for a model without one, a grid of the model's outputs on photos that ship
  with scikit-image (input | output).

Upload it with ``huggingface-cli upload OWNER/NAME DIR`` and load it with
``img2img.load("hf://OWNER/NAME")``. It follows the ownership rule
(:mod:`img2img.ownership`): the folder carries img2img's manifest of kind ``model``
listing these files, and a folder img2img did not write is never replaced.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from img2img import model_io, ownership
from img2img.errors import UserError

CARD, SAMPLES = "README.md", "samples.png"
HINT = "choose another --out, or remove it yourself"


def run_dir_of(model_dir: Path) -> Path | None:
    """The run directory an exported model directory belongs to (``run/model``,
    ``run/model_best``, ``run/checkpoints/step-N/model``), or None."""
    for candidate in (model_dir.parent, *model_dir.parents[1:3]):
        if (candidate / "metrics.jsonl").is_file() or (candidate / "config.yaml").is_file():
            return candidate
    return None


def last_evaluation(run_dir: Path | None) -> tuple[int, dict[str, float], dict[str, float]] | None:
    """The step and the model's and baseline's metrics of the last evaluation logged in
    the run's ``metrics.jsonl``, or None."""
    if run_dir is None or not (run_dir / "metrics.jsonl").is_file():
        return None
    found = None
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        model = {k[5:]: v for k, v in entry.items() if k.startswith("eval/")}
        if model:
            base = {k[14:]: v for k, v in entry.items() if k.startswith("eval_baseline/")}
            found = (int(entry.get("step", 0)), model, base)
    return found


def _what_it_does(task: Any) -> str:
    doc = sys.modules[type(task).__module__].__doc__ or type(task).__doc__ or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def _metrics_table(evaluation: tuple[int, dict[str, float], dict[str, float]] | None, baseline: str) -> str:
    if evaluation is None:
        return "No evaluation was logged in this model's run (see `img2img eval` to measure it).\n"
    step, model, base = evaluation
    keys = list(model)
    lines = [f"Measured by the run at step {step} on its validation images.\n",
             "| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|",
             "| model | " + " | ".join(f"{model[k]:.4f}" for k in keys) + " |"]
    if base:
        lines.append(f"| baseline ({baseline}) | " + " | ".join(f"{base[k]:.4f}" if k in base else "" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def model_card(config: Any, task: Any, generators: dict[str, Any], evaluation: Any, has_samples: bool) -> str:
    """The text of ``README.md`` (see the module docstring)."""
    params = sum(p.numel() for net in generators.values() for p in net.parameters())
    arch = config.model.generator.name
    meta = {"library_name": "img2img", "pipeline_tag": "image-to-image", "license": None,
            "tags": ["img2img", "gan", "image-to-image", config.task, arch]}
    header = yaml.safe_dump(meta, sort_keys=False).replace("license: null", "license:  # fill in: the licence of these weights and their training data")
    directions = ", ".join(f"{d}: `{g}`" for d, g in task.directions.items())
    recipe = yaml.safe_dump(config.to_dict(), sort_keys=False)
    sample = f"![Sample grid]({SAMPLES})\n" if has_samples else ""
    return f"""---
{header}---

# img2img {config.task} model ({arch})

{_what_it_does(task)}

- generator: `{arch}`, {params:,} parameters ({", ".join(generators)}); direction {directions}
- scale: x{task.scale}

## Evaluation

{_metrics_table(evaluation, task.baseline)}
## Samples

{sample}
## How to use

```python
import img2img
from PIL import Image

model = img2img.load("hf://OWNER/NAME")      # or this folder: img2img.load("path/to/folder")
out = model(Image.open("photo.jpg"))          # PIL in, PIL out; numpy and tensors too
big = model(Image.open("large.jpg"), tile=512)
```

```bash
img2img predict hf://OWNER/NAME photos/ --out results/
img2img export hf://OWNER/NAME --format onnx --out model.onnx
```

## Recipe

The resolved run config this model was trained with (`img2img train` reads it):

```yaml
{recipe}```
"""


def _photo_grid(translator: Any) -> np.ndarray:
    """input | output rows for three photos that ship with scikit-image (96 px crops)."""
    import torch
    import torch.nn.functional as F
    from skimage import data

    rows = []
    for name in ("astronaut", "coffee", "chelsea"):
        photo = getattr(data, name)()
        top, left = (photo.shape[0] - 192) // 2, (photo.shape[1] - 192) // 2
        crop = torch.from_numpy(photo[top : top + 192 : 2, left : left + 192 : 2].copy()).permute(2, 0, 1).float() / 255
        out = translator(crop)
        shown = F.interpolate(crop[None], size=out.shape[-2:], mode="nearest")[0]
        rows.append(torch.cat([shown, out], dim=2))
    return torch.cat(rows, dim=1).permute(1, 2, 0).numpy()


def write_hub_folder(out: Path, config: Any, generators: dict[str, Any], translator: Any, model_dir: Path) -> Path:
    """Write the Hub-ready folder ``out`` (see the module docstring); refuses a folder
    img2img did not write."""
    from img2img.data.io import write_image

    ownership.check_replaceable(out, "model", HINT)
    run_dir = run_dir_of(model_dir)
    grids = sorted(run_dir.glob("samples/step-*.png")) if run_dir is not None else []
    out = model_io.save_model(out, config, generators, hint=HINT)
    ownership.mark(out, "model", [model_io.CONFIG_FILE, model_io.WEIGHTS_FILE, CARD, SAMPLES])
    if grids:
        shutil.copyfile(grids[-1], out / SAMPLES)
    else:
        write_image(out / SAMPLES, _photo_grid(translator))
    card = model_card(config, translator.task, generators, last_evaluation(run_dir), has_samples=True)
    (out / CARD).write_text(card, encoding="utf-8")
    return out


def cli_hub(args: Any, config: Any, generators: dict[str, Any], translator: Any) -> int:
    """``img2img export MODEL --format hub --out DIR``."""
    from img2img.inference.loading import find_model
    from img2img.outputs import make_folder

    out = Path(args.out).expanduser()
    make_folder(out.parent, given=out)
    try:
        out = write_hub_folder(out, config, generators, translator, find_model(args.model))
    except OSError as err:
        raise UserError(f"--out {out}: cannot write the model folder ({err.strerror or err})") from None
    print(f"wrote {out} ({CARD} with the metadata block, {model_io.CONFIG_FILE}, {model_io.WEIGHTS_FILE}, "
          f"{SAMPLES}); fill in the licence in {out / CARD}, then: huggingface-cli upload OWNER/NAME {out}")
    return 0
