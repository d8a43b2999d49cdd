"""The visual evaluation report: ``img2img eval MODEL --data DIR --report report.html``.

One self-contained HTML file (no external file or script: images are inlined as data
URIs, the style and the sorting script are in the page):

- the mean metrics of the model and of the baseline (the task's trivial answer), with
  the gap between them;
- one row per evaluated image: thumbnails of the input, the output, the target and the
  baseline (as the task defines them; what a task has not, such as an unpaired task's
  target, is left out), then that image's metrics for the model and the baseline and
  the gap, signed so that a positive gap means the model beats the baseline;
- clicking a column header sorts the rows by it (again: the other way round). Rows start
  sorted by the gap of the first metric, worst first, so the images where the model
  loses to the baseline come at the top.

Thumbnails are made as evaluation goes (:class:`ReportImages`, the longest side
:data:`THUMB` pixels, JPEG), so memory holds only them.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

#: Longest side of a thumbnail, in pixels.
THUMB = 256
#: Metrics where lower is better (for the sign of the gap).
LOWER_IS_BETTER = ("lpips", "fid", "kid", "kid_std", "l1", "l1_hole")
#: The columns of images, and the keys of an evaluation result that fill them.
COLUMNS = (("input", ("input",)), ("output", ("pred", "fake")), ("target", ("target",)),
           ("baseline", ("baseline",)))

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}#images th[data-col]{cursor:pointer;text-decoration:underline dotted}
td.name{text-align:left;font-family:monospace}td.img{padding:2px}
img{display:block;max-width:256px;max-height:256px}.worse{color:#b00}.better{color:#070}
"""
SCRIPT = """
document.querySelectorAll('#images th[data-col]').forEach(function (th) {
  th.addEventListener('click', function () {
    var col = +th.dataset.col, up = th.dataset.dir !== 'asc';
    th.dataset.dir = up ? 'asc' : 'desc';
    var body = document.querySelector('#images tbody');
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
      var fx = parseFloat(x), fy = parseFloat(y), c;
      if (isNaN(fx) || isNaN(fy)) c = String(x).localeCompare(String(y));
      else c = fx - fy;
      return up ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def _thumbnail(image: torch.Tensor) -> torch.Tensor:
    """A 1x3xHxW (or 3xHxW) image in [0, 1] fitted into THUMB x THUMB: area-averaged down,
    nearest-neighbour up (so the pixels of a small input show)."""
    x = image.detach().float().cpu()
    x = x[None] if x.ndim == 3 else x[:1]
    h, w = x.shape[-2:]
    k = THUMB / max(h, w)
    size = (max(1, round(h * k)), max(1, round(w * k)))
    x = F.interpolate(x, size=size, mode="area" if k < 1 else "nearest")
    return x[0].clamp(0, 1)


class ReportImages:
    """The thumbnails of every evaluated image, as data URIs, by image name."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, str]] = {}

    def add(self, name: str, images: dict[str, torch.Tensor | None]) -> None:
        """Thumbnails of one evaluation result (the keys of :data:`COLUMNS`)."""
        from img2img.data.io import encode_image

        row = {}
        for column, keys in COLUMNS:
            found = next((images[k] for k in keys if images.get(k) is not None), None)
            if found is not None:
                data = base64.b64encode(encode_image(_thumbnail(found), ".jpg")).decode("ascii")
                row[column] = f"data:image/jpeg;base64,{data}"
        self.rows[name] = row


def gap(metric: str, model: float, baseline: float) -> float:
    """Model minus baseline, signed so that positive means the model is better."""
    diff = model - baseline
    return -diff if metric in LOWER_IS_BETTER else diff


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return "inf" if value == math.inf else f"{value:.4f}"


def _summary(result: dict[str, Any], keys: list[str]) -> str:
    model, base = result["model"], result.get("baseline") or {}
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    cells = [f"<tr><td class=name>model</td>{''.join(f'<td>{_number(model.get(k))}</td>' for k in keys)}</tr>"]
    if base:
        name = html.escape(f"baseline ({result.get('baseline_name', '')})")
        cells.append(f"<tr><td class=name>{name}</td>{''.join(f'<td>{_number(base.get(k))}</td>' for k in keys)}</tr>")
        gaps = "".join(f"<td>{_number(gap(k, model[k], base[k])) if k in base else ''}</td>" for k in keys)
        cells.append(f"<tr><td class=name>gap (+: model better)</td>{gaps}</tr>")
    return f"<table id=summary><tr><th></th>{head}</tr>{''.join(cells)}</table>"


