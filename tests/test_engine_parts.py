"""Sampler, image pool, EMA and LR schedules: the pieces the trainer is built from."""

from __future__ import annotations

import math

import pytest
import torch

from img2img.config import TrainConfig
from img2img.engine.ema import EMA
from img2img.engine.pool import ImagePool
from img2img.engine.sampling import ShardedSeededSampler
from img2img.engine.schedules import build_scheduler, cosine_restarts, linear_decay, multistep


def epoch_items(sampler, epoch, start=0):
    sampler.set_epoch(epoch, start_batch=start)
    return list(sampler)


def test_sampler_shards_cover_the_epoch_without_overlap():
    n, batch, world = 10, 2, 2
    samplers = [ShardedSeededSampler(n, batch, seed=3, rank=r, world_size=world) for r in range(world)]
    assert samplers[0].batches_per_epoch == 3  # ceil(10 / 4)
    items = [epoch_items(s, 0) for s in samplers]
    assert all(len(i) == 6 for i in items)
    indices = [idx for part in items for idx, _ in part]
    assert set(indices) == set(range(n))  # every image seen; 2 repeats pad the last batch
    # Global batch b = rank 0's b-th pair, then rank 1's: the first 8 positions are distinct.
    first8 = items[0][:2] + items[1][:2] + items[0][2:4] + items[1][2:4]
    assert len({idx for idx, _ in first8}) == 8


def test_sampler_is_seeded_and_changes_per_epoch():
    a = ShardedSeededSampler(8, 2, seed=5)
    b = ShardedSeededSampler(8, 2, seed=5)
    assert epoch_items(a, 0) == epoch_items(b, 0)
    assert epoch_items(a, 0) != epoch_items(a, 1)
    assert epoch_items(a, 0) != epoch_items(ShardedSeededSampler(8, 2, seed=6), 0)
    seeds = [s for _, s in epoch_items(a, 0)]
    assert len(set(seeds)) == len(seeds)


def test_sampler_resume_skips_exactly_the_consumed_batches():
    s = ShardedSeededSampler(9, 2, seed=0, rank=1, world_size=2)
    full = epoch_items(s, 4)
    assert epoch_items(s, 4, start=2) == full[4:]
    assert len(s) == len(full) - 4


def test_pool_fills_then_mixes_history():
    torch.manual_seed(0)
    pool = ImagePool(4, seed=0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: returned as they are
    new = torch.full((64, 1, 1, 1), 100.0)
    out = pool.query(new)
    from_history = (out != 100).sum().item()
    assert 16 < from_history < 48  # about half come from the pool
    assert (pool.images == 100).any()  # swapped-in images are stored


def test_pool_size_zero_is_passthrough_and_state_round_trips():
    x = torch.randn(3, 2, 4, 4)
    assert torch.equal(ImagePool(0).query(x), x)
    pool = ImagePool(2, seed=1)
    pool.query(torch.randn(2, 1, 2, 2))
    clone = ImagePool(2, seed=99)
    clone.load_state_dict(pool.state_dict(), torch.device("cpu"))
    batch = torch.randn(5, 1, 2, 2)
    assert torch.equal(pool.query(batch), clone.query(batch))


def test_pool_rejects_a_new_image_size():
    pool = ImagePool(2)
    pool.query(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="one size"):
        pool.query(torch.zeros(1, 3, 4, 4))


def test_ema_moves_towards_the_weights():
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, decay=0.9)
    start = ema.model.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    assert torch.allclose(ema.model.weight, start + 0.1)
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_linear_decay_matches_the_reference_rule():
    # 100 constant + 100 decay "epochs" (epoch_count 1): factor 1 for epochs 0..99, then
    # 1 - (e + 1 - 100) / 101 down to 1/101 in the last epoch.
    assert linear_decay(0, 200, 100) == 1.0
    assert linear_decay(99, 200, 100) == 1.0
    assert linear_decay(100, 200, 100) == pytest.approx(1 - 1 / 101)
    assert linear_decay(150, 200, 100) == pytest.approx(1 - 51 / 101)
    assert linear_decay(199, 200, 100) == pytest.approx(1 / 101)
    assert linear_decay(150, 200, None) == pytest.approx(1 - 51 / 101)  # default: half way


def test_multistep_and_cosine_restarts():
    assert multistep(49, [50, 100], 0.5) == 1.0
    assert multistep(50, [50, 100], 0.5) == 0.5
    assert multistep(150, [50, 100], 0.5) == 0.25
    assert cosine_restarts(0, [10, 10], [1, 0.5], 0.0) == pytest.approx(1.0)
    assert cosine_restarts(5, [10, 10], [1, 0.5], 0.0) == pytest.approx(0.5)
    assert cosine_restarts(10, [10, 10], [1, 0.5], 0.0) == pytest.approx(0.5)  # restart at weight 0.5
    assert cosine_restarts(15, [10, 10], [1, 0.5], 0.0) == pytest.approx(0.25)
    assert cosine_restarts(25, [10, 10], [1, 0.5], 0.1) == pytest.approx(0.1)


def test_scheduler_steps_the_optimizer_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=2e-4)
    train = TrainConfig(max_steps=10, scheduler="cosine", cosine_periods=[10], eta_min=1e-7)
    sched = build_scheduler(opt, train, 2e-4)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(2e-4)
    expected = 1e-7 + 0.5 * (2e-4 - 1e-7) * (1 + math.cos(math.pi * 5 / 10))
    assert lrs[5] == pytest.approx(expected)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_pool_is_deterministic_when_two_images_draw_one_slot():
    results = []
    for _ in range(3):
        pool = ImagePool(1, seed=4)  # one slot: every swap of a batch draws it
        pool.query(torch.zeros(1, 1, 2, 2))
        batch = torch.arange(1.0, 65.0).view(64, 1, 1, 1).expand(64, 1, 2, 2).contiguous()
        out = pool.query(batch)
        results.append((out.clone(), pool.images.clone()))
    for out, stored in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(stored, results[0][1])
    swapped = (results[0][0] == 0).all(dim=(1, 2, 3))
    last = int(torch.nonzero(swapped).max()) + 1  # values are 1-based
    assert float(results[0][1].flatten()[0]) == last  # the last image that drew the slot is kept
