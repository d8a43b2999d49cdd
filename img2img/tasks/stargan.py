"""StarGAN (Choi et al. 2018): one generator translates an image into any of several domains.

``G(x, c)`` sees the image with the target domain ``c`` as a one-hot map stacked on its
channels (:mod:`img2img.nets.stargan`: ``stargan_resnet``); ``D`` (``stargan_patchgan``)
has two heads on shared features: a realness map and a domain classifier. Per step (the
engine's ``train.d_steps_per_g_step`` D updates, 5 in the recipes, the last followed by
the G update, as the reference's iteration runs D every time and G every fifth)::

    D:  -D_src(x) + D_src(G(x, c)) + gp_weight * GP + cls_weight * CE(D_cls(x), c_x)
    G:  -D_src(G(x, c)) + cls_weight * CE(D_cls(G(x, c)), c)
        + rec_weight * |G(G(x, c), c_x) - x|

with WGAN-GP (``loss.gan_mode=wgangp``; the penalty on the realness head only), the
target domains ``c`` a shuffle of the batch's own labels ``c_x`` (the reference's
``randperm``), and the domain loss a cross-entropy (one label per image).
``loss.d_loss_scale`` does not apply (the reference's D loss is not halved).

Data: one folder per domain, ``<root>/train/<domain>/...`` (and ``val/<domain>/...``).
The domains are ``task_options.domains``, or the train split's folder names in sorted
order; the list is fixed when training starts and saved in the run's and the model's
config, so prediction, evaluation and export know the names (the index of a domain is its
place in the list).

Inference: the inference input ``domain`` (an index or a name; ``img2img predict --to``,
``img2img.load(model)(image, domain="blond")``, the ONNX graph's int64 input ``domain``).
Evaluation: every val image is translated into every other domain; FID/KID of the
outputs for each target domain against that domain's real val images (reported per
domain, and their mean as ``fid``/``kid``), beside the untranslated inputs as the baseline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from img2img.config import Config
from img2img.errors import ConfigError, DataError, UserError
from img2img.losses import gradient_penalty
from img2img.nets.contract import forward_padded
from img2img.tasks.base import Batch, Nets, Pool, Task, TrainingSizes, collate_one, to_unit


@dataclass
class StarGANOptions:
    #: The domains, in index order (empty: the train split's folder names, sorted). The
    #: networks learn them by index: a resume with another list is refused.
    domains: list[str] = field(default_factory=list, metadata={"shapes_networks": True})
    #: Weight of the domain classification terms (the reference's lambda_cls).
    cls_weight: float = field(default=1.0, metadata={"min": 0.0})
    #: Weight of the reconstruction L1 (the reference's lambda_rec).
    rec_weight: float = field(default=10.0, metadata={"min": 0.0})


def domain_maps(x: torch.Tensor, domain: torch.Tensor, count: int) -> torch.Tensor:
    """``x`` with the one-hot maps of ``domain`` (N int64) stacked on its channels; built by
    broadcasting, so an ONNX graph keeps every size dynamic."""
    classes = torch.arange(count, device=x.device)
    onehot = (domain.to(x.device)[:, None, None, None] == classes[None, :, None, None]).to(x.dtype)
    return torch.cat([x, onehot * torch.ones_like(x[:, :1])], dim=1)


class StarGANTask(Task):
    name = "stargan"
    Options = StarGANOptions
    d_first = True
    paired = False
    image_keys = ("A",)
    directions = {"AtoB": "G"}
    visual_labels = ("input", "G(x, c)", "G(G(x, c), c_x)")
    collapse_pairs = {"fake": "A"}
    inference_inputs = {"domain": "global"}
    gan_modes = ("wgangp", "vanilla", "lsgan", "hinge")

    # ------------------------------------------------------------------ config
    def read_options(self) -> StarGANOptions:
        """The options, with the domains found in the train split when none are given (the
        config is updated too, so the run saves them)."""
        options = super().read_options()
        if not options.domains:
            options.domains = self._found_domains()
            if options.domains:
                given = {**self.config.task_options, "domains": list(options.domains)}
                self.config = dataclasses.replace(self.config, task_options=given)
        if len(set(options.domains)) != len(options.domains):
            raise ConfigError(f"task_options.domains: names repeat in {options.domains}")
        return options

    def _found_domains(self) -> list[str]:
        from img2img.data.domains import domain_folders

        root = (self.config.data.root or "").strip()
        return domain_folders(Path(root).expanduser() / self.config.data.train_split) if root else []

    @property
    def domains(self) -> list[str]:
        if len(self.options.domains) < 2:
            found = ", ".join(self.options.domains) or "none"
            raise DataError(f"the {self.name} task needs at least two domains (found: {found}): one folder per "
                            f"domain under {self.config.data.root}/{self.config.data.train_split}/, "
                            "or task_options.domains")
        return list(self.options.domains)

    def check_config(self) -> None:
        super().check_config()
        model = self.config.model
        if model.generator.name != "stargan_resnet":
            raise ConfigError("model.generator.name: the stargan task's generator reads the domain maps; "
                              "use stargan_resnet")
        if model.discriminator.name not in ("stargan_patchgan", "none"):
            raise ConfigError("model.discriminator.name: the stargan task needs the two-headed "
                              "stargan_patchgan (realness and domain)")
        if self.config.loss.feature_matching_weight > 0:
            raise ConfigError("loss.feature_matching_weight: the stargan task has no feature matching (its "
                              "two-headed stargan_patchgan gives no intermediate features); set it to 0")
        n, crop = model.discriminator.n_layers, self.config.data.crop_size
        if model.discriminator.name != "none" and (crop % 2**n or crop < 2**n):
            raise ConfigError(f"data.crop_size: the domain head of stargan_patchgan with n_layers={n} needs a "
                              f"multiple of {2**n}, got {crop}")

    # ------------------------------------------------------------------ networks
    def build_generators(self) -> Nets:
        from img2img.nets import build_generator

        return {"G": build_generator(self.config.model.generator, 3 + len(self.domains), 3)}

    def discriminator_channels(self) -> dict[str, int]:
        return {"D": 3}

    def build_discriminators(self) -> Nets:
        from img2img.nets import build_discriminator

        dcfg = self.config.model.discriminator
        if dcfg.name == "none":
            return {}
        d = self.config.data
        if d.preprocess not in ("resize_and_crop", "crop", "scale_width_and_crop"):
            # the domain head's kernel covers a data.crop_size image: other sizes break it or blur it
            raise ConfigError(f"data.preprocess: the domain head of stargan_patchgan is built for training "
                              f"images of data.crop_size ({d.crop_size} px), and preprocess={d.preprocess} keeps "
                              "other sizes; use resize_and_crop, crop or scale_width_and_crop")
        return {"D": build_discriminator(dcfg, 3, domains=len(self.domains), image_size=d.crop_size)}

    def training_sizes(self) -> TrainingSizes | None:
        crop = self.config.data.crop_size
        return TrainingSizes("data.crop_size", crop, crop)

    # ------------------------------------------------------------------ data
    def collect_split(self, split: str, full_decode: bool = False):
        from img2img.data.domains import find_domains

        return find_domains(self.config, split, self.domains, full_decode)

    def make_dataset(self, found):
        from img2img.data.domains import DomainDataset

        d = self.config.data
        return DomainDataset(self._val_cut(found), preprocess=d.preprocess, load_size=d.load_size,
                             crop_size=d.crop_size, flip=d.flip, train=found.split == "train",
                             max_pixels=d.max_pixels, alpha=d.alpha)

    def _val_cut(self, found):
        """The val split cut to ``data.max_val_images`` in turn from each domain
        (:func:`~img2img.data.domains.round_robin`: a small cap drops no domain)."""
        from img2img.data.domains import round_robin

        limit = self.config.data.max_val_images
        return round_robin(found.items, limit) if found.split == "val" and limit else found.items

    def eval_data(self, data_dir: str, lr_dir: str | None = None) -> Config:
        """``data_dir`` holds one folder per domain, or ``val/`` with them."""
        if lr_dir:
            raise UserError(f"--lr-dir: the {self.name} task takes no separate low-resolution inputs")
        split = "val" if (Path(data_dir) / "val").is_dir() else "."
        data = dataclasses.replace(self.config.data, root=str(data_dir), val_split=split,
                                   preprocess="none", lr_root=None, max_val_images=0)
        return dataclasses.replace(self.config, data=data)

    def missing_eval_data(self, data_dir: str) -> str:
        return (f"--data {data_dir}: a multi-domain model is evaluated on a folder with one subfolder per "
                f"domain ({', '.join(self.domains)}), or val/ holding them")

    def prepare(self, batch: dict, device: torch.device, channels_last: bool = False) -> Batch:
        out = super().prepare(batch, device, channels_last)
        out["label"] = batch["label"].to(device)
        return out

    # ------------------------------------------------------------------ images in and out
    def to_network(self, rgb: torch.Tensor, extra: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        if not extra or "domain" not in extra:
            raise UserError(f"a {self.name} model needs the target domain: one of {', '.join(self.domains)}")
        return domain_maps(rgb, extra["domain"], len(self.domains))

    def encode_input(self, name: str, value: Any) -> torch.Tensor:
        """A domain name, or its index (an int, a digit string or a one-element tensor)."""
        domains = self.domains
        if isinstance(value, str) and value in domains:
            return torch.tensor([domains.index(value)])
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
            value = int(value)
        if isinstance(value, np.integer):  # np.argmax(...) and the like
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(domains):
            return torch.tensor([value])
        raise UserError(f"unknown domain {value!r}; this model knows {', '.join(domains)} "
                        f"(by name, or index 0 to {len(domains) - 1})")

    def input_choices(self, name: str) -> list[str] | None:
        return self.domains

    def example_inputs(self, n: int, height: int, width: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"domain": torch.randint(0, len(self.domains), (n,), generator=generator)}

    def check_translatable(self, net) -> None:
        cin, cout = int(getattr(net, "in_channels", 0)), int(getattr(net, "out_channels", 0))
        if (cin, cout) != (3 + len(self.domains), 3):
            raise UserError(f"a {self.name} network for {len(self.domains)} domains maps {3 + len(self.domains)} "
                            f"channels to 3; this one is {cin} -> {cout}")

    def export_notes(self) -> dict[str, str]:
        listed = ", ".join(f"{i}={name}" for i, name in enumerate(self.domains))
        return {"input_range": f"[-1, 1] RGB with {len(self.domains)} one-hot domain maps stacked after it",
                "domains": listed, "domain_input": "int64 [N], the target domain's index"}

    # ------------------------------------------------------------------ training
    def _translate(self, G: Nets, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        label = batch["label"]
        target = label[torch.randperm(len(label)).to(label.device)]  # the batch's labels, shuffled
        return G["G"](domain_maps(batch["A"], target, len(self.domains))), target

    def critic_forward(self, G: Nets, batch: Batch) -> Batch:
        fake, target = self._translate(G, batch)
        return {"fake": fake, "target": target}

    def forward(self, G: Nets, batch: Batch) -> Batch:
        fake, target = self._translate(G, batch)
        rec = G["G"](domain_maps(fake, batch["label"], len(self.domains)))
        return {"fake": fake, "target": target, "rec": rec}

    def discriminator_loss(self, D: Nets, batch: Batch, out: Batch, pool: Pool) -> dict[str, torch.Tensor]:
        net, loss = D["D"], self.config.loss
        real, fake = batch["A"], out["fake"].detach()
        real_src, real_cls = net(real)
        fake_src, _ = net(fake)
        real_term, fake_term = self.gan.discriminator_terms(real_src, fake_src)
        terms = {"D_real": real_term, "D_fake": fake_term,
                 "D_cls": self.options.cls_weight * F.cross_entropy(real_cls.float(), batch["label"])}
        if loss.gan_mode == "wgangp" and loss.gp_weight > 0:
            terms["D_gp"] = loss.gp_weight * gradient_penalty(lambda x: net(x)[0], real, fake)
        return terms

    def generator_loss(self, D: Nets, batch: Batch, out: Batch) -> dict[str, torch.Tensor]:
        o = self.options
        terms = {"G_rec": o.rec_weight * F.l1_loss(out["rec"], batch["A"])}
        if "D" in D:
            src, cls = D["D"](out["fake"])
            terms["G_GAN"] = self.config.loss.gan_weight * self.gan.generator_loss(src)
            terms["G_cls"] = o.cls_weight * F.cross_entropy(cls.float(), out["target"])
        return terms

    def visuals(self, batch: Batch, out: Batch) -> list[torch.Tensor]:
        return [batch["A"], out["fake"], out["rec"]]

    # ------------------------------------------------------------------ evaluation
    def eval_batch(self, dataset, index: int, device: torch.device) -> tuple[Batch, str]:
        sample = dataset[index]
        return self.prepare(collate_one(sample), device), str(sample["A_path"])

    def eval_references(self, dataset):
        """Every val image, once (grouped by its domain: :meth:`eval_reference_groups`)."""
        return len(dataset), lambda j: dataset[j]["A"]

    def eval_reference_groups(self, dataset) -> list[str] | None:
        return [self.domains[label] for label in dataset.labels]

    def evaluate_batch(self, G: Nets, batch: Batch) -> dict[str, Any]:
        """The image translated into every other domain (``fake``, one row per target,
        ``groups`` naming them), and the image itself as each row's baseline."""
        x, source = batch["A"], int(batch["label"][0])
        targets = [d for d in range(len(self.domains)) if d != source]
        index = torch.tensor(targets, device=x.device)
        fake = forward_padded(G["G"], domain_maps(x.expand(len(targets), -1, -1, -1), index, len(self.domains)))
        return {"fake": to_unit(fake), "baseline": to_unit(x).expand(len(targets), -1, -1, -1),
                "groups": [self.domains[d] for d in targets]}
