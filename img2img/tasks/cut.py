"""CUT and FastCUT (Park et al. 2020, "Contrastive learning for unpaired image-to-image
translation"): one-sided unpaired translation with one generator ``G`` (A -> B), one
discriminator ``D`` (real B against ``G(A)``) and PatchNCE instead of a cycle.

PatchNCE asks each patch of the output to be recognised as the patch of the input at the
same place among the input's other patches: the generator's own encoder reads input and
output (layers ``task_options.nce_layers`` of its flat layer list), a projection head
``F`` (one two-layer MLP per layer) maps ``num_patches`` sampled positions per layer to
unit vectors, and a cross-entropy over their similarities divided by ``temperature``
picks the positive (:func:`img2img.losses.patch_nce_loss`; negatives come from the same
image only). ``F`` is built from the encoder's feature shapes on a first training batch
(the reference's data-dependent initialisation, :meth:`CUTTask.build_extra_networks`),
trains with G's optimizer and lives in checkpoints, not in the exported model.

Generator objective per step (D is updated first, as in the reference)::

    gan_weight * GAN(D(G(A)))
    + nce_weight * NCE(A, G(A))                            (fastcut; flip-equivariance)
    + nce_weight * (NCE(A, G(A)) + NCE(B, G(B))) / 2       (cut: with the identity term)

``task_options.mode`` picks the paper's settings: ``cut`` (NCE weight 1, the identity
term on B) or ``fastcut`` (NCE weight 10, no identity term, and the flip-equivariance
augmentation: with probability 1/2 the input is flipped left-right and the output's
features flipped back before PatchNCE); each can be overridden. D's loss is the usual
``d_loss_scale`` (0.5) times real and fake terms; there is no image pool.

Data and evaluation are CycleGAN's: ``trainA/`` and ``trainB/``; FID/KID of ``G(A)``
against the B images, beside the untranslated A as the baseline. Only ``G`` is exported:
``img2img predict`` and ``export`` use it as CycleGAN's ``G_A``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from img2img.errors import ConfigError
from img2img.losses import patch_nce_loss
from img2img.nets.contract import forward_padded
from img2img.tasks.base import Batch, Nets, Pool, to_unit
from img2img.tasks.cyclegan import CycleGANTask

#: The paper's settings of each mode: NCE weight, identity term, flip-equivariance.
MODES = {"cut": (1.0, True, False), "fastcut": (10.0, False, True)}


@dataclass
class CUTOptions:
    #: cut: NCE weight 1 and the identity NCE term; fastcut: weight 10, flip-equivariance.
    mode: str = field(default="cut", metadata={"choices": tuple(MODES)})
    #: Weight of PatchNCE (unset: the mode's, 1 or 10; 0 turns PatchNCE and the head off).
    nce_weight: float | None = field(default=None, metadata={"min": 0.0})
    #: The identity term NCE(B, G(B)) (unset: the mode's, on for cut).
    nce_idt: bool | None = None
    #: Flip-equivariance augmentation (unset: the mode's, on for fastcut).
    flip_equivariance: bool | None = None
    #: Generator layers PatchNCE reads, as ids of its flat layer list (the reference's).
    nce_layers: list[int] = field(default_factory=lambda: [0, 4, 8, 12, 16])
    #: Patches sampled per layer and image.
    num_patches: int = field(default=256, metadata={"min": 1, "max": 65536})
    #: Width of the projection head's MLPs.
    head_features: int = field(default=256, metadata={"min": 1, "max": 4096})
    #: Temperature of PatchNCE.
    temperature: float = field(default=0.07, metadata={"min": 0.001})


class CUTTask(CycleGANTask):
    """CUT / FastCUT; CycleGAN's unpaired data and evaluation hooks, its own networks and step."""

    name = "cut"
    Options = CUTOptions
    d_first = True
    uses_image_pool = False
    paired = False
    directions = {"AtoB": "G"}
    collapse_pairs = {"fake_B": "A"}

    # ------------------------------------------------------------------ config
    def read_options(self) -> CUTOptions:
        """The options with the mode's settings filled in where they are unset."""
        options = super().read_options()
        weight, idt, flip = MODES[options.mode]
        return dataclasses.replace(
            options,
            nce_weight=weight if options.nce_weight is None else options.nce_weight,
            nce_idt=idt if options.nce_idt is None else options.nce_idt,
            flip_equivariance=flip if options.flip_equivariance is None else options.flip_equivariance,
        )

    @property
    def collapse_hint(self) -> str:
        if self.options.nce_idt:
            return "a larger task_options.nce_weight holds the output closer to the input"
        return ("FastCUT's settings are known to collapse on some data sets: try task_options.mode=cut "
                "(its identity term on B) or a larger task_options.nce_weight")

    @property
    def visual_labels(self) -> tuple[str, ...]:
        return ("A", "G(A)", "B", "G(B)") if self.options.nce_idt else ("A", "G(A)", "B")

    # ------------------------------------------------------------------ networks
    def build_generators(self) -> Nets:
        from img2img.nets import build_generator

        gcfg = self.config.model.generator
        cin, cout = self.channels()
        net = build_generator(gcfg, cin, cout)
        if not callable(getattr(net, "check_feature_layers", None)):
            raise ConfigError(
                f"model.generator.name: the {self.name} task reads the generator's encoder layers, "
                f"which {gcfg.name} does not give; use resnet_9blocks_aa (or resnet_aa)"
            )
        net.check_feature_layers(self.options.nce_layers, "task_options.nce_layers")
        return {"G": net}

    def discriminator_channels(self) -> dict[str, int]:
        return {"D": self.channels()[1]}

    def build_extra_networks(self, G: Nets, first_batch) -> dict[str, Nets]:
        """The projection head ``F``, one MLP per layer read, its input widths those of the
        encoder's features of a first training batch; trained by G's optimizer and
        initialised like the generator (the reference's ``init_net`` on ``netF``)."""
        if self.options.nce_weight == 0:
            return {}
        from img2img.nets import init_weights
        from img2img.nets.projection import PatchProjectionHead

        feats = G["G"](first_batch()["A"], self.options.nce_layers)
        head = PatchProjectionHead.from_features(feats, self.options.head_features)
        gcfg = self.config.model.generator
        return {"G": {"F": init_weights(head, gcfg.init, gcfg.init_gain)}}

    # ------------------------------------------------------------------ training
    def forward(self, G: Nets, batch: Batch) -> Batch:
        """G on A (and on B for the identity term) in one batch, flipped left-right at
        random for flip-equivariance; then the PatchNCE terms, which need G's encoder and
        the head ``F`` (G-side networks the loss phases do not see)."""
        o = self.options
        A, B = batch["A"], batch["B"]
        real = torch.cat([A, B]) if o.nce_idt else A
        flipped = bool(o.flip_equivariance and torch.rand(()) < 0.5)
        keys = None
        if o.nce_weight > 0 and not o.flip_equivariance:  # the input's features come on the way
            fake, keys = G["G"](real, o.nce_layers, encode_only=False)
        else:
            fake = G["G"](real.flip(3) if flipped else real)
        n = A.shape[0]
        out = {"fake_B": fake[:n], "flipped": torch.tensor(flipped)}
        if o.nce_idt:
            out["idt_B"] = fake[n:]
        if o.nce_weight > 0:
            nce = self.patch_nce(G, real, fake, flipped, keys)
            out["nce"] = nce[0]
            if o.nce_idt:
                out["nce_idt"] = nce[1]
        return out

    def patch_nce(self, G: Nets, real: torch.Tensor, fake: torch.Tensor, flipped: bool,
                  keys: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """PatchNCE between ``real`` and ``fake`` (A, and B for the identity term), averaged
        over the layers; each term draws its own patch positions. The keys (the inputs'
        features) carry no gradient in the loss: they are the ones G's pass read on the
        way (``keys``), the same values as the reference's separate encoder pass; under
        flip-equivariance G may have seen the input flipped, so the keys get that separate
        pass, without gradient, at every step (each process draws its own flips, and DDP
        needs the same passes on every process)."""
        o = self.options
        queries = G["G"](fake, o.nce_layers)
        if flipped:
            queries = [q.flip(3) for q in queries]
        if keys is None:
            with torch.no_grad():
                keys = G["G"](real, o.nce_layers)
        keys = [k.detach() for k in keys]
        n = real.shape[0] // 2 if o.nce_idt else real.shape[0]
        terms = []
        for part in ((slice(0, n), slice(n, None)) if o.nce_idt else (slice(None),)):
            with torch.no_grad():
                k, where = G["F"]([f[part] for f in keys], o.num_patches)
            q, _ = G["F"]([f[part] for f in queries], o.num_patches, where)
            layers = [patch_nce_loss(qi, ki, n, o.temperature) for qi, ki in zip(q, k)]
            terms.append(torch.stack(layers).mean())
        return terms

    def generator_loss(self, D: Nets, batch: Batch, out: Batch) -> dict:
        terms = {}
        if "D" in D and self.config.loss.gan_weight > 0:
            terms |= self.g_adversarial(D["D"], out["fake_B"], batch["B"])
        weight = self.options.nce_weight
        if "nce_idt" in out:
            terms["NCE"] = 0.5 * weight * out["nce"]
            terms["NCE_idt"] = 0.5 * weight * out["nce_idt"]
        elif "nce" in out:
            terms["NCE"] = weight * out["nce"]
        return terms

    def discriminator_loss(self, D: Nets, batch: Batch, out: Batch, pool: Pool) -> dict:
        return self.d_terms(D["D"], batch["B"], out["fake_B"], "D")

    def visuals(self, batch: Batch, out: Batch) -> list[torch.Tensor]:
        """A, G(A), B (and G(B)); a flipped output is shown flipped back."""
        def shown(x):
            return x.flip(3) if bool(out["flipped"]) else x

        columns = [batch["A"], shown(out["fake_B"]), batch["B"]]
        return columns + [shown(out["idt_B"])] if "idt_B" in out else columns

    # ------------------------------------------------------------------ evaluation
    def evaluate_batch(self, G: Nets, batch: Batch) -> dict[str, torch.Tensor]:
        """``fake`` (G(A)) feeds FID/KID against the B images; the baseline is A itself."""
        A = batch["A"]
        return {"fake": to_unit(forward_padded(G["G"], A)), "baseline": to_unit(A)}
