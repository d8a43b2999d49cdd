"""The classic reference's training step as a plain loop: the benchmark's ``classic`` mode.

Written as the classic pix2pix/CycleGAN reference code writes it (its order of passes:
pix2pix's D step then G step re-scoring the fake; CycleGAN's G step, then D_A and D_B with
a per-image Python image pool; PyTorch's default Adam, float32), on a trainer's networks
and optimizer settings but with none of the engine: no Accelerate, no loss bookkeeping, no
finiteness checks. ``tests/test_bench.py`` checks that the engine's step computes the same.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

CLASSIC_TASKS = ("pix2pix", "colorization", "cyclegan")
POOL_SIZE = 50


def classic_step(trainer, task: str):
    """A training step on ``trainer``'s networks, with optimizers of its settings; returns
    ``step(batch)`` for prepared batches (``trainer.task.prepare``)."""
    if task not in CLASSIC_TASKS:
        raise SystemExit(f"bench train: the classic step is written for pix2pix, colorization "
                         f"and cyclegan, not {task}")
    G, D = trainer.nets.G, trainer.nets.D
    t = trainer.config.train
    opt_G = torch.optim.Adam([p for n in G.values() for p in n.parameters()], lr=t.lr_g, betas=tuple(t.betas))
    opt_D = torch.optim.Adam([p for n in D.values() for p in n.parameters()], lr=t.lr_d, betas=tuple(t.betas))
    if task == "cyclegan":
        return _cyclegan_step(G, D, opt_G, opt_D)
    return _pix2pix_step(G["G"], D["D"], opt_G, opt_D)


def _grad(nets, on: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad = on


def _bce(pred, real):
    return F.binary_cross_entropy_with_logits(pred, torch.full_like(pred, float(real)))


def _mse(pred, real):
    return F.mse_loss(pred, torch.full_like(pred, float(real)))


def _pix2pix_step(g, d, opt_G, opt_D):
    """pix2pix (and colorization): D on (A, fake) and (A, B), then G: GAN + 100 x L1."""

    def step(batch):
        A, B = batch["A"], batch["B"]
        fake = g(A)
        _grad([d], True)
        opt_D.zero_grad()
        fake_AB = torch.cat([A, fake], 1)
        loss_D = 0.5 * (_bce(d(fake_AB.detach()), 0) + _bce(d(torch.cat([A, B], 1)), 1))
        loss_D.backward()
        opt_D.step()
        _grad([d], False)
        opt_G.zero_grad()
        loss_G = _bce(d(fake_AB), 1) + 100 * F.l1_loss(fake, B)
        loss_G.backward()
        opt_G.step()

    return step


def _query(pool: list, images, rng: random.Random):
    """The reference's image pool, one image at a time: while it fills, an image goes in and
    out; then half the time an image swaps places with a random stored one."""
    out = []
    for image in images:
        image = image.detach().unsqueeze(0)
        if len(pool) < POOL_SIZE:
            pool.append(image)
            out.append(image)
        elif rng.random() > 0.5:
            i = rng.randrange(POOL_SIZE)
            out.append(pool[i].clone())
            pool[i] = image
        else:
            out.append(image)
    return torch.cat(out, 0)


def _cyclegan_step(G, D, opt_G, opt_D):
    """CycleGAN: G (LSGAN + 10 x cycle + 5 x identity), then D_A and D_B on pooled fakes."""
    ga, gb, da, db = G["G_A"], G["G_B"], D["D_A"], D["D_B"]
    pools: dict[str, list] = {"A": [], "B": []}
    rng = random.Random(0)  # one generator for both pools, as in the reference

    def step(batch):
        A, B = batch["A"], batch["B"]
        fake_B = ga(A)
        rec_A = gb(fake_B)
        fake_A = gb(B)
        rec_B = ga(fake_A)
        _grad([da, db], False)
        opt_G.zero_grad()
        idt_A, idt_B = ga(B), gb(A)
        loss_G = (_mse(da(fake_B), 1) + _mse(db(fake_A), 1)
                  + 10 * F.l1_loss(rec_A, A) + 10 * F.l1_loss(rec_B, B)
                  + 5 * F.l1_loss(idt_A, B) + 5 * F.l1_loss(idt_B, A))
        loss_G.backward()
        opt_G.step()
        _grad([da, db], True)
        opt_D.zero_grad()
        for d, real, fake, pool in ((da, B, fake_B, pools["A"]), (db, A, fake_A, pools["B"])):
            fake = _query(pool, fake, rng)
            (0.5 * (_mse(d(real), 1) + _mse(d(fake.detach()), 0))).backward()
        opt_D.step()

    return step
