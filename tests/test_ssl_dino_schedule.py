"""DINO at the budget it is given (issue 20.5): the teacher momentum base from the run length leaves the teacher
at most 5 % of its random init; warm-ups as shares of the run."""

from __future__ import annotations

import math

import pytest
import torch

from model_fakes import register_fakes
from rtsseg.schedule import cosine_scheduler
from rtsseg.ssl.dino_schedule import (DINO_MOMENTUM, momentum_schedule, same_share, teacher_momentum_base,
                                      teacher_retention)

register_fakes()


def _hand_product(base: float, total: int) -> float:
    """prod_t m_t with m_t = 1 - (1 - base) (1 + cos(pi t / T)) / 2, the official cosine base -> 1, in a loop."""
    p = 1.0
    for t in range(total):
        p *= 1 - (1 - base) * (1 + math.cos(math.pi * t / total)) / 2
    return p


@pytest.mark.parametrize("base,total", [(0.996, 300), (0.9, 12), (0.5, 7)])
def test_retention_is_the_product_of_the_momenta(base, total):
    schedule = momentum_schedule(base, total)
    assert schedule[0] == base and schedule[-1] < 1 and list(schedule) == list(cosine_scheduler(base, 1.0, total))
    assert teacher_retention(schedule) == pytest.approx(_hand_product(base, total), rel=1e-12)
    assert teacher_retention([1.0, 0.5, 0.5]) == 0.25 and teacher_retention([0.0, 1.0]) == 0.0


@pytest.mark.parametrize("total", [12, 312, 1000, 1833, 20_000])
def test_base_from_the_run_length_leaves_at_most_five_percent_and_is_the_largest_that_does(total):
    base = teacher_momentum_base(total)
    assert _hand_product(base, total) <= 0.05
    assert _hand_product(min(base + 1e-6, DINO_MOMENTUM), total) > 0.05 or base == DINO_MOMENTUM
    if base < DINO_MOMENTUM:  # independent estimate: sum_t (1 - m_t) = (1 - base)(T + 1)/2, log(1 - d) ~ -d
        assert 1 - base == pytest.approx(2 * math.log(20) / (total + 1), rel=0.25)
    else:  # DINO's own base already leaves less than 5 %
        assert _hand_product(DINO_MOMENTUM, total) <= 0.05


def test_long_runs_keep_dinos_base_and_short_ones_lower_it():
    assert teacher_momentum_base(125_000) == DINO_MOMENTUM  # 100 ImageNet epochs: 0.996 forgets the init anyway
    assert _hand_product(DINO_MOMENTUM, 300) > 0.5  # 0.996 over a CPU chapter's ~300 steps keeps half of it
    assert teacher_momentum_base(300) < 0.99
    with pytest.raises(ValueError, match="total_steps"):
        teacher_momentum_base(0)


def test_same_share_scales_a_warmup_to_another_run_length():
    assert same_share(0.5, 2, 1) == 0.25 and same_share(5.0, 100, 47) == pytest.approx(2.35)
    assert same_share(30, 100, 47) / 47 == pytest.approx(30 / 100)
    with pytest.raises(ValueError, match="bt_epochs"):
        same_share(1, 0, 3)


def test_dino_method_builds_its_schedules_from_the_run(tmp_path):
    """The method's per-step schedules: momentum base from the run length unless fixed, warm-ups in steps."""
    from rtsseg.ssl.distributed import DistInfo
    from rtsseg.ssl.dino_train import DinoConfig, DinoMethod
    from rtsseg.ssl.method import Context

    ctx = Context(DistInfo(0, 1, 0, torch.device("cpu")), None, steps_per_epoch=6, total_steps=12, run=None)
    kw = dict(backbone="tiny_test", image_size=32, n_local_crops=1, out_dim=16, hidden_dim=8, bottleneck_dim=8,
              batch_size=8, lr=0.01, warmup_epochs=0.5, warmup_teacher_temp=0.04, teacher_temp=0.07,
              warmup_teacher_temp_epochs=1.0)
    derived, fixed = DinoMethod(DinoConfig(**kw)), DinoMethod(DinoConfig(momentum_teacher=0.99, **kw))
    derived.build(ctx), fixed.build(ctx)
    assert derived.momentum[0] == teacher_momentum_base(12) and fixed.momentum[0] == 0.99
    assert teacher_retention(derived.momentum) <= 0.05 < teacher_retention(fixed.momentum)
    peak = 0.01 * 8 / 256
    assert list(derived.lr[:3]) == pytest.approx([0, peak / 2, peak])  # 0.5 of 6 steps: 3 warm-up steps
    temps = [derived.loss.teacher_temp_at(i) for i in range(12)]
    assert temps[:6] == pytest.approx([0.04 + 0.006 * i for i in range(6)]) and set(temps[5:]) == {0.07}
