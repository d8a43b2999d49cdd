"""The data hooks of a task (:class:`img2img.tasks.base.Task` inherits them): find and
check a split's files, build its dataset, point the config at a folder for ``img2img
eval``. The defaults are those of paired A|B data."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from img2img.config import Config
from img2img.data import splits
from img2img.data.integrity import apply_on_error
from img2img.errors import DataError, UserError
from img2img.log import get_logger

log = get_logger(__name__)


class DataHooks:
    """Where a task's images come from; see :class:`img2img.tasks.base.Task`."""

    config: Config
    name: str

    def collect_split(self, split: str, full_decode: bool = False) -> splits.SplitFiles | None:
        """Find and check the files of ``split`` (None: the optional val split is absent)."""
        return splits.find_paired(self.config, split, full_decode)

    def make_dataset(self, found: splits.SplitFiles) -> torch.utils.data.Dataset:
        """The dataset of a checked split (its problems already dealt with)."""
        from img2img.data.datasets import PairedDataset

        d = self.config.data
        cin, cout = self.channels()
        return PairedDataset(
            self._val_cut(found), aligned=d.layout == "aligned", direction=d.direction,
            preprocess=d.preprocess, load_size=d.load_size, crop_size=d.crop_size, flip=d.flip,
            train=found.split == "train", in_channels=cin, out_channels=cout,
            max_pixels=d.max_pixels, alpha=d.alpha,
        )

    def _val_cut(self, found: splits.SplitFiles) -> Any:
        """The items of ``found``, the val split cut to ``data.max_val_images``."""
        limit = self.config.data.max_val_images
        if found.split != "val" or not limit:
            return found.items
        if isinstance(found.items, tuple):
            return (found.items[0][:limit], *found.items[1:])
        return found.items[:limit]

    def build_dataset(self, split: str, bad_files_hint: str | None = None) -> torch.utils.data.Dataset | None:
        """The dataset of ``split`` ("train" or "val"); None when the val split is absent.

        Every file is checked first; problems raise one DataError listing them all
        (``data.on_error=raise``, ending in ``bad_files_hint``) or are dropped with a
        warning (``skip``). A missing or empty root is a DataError, never an empty set."""
        return self.build_datasets((split,), bad_files_hint)[split]

    def build_datasets(self, names: tuple[str, ...] = ("train", "val"),
                       bad_files_hint: str | None = None) -> dict[str, torch.utils.data.Dataset | None]:
        """:meth:`build_dataset` of several splits, whose bad files are all checked and
        reported together (one list, as ``img2img data check`` gives)."""
        found = {split: self.collect_split(split) for split in names}
        problems = [p for f in found.values() if f is not None for p in f.problems]
        where = " and ".join(f.where for f in found.values() if f is not None and f.problems)
        apply_on_error(problems, self.config.data.on_error, where=where or "the data",
                       **({"hint": bad_files_hint} if bad_files_hint else {}))
        datasets = {}
        for split, f in found.items():
            datasets[split] = None if f is None else self._dataset_of(f)
        return datasets

    def _dataset_of(self, found: splits.SplitFiles) -> torch.utils.data.Dataset:
        if found.usable == 0:
            raise DataError(f"no usable images left in {found.where} ({found.split} split)")
        dataset = self.make_dataset(found)
        if found.split == "train" and self.config.data.on_error == "skip":
            dataset.skip_bad = True
        log.debug("%s %s split: %d samples from %s", self.name, found.split, len(dataset), found.where)
        return dataset

    def eval_data(self, data_dir: str, lr_dir: str | None = None) -> Config:
        """The config pointed at a folder of evaluation images (``img2img eval``): its
        images (a data root's val split only) are scored at their own size (the model pads
        them)."""
        from img2img.data.layouts import eval_split

        if lr_dir:
            raise UserError(f"--lr-dir: the {self.name} task takes no separate low-resolution inputs")
        split = eval_split(Path(data_dir), self.config.data.val_split)
        data = dataclasses.replace(self.config.data, root=str(data_dir), val_split=split,
                                   preprocess="none", lr_root=None, max_val_images=0)
        return dataclasses.replace(self.config, data=data)

    def missing_val(self) -> str:
        """The warning when the val split is absent (training then evaluates nothing)."""
        folder = Path(self.config.data.root) / self.config.data.val_split
        return (f"no validation split: {folder} does not exist, so evaluation is off (no "
                f"metrics, no model_best/); put held-out images in {folder}/, or set "
                "data.val_split=NAME to the folder of data.root that holds them")

    def missing_eval_data(self, data_dir: str) -> str:
        """What to say when ``data_dir`` holds no evaluation images for this task."""
        return f"--data {data_dir}: no evaluation images found"
