"""Data orders: independent per (seed, epoch), DistributedSampler sharding, per-step generators."""

from __future__ import annotations

import torch

from rtsseg.sampling import batch_indices, epoch_permutation, step_generator


def test_orders_are_independent_across_seeds_and_epochs():
    n = 50
    assert torch.equal(epoch_permutation(n, 3, 2), epoch_permutation(n, 3, 2))
    orders = {(s, e): epoch_permutation(n, s, e) for s in range(4) for e in range(4)}
    keys = list(orders)
    for i, a in enumerate(keys):
        assert sorted(orders[a].tolist()) == list(range(n))
        for b in keys[i + 1 :]:
            assert not torch.equal(orders[a], orders[b]), (a, b)
    # the old seeding (seed + epoch) made seed s at epoch e replay seed s+1 at epoch e-1
    for s in range(3):
        for e in range(1, 4):
            assert not torch.equal(epoch_permutation(n, s, e), epoch_permutation(n, s + 1, e - 1))


def test_batches_shard_like_distributed_sampler():
    p0 = epoch_permutation(20, 0, 0)
    global_batch = batch_indices(p0, 1, 8, 0, 1)
    shards = [batch_indices(p0, 1, 8, r, 2) for r in range(2)]
    assert sorted(torch.cat(shards).tolist()) == sorted(global_batch.tolist())
    assert torch.equal(shards[1], p0[1::2][4:8])


def test_step_generators_depend_only_on_their_keys():
    a = torch.rand(4, generator=step_generator(0, 5, 0))
    assert torch.equal(a, torch.rand(4, generator=step_generator(0, 5, 0)))
    for other in (step_generator(1, 5, 0), step_generator(0, 6, 0), step_generator(0, 5, 1), step_generator(0, 5, 0, 1)):
        assert not torch.equal(a, torch.rand(4, generator=other))
