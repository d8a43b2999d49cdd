"""Inputs beyond the image: what a task declares in ``inference_inputs`` (a target domain,
a hole mask), from the caller's values to per-image tensors, and from those to the tiles.

A caller gives each input once for all images (``t(images, domain="blond")``) or once per
image (a list or tuple as long as the batch; a tensor whose first dimension is the batch
size for a batch of images). The task turns each image's value into a tensor
(:meth:`~img2img.tasks.image_hooks.ImageHooks.encode_input`): a *global* one of shape
[1, ...], handed whole to every tile of its image; a *spatial* one 1 x C x H x W at the
image's size, cut into the same tiles, padded the same way and cropped back like the image.
"""

from __future__ import annotations

from typing import Any

import torch

from img2img.errors import UserError

#: One image's inputs: name -> (kind, tensor with a leading dimension of 1).
Extras = dict[str, tuple[str, torch.Tensor]]


def _declared(task: Any) -> dict[str, str]:
    return dict(getattr(task, "inference_inputs", {}) or {})


def check_names(task: Any, given: dict[str, Any]) -> None:
    """Every input the task declares is given, and nothing else (a UserError naming it)."""
    declared = _declared(task)
    for name in given:
        if name not in declared:
            takes = f"it takes {', '.join(sorted(declared))}" if declared else "it takes only the image"
            raise UserError(f"the {task.name} model takes no input {name!r}; {takes}")
    for name in declared:
        if given.get(name) is None:
            choices = task.input_choices(name) if hasattr(task, "input_choices") else None
            known = f" (one of: {', '.join(choices)})" if choices else ""
            raise UserError(f"the {task.name} model needs the input {name!r}{known}: give {name}=... "
                            f"(img2img predict: {FLAGS.get(name, '--' + name)})")


#: The ``img2img predict`` option of each input name.
FLAGS = {"domain": "--to DOMAIN|all", "mask": "--mask FILE_OR_FOLDER"}


def _per_image(name: str, value: Any, count: int, spatial: bool) -> list[Any]:
    """``value`` split into one value per image."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise UserError(f"{name}: {len(value)} values for {count} image(s); give one, or one per image")
        return list(value)
    batched_dims = 4 if spatial else 1
    if isinstance(value, torch.Tensor) and value.ndim >= batched_dims and (count > 1 or value.ndim == batched_dims):
        if value.shape[0] != count:
            raise UserError(f"{name}: a batch of {value.shape[0]} for {count} image(s)")
        return list(value)
    return [value] * count


def split_extras(task: Any, given: dict[str, Any], sizes: list[tuple[int, int]]) -> list[Extras]:
    """Per-image tensors of the task's inputs for images of ``sizes`` (height, width)."""
    check_names(task, given)
    out: list[Extras] = [{} for _ in sizes]
    for name, kind in _declared(task).items():
        for i, value in enumerate(_per_image(name, given[name], len(sizes), kind == "spatial")):
            t = task.encode_input(name, value)
            if kind == "spatial" and tuple(t.shape[-2:]) != sizes[i]:
                raise UserError(f"{name}: {t.shape[-2]}x{t.shape[-1]} for an image of {sizes[i][0]}x{sizes[i][1]} "
                                "pixels; it must have the image's size")
            out[i][name] = (kind, t.unsqueeze(0) if kind == "spatial" else t.reshape(1, *t.shape[1:]))
    return out


def batch_extras(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor] | None:
    """Tile inputs (one dict per tile) as one batch, or None when there are none."""
    if not parts or not parts[0]:
        return None
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


def cut_extras(extras: Extras, rows: Any, cols: Any, device: torch.device) -> dict[str, torch.Tensor]:
    """One image's inputs for a window: global ones whole, spatial ones at ``rows`` x
    ``cols`` (slices, or 1-d index tensors such as a reflection pad's)."""
    out = {}
    for name, (kind, t) in extras.items():
        if kind == "spatial":
            t = t[..., rows, :] if isinstance(rows, slice) else t.index_select(2, rows)
            t = t[..., cols] if isinstance(cols, slice) else t.index_select(3, cols)
        out[name] = t.to(device)
    return out
