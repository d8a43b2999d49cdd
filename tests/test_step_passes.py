"""How much work one training step does: forward and backward passes per network, backward
calls, and the order of the optimizer updates, per task (tiny networks, one thread).

Expected counts follow the task code and the reference algorithms:

- pix2pix / colorization (D before G): G runs once (the fake is reused, detached, by the D
  step); D runs on (A, B) and (A, fake) in the D step and on (A, fake) again in the G step,
  after D's update: 3 forwards. Gradients flow back through G once and through D three
  times (twice with weight gradients, once only to its input); two ``backward`` calls.
- CycleGAN (G before D): G_A makes fake_B, rec_B and (identity on) idt_A, G_B likewise:
  3 forwards each, all reached by the one G backward. D_A scores fake_B in the G step and
  real B plus the pooled fake in the D step: 3 forwards and 3 backward passes; D_B alike.
- SRGAN (G before D): G once, D 3 times, VGG twice (SR and HR; the HR features carry no
  gradient, so only one backward pass through VGG). The PSNR stage (no D) is G once and
  one ``backward``.

A pass done twice (e.g. the fake recomputed for the D step) fails these exact counts.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from img2img.config import load_config
from img2img.engine import Trainer
from tests.tiny import tiny_overrides


def _outputs(out):
    if isinstance(out, torch.Tensor):
        return [out]
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else []
    return [t for t in values if isinstance(t, torch.Tensor)]


class PassCounter:
    """Counts forward calls of each named module, gradient arrivals at their outputs
    (backward passes through them), ``accelerator.backward`` calls, and optimizer steps."""

    def __init__(self, trainer: Trainer) -> None:
        self.forward: Counter = Counter()
        self.backward: Counter = Counter()
        self.events: list[str] = []
        nets = {**trainer.nets.G, **trainer.nets.D}
        if trainer.task.perceptual is not None:
            nets["VGG"] = trainer.task.perceptual.vgg
        for name, net in nets.items():
            net.register_forward_hook(self._forward_hook(name))
        acc = trainer.accelerator
        plain_backward = acc.backward

        def backward(loss, **kwargs):
            self.events.append("backward")
            return plain_backward(loss, **kwargs)

        acc.backward = backward
        for side, opt in (("G", trainer.optim.G), ("D", trainer.optim.D)):
            if opt is not None:
                opt.register_step_pre_hook(lambda *_, side=side: self.events.append(f"step {side}"))

    def _forward_hook(self, name):
        def hook(module, args, out):
            self.forward[name] += 1
            for tensor in _outputs(out):
                if tensor.requires_grad:
                    tensor.register_hook(lambda grad, name=name: self.backward.update([name]))
        return hook


def one_step(task, data, out, *extra):
    trainer = Trainer(load_config(None, tiny_overrides(task, data, out, *extra)))
    counter = PassCounter(trainer)
    trainer.train_step(trainer.batches())
    return trainer, counter


PIX2PIX = {"forward": {"G": 1, "D": 3}, "backward": {"G": 1, "D": 3},
           "events": ["backward", "step D", "backward", "step G"]}

CASES = {
    "pix2pix": ("pix2pix", [], PIX2PIX),
    "colorization": ("colorization", [], PIX2PIX),
    "cyclegan": ("cyclegan", [], {
        "forward": {"G_A": 3, "G_B": 3, "D_A": 3, "D_B": 3},
        "backward": {"G_A": 3, "G_B": 3, "D_A": 3, "D_B": 3},
        "events": ["backward", "step G", "backward", "step D"],
    }),
    "cyclegan_no_identity": ("cyclegan", ["loss.identity_weight=0"], {
        "forward": {"G_A": 2, "G_B": 2, "D_A": 3, "D_B": 3},
        "backward": {"G_A": 2, "G_B": 2, "D_A": 3, "D_B": 3},
        "events": ["backward", "step G", "backward", "step D"],
    }),
    "srgan": ("srgan", ["loss.perceptual_weight=1", "loss.vgg_weights=none",
                        "loss.perceptual_layers.conv5_4=0", "loss.perceptual_layers.conv2_2=1"], {
        "forward": {"G": 1, "D": 3, "VGG": 2},
        "backward": {"G": 1, "D": 3, "VGG": 1},
        "events": ["backward", "step G", "backward", "step D"],
    }),
    "srgan_psnr_stage": ("srgan", ["model.discriminator.name=none"], {
        "forward": {"G": 1}, "backward": {"G": 1}, "events": ["backward", "step G"],
    }),
    # WGAN-GP adds exactly one D pass (on the real/fake mix) to the D step.
    "pix2pix_wgangp": ("pix2pix", ["loss.gan_mode=wgangp"], {
        "forward": {"G": 1, "D": 4}, "backward": {"G": 1, "D": 4},
        "events": ["backward", "step D", "backward", "step G"],
    }),
}


@pytest.mark.parametrize("case", list(CASES))
def test_passes_per_step(case, task_data, tmp_path):
    task, extra, expected = CASES[case]
    _, counter = one_step(task, task_data[task], tmp_path / "run", *extra)
    assert dict(counter.forward) == expected["forward"]
    assert dict(counter.backward) == expected["backward"]
    assert counter.events == expected["events"]


def test_grad_accumulation_repeats_the_passes_per_micro_batch(task_data, tmp_path):
    _, counter = one_step("pix2pix", task_data["pix2pix"], tmp_path / "run", "train.grad_accum=2")
    assert dict(counter.forward) == {"G": 2, "D": 6}
    assert dict(counter.backward) == {"G": 2, "D": 6}
    # One backward per side and micro-batch; each optimizer steps once, at the last one.
    assert counter.events == ["backward", "backward", "backward", "step D", "backward", "step G"]


def test_skipped_nonfinite_step_changes_no_weights(task_data, tmp_path):
    """The non-finite check runs after the backward is queued: the step must still leave
    every weight and optimizer state as it was, and no gradient behind."""
    trainer = Trainer(load_config(None, tiny_overrides(
        "pix2pix", task_data["pix2pix"], tmp_path / "run", "train.skip_nonfinite=true")))
    batches = trainer.batches()
    trainer.train_step(batches)  # one good step, so the optimizers hold state
    before = {n: {k: v.clone() for k, v in net.state_dict().items()} for n, net in {**trainer.nets.G, **trainer.nets.D}.items()}
    opt_before = [len(trainer.optim.G.state), len(trainer.optim.D.state)]
    steps_before = [int(s["step"]) for s in trainer.optim.D.state.values()]

    discriminator_loss = trainer.task.discriminator_loss

    def poisoned(*args, **kwargs):
        terms = discriminator_loss(*args, **kwargs)
        terms["D_fake"] = terms["D_fake"] * float("nan")
        return terms

    trainer.task.discriminator_loss = poisoned
    trainer.train_step(batches)
    assert trainer.nonfinite_skipped == 1
    for name, net in {**trainer.nets.G, **trainer.nets.D}.items():
        for key, value in net.state_dict().items():
            if value.dtype.is_floating_point:  # BN running stats moved in the forward; weights did not
                if "running" in key:
                    continue
                assert torch.equal(value, before[name][key]), f"{name}.{key} changed"
        assert all(p.grad is None for p in net.parameters()), name
    assert [len(trainer.optim.G.state), len(trainer.optim.D.state)] == opt_before
    assert [int(s["step"]) for s in trainer.optim.D.state.values()] == steps_before
