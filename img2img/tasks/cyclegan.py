"""CycleGAN (Zhu et al. 2017): unpaired translation with two generators and two critics.

``G_A``: A -> B, ``G_B``: B -> A. ``D_A`` tells real B from ``G_A(A)``, ``D_B`` real A from
``G_B(B)``. Generator objective (the recipe: LSGAN, cycle 10, identity 0.5)::

    GAN(D_A(G_A(A))) + GAN(D_B(G_B(B)))
    + cycle_weight * (|G_B(G_A(A)) - A| + |G_A(G_B(B)) - B|)
    + cycle_weight * identity_weight * (|G_A(B) - B| + |G_B(A) - A|)

Each discriminator sees fakes drawn through an image pool of ``loss.pool_size`` and its
loss is halved. G is updated before D at every step, as in the reference.

Data: ``trainA/`` and ``trainB/`` (val: ``valA/``, ``valB/`` or ``testA/``, ``testB/``).
There are no pairs to score against: evaluation is FID/KID of ``G_A(A)`` against the B
images (with ``eval.fid_weights``), beside the untranslated A as the baseline.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from img2img.config import Config
from img2img.data import splits
from img2img.errors import UserError
from img2img.nets.contract import forward_padded
from img2img.tasks.base import Batch, Nets, Pool, Task, to_unit


class CycleGANTask(Task):
    name = "cyclegan"
    d_first = False
    uses_image_pool = True
    paired = False
    directions = {"AtoB": "G_A", "BtoA": "G_B"}
    visual_labels = ("A", "G_A(A)", "G_B(G_A(A))", "B", "G_B(B)", "G_A(G_B(B))")

    # ------------------------------------------------------------------ networks
    def build_generators(self) -> Nets:
        from img2img.nets import build_generator

        gcfg = self.config.model.generator
        cin, cout = self.channels()
        return {"G_A": build_generator(gcfg, cin, cout), "G_B": build_generator(gcfg, cout, cin)}

    def discriminator_channels(self) -> dict[str, int]:
        """``D_A`` judges B-domain images (real, or made by ``G_A``) and ``D_B`` A-domain
        images, as in the CycleGAN paper's code."""
        cin, cout = self.channels()
        return {"D_A": cout, "D_B": cin}

    # ------------------------------------------------------------------ data
    def collect_split(self, split: str, full_decode: bool = False) -> splits.SplitFiles | None:
        return splits.find_unpaired(self.config, split, full_decode)

    def make_dataset(self, found: splits.SplitFiles):
        from img2img.data.datasets import UnpairedDataset

        d = self.config.data
        cin, cout = self.channels()
        paths_a, paths_b = self._val_cut(found)
        return UnpairedDataset(
            paths_a, paths_b, preprocess=d.preprocess, load_size=d.load_size,
            crop_size=d.crop_size, flip=d.flip, train=found.split == "train", in_channels=cin,
            out_channels=cout, max_pixels=d.max_pixels, alpha=d.alpha,
        )

    def eval_data(self, data_dir: str, lr_dir: str | None = None) -> Config:
        """``data_dir`` holds ``A/`` and ``B/`` (or ``valA/``, ``valB/``, or ``testA/``,
        ``testB/``)."""
        if lr_dir:
            raise UserError(f"--lr-dir: the {self.name} task takes no separate low-resolution inputs")
        root = Path(data_dir)
        split = "" if (root / "A").is_dir() and (root / "B").is_dir() else "val"
        data = dataclasses.replace(self.config.data, root=str(data_dir), val_split=split,
                                   preprocess="none", lr_root=None, max_val_images=0)
        return dataclasses.replace(self.config, data=data)

    def missing_val(self) -> str:
        root, name = Path(self.config.data.root), self.config.data.val_split
        return (f"no validation split: {root} has neither {name}A/ and {name}B/ nor testA/ and "
                "testB/, so evaluation is off (no metrics, no model_best/); put held-out images "
                f"of each domain in {root / (name + 'A')}/ and {root / (name + 'B')}/, or set "
                "data.val_split=NAME for NAMEA/ and NAMEB/")

    def missing_eval_data(self, data_dir: str) -> str:
        from img2img.data import layouts

        return (f"--data {data_dir}: an unpaired model is evaluated on a folder that holds A/ "
                "and B/ (or valA/ and valB/, or testA/ and testB/), each domain's held-out "
                f"images; {data_dir} holds {layouts.describe(Path(data_dir))}")

    # ------------------------------------------------------------------ training
    def forward(self, G: Nets, batch: Batch) -> Batch:
        A, B = batch["A"], batch["B"]
        out = {"fake_B": G["G_A"](A), "fake_A": G["G_B"](B)}
        out["rec_A"] = G["G_B"](out["fake_B"])
        out["rec_B"] = G["G_A"](out["fake_A"])
        if self.config.loss.identity_weight > 0:
            out["idt_A"] = G["G_A"](B)
            out["idt_B"] = G["G_B"](A)
        return out

    def generator_loss(self, D: Nets, batch: Batch, out: Batch) -> dict:
        loss = self.config.loss
        A, B = batch["A"], batch["B"]
        terms = {}
        if "D_A" in D and loss.gan_weight > 0:
            terms |= self.g_adversarial(D["D_A"], out["fake_B"], B, "G_A_GAN")
            terms |= self.g_adversarial(D["D_B"], out["fake_A"], A, "G_B_GAN")
        terms["cycle_A"] = loss.cycle_weight * F.l1_loss(out["rec_A"], A)
        terms["cycle_B"] = loss.cycle_weight * F.l1_loss(out["rec_B"], B)
        if "idt_A" in out:
            weight = loss.cycle_weight * loss.identity_weight
            terms["idt_A"] = weight * F.l1_loss(out["idt_A"], B)
            terms["idt_B"] = weight * F.l1_loss(out["idt_B"], A)
        return terms

    def discriminator_loss(self, D: Nets, batch: Batch, out: Batch, pool: Pool) -> dict:
        fake_B = pool("D_A", out["fake_B"].detach())
        fake_A = pool("D_B", out["fake_A"].detach())
        return {
            **self.d_terms(D["D_A"], batch["B"], fake_B, "D_A"),
            **self.d_terms(D["D_B"], batch["A"], fake_A, "D_B"),
        }

    def visuals(self, batch: Batch, out: Batch) -> list[torch.Tensor]:
        return [batch["A"], out["fake_B"], out["rec_A"], batch["B"], out["fake_A"], out["rec_B"]]

    # ------------------------------------------------------------------ evaluation
    def eval_batch(self, dataset, index: int, device: torch.device) -> tuple[Batch, str]:
        """Each A image once, alone (FID/KID need every image of each domain once)."""
        image, name = dataset.domain_image("A", index)
        return self.prepare({"A": image[None]}, device), name

    def eval_references(self, dataset):
        """The B images, each once."""
        return len(dataset.paths_b), lambda j: dataset.domain_image("B", j)[0]

    def evaluate_batch(self, G: Nets, batch: Batch) -> dict[str, torch.Tensor]:
        """``fake`` (G_A(A)) feeds FID/KID against the B images; the baseline is A itself."""
        A = batch["A"]
        return {"fake": to_unit(forward_padded(G["G_A"], A)), "baseline": to_unit(A)}