def _image_rows(result: dict[str, Any], images: ReportImages, columns: list[str], keys: list[str]) -> str:
    per_image = {row["name"]: row for row in result.get("per_image", [])}
    first = keys[0] if keys else None
    rows = []
    for name, thumbs in images.rows.items():
        metrics = per_image.get(name, {})
        base = metrics.get("baseline", {})
        cells = [f"<td class=name data-value=\"{html.escape(name)}\">{html.escape(name)}</td>"]
        cells += [f"<td class=img><img alt=\"{c}\" src=\"{thumbs[c]}\"></td>" if c in thumbs else "<td></td>"
                  for c in columns]
        order = math.inf
        for k in keys:
            g = gap(k, metrics[k], base[k]) if k in metrics and k in base else None
            order = g if (k == first and g is not None) else order
            css = "" if g is None else (" class=worse" if g < 0 else " class=better")
            cells += [f"<td data-value=\"{metrics.get(k, '')}\">{_number(metrics.get(k))}</td>",
                      f"<td data-value=\"{base.get(k, '')}\">{_number(base.get(k))}</td>",
                      f"<td{css} data-value=\"{'' if g is None else g}\">{_number(g)}</td>"]
        rows.append((order, f"<tr>{''.join(cells)}</tr>"))
    rows.sort(key=lambda r: r[0])  # worst gap first
    return "".join(r for _, r in rows)


def render(result: dict[str, Any], images: ReportImages, labels: dict[str, str], title: str) -> str:
    """The report page (see the module docstring). ``labels`` titles the image columns
    (``input``, ``output``, ``target``, ``baseline``)."""
    keys = [k for k in result["model"] if isinstance(result["model"][k], (int, float))]
    columns = [c for c, _ in COLUMNS if any(c in row for row in images.rows.values())]
    per_image_keys = [k for k in keys if any(k in row for row in result.get("per_image", []))]
    head = ["<th data-col=0>image</th>"]
    head += [f"<th>{html.escape(labels.get(c, c))}</th>" for c in columns]
    n = 1 + len(columns)
    for i, k in enumerate(per_image_keys):
        head += [f"<th data-col={n + 3 * i}>{html.escape(k)}</th>",
                 f"<th data-col={n + 3 * i + 1}>{html.escape(k)} baseline</th>",
                 f"<th data-col={n + 3 * i + 2}>{html.escape(k)} gap</th>"]
    body = _image_rows(result, images, columns, per_image_keys)
    return (f"<!DOCTYPE html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<h2>Means</h2>{_summary(result, keys)}"
            f"<h2>Images ({len(images.rows)})</h2><p>Click a column title to sort by it; rows start "
            f"with the largest loss to the baseline.</p>"
            f"<table id=images><thead><tr>{''.join(head)}</tr></thead><tbody>{body}</tbody></table>"
            f"<script>{SCRIPT}</script></body></html>")


def write_report(path: str | Path, result: dict[str, Any], images: ReportImages, labels: dict[str, str],
                 title: str) -> Path:
    """Write the report page to ``path`` atomically."""
    from img2img.files import write_text_atomic

    return write_text_atomic(path, render(result, images, labels, title))


def labels_for(task: Any) -> dict[str, str]:
    """Column titles from the task: its sample grids' titles for input, output and target
    (when it has those three), and its baseline's name."""
    labels = dict(zip(("input", "output", "target"), task.visual_labels)) if len(task.visual_labels) == 3 else {}
    return {"input": "input", "output": "output", "target": "target", **labels,
            "baseline": f"baseline ({task.baseline})"}


def write_eval_report(path: Path, result: dict[str, Any], images: ReportImages, task: Any, data_dir: Path) -> Path:
    """The report of ``img2img eval``: image names relative to ``data_dir`` (as the
    table's), columns titled by the task; a UserError when it cannot be written."""
    from img2img.errors import UserError

    renamed = ReportImages()
    for name, row in images.rows.items():
        path_of = Path(name)
        key = path_of.relative_to(data_dir).as_posix() if path_of.is_relative_to(data_dir) else name
        renamed.rows[key] = row
    title = f"{result.get('task', task.name)} model {result.get('model_dir', '')} on {data_dir}"
    try:
        return write_report(path, result, renamed, labels_for(task), title)
    except OSError as err:
        raise UserError(f"--report {path}: cannot write the report ({err.strerror or err})") from None
