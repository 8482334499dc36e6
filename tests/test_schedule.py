"""Schedules and optimisers through real tiny runs: the lr the optimiser holds at every step.

Expected values come from the schedule equations (linear warmup from ``warmup_lr``, then
``min + (lr - min)(1 + cos(pi t / t_total)) / 2``, then ``min_lr`` during cooldown), not from timm.
"""

from __future__ import annotations

import math

import pytest
import torch

from step.config import compose
from step.engine import run
from step.errors import ConfigError

BASE = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.batch_size=16", "trainer.progress=false",
        "energy.enabled=false", "dataset.test_fraction=0.05"]


@pytest.fixture
def lrs():
    """The lr of the first param group, and the optimiser's class, at every optimizer.step()."""
    seen = []

    def hook(optimizer, args, kwargs):
        seen.append((optimizer.param_groups[0]["lr"], type(optimizer), dict(optimizer.defaults)))

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(hook)
    yield seen
    handle.remove()


def cosine(t, total, lr, min_lr):
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t / total))


def test_the_run_trains_epochs_plus_cooldown_at_min_lr(lrs):
    record = run(compose([*BASE, "trainer.epochs=2", "sched.cooldown_epochs=2", "trainer.max_batches=1",
                          "optim.lr=0.01", "sched.min_lr=0.001"]))
    assert record["epochs_done"] == 4 and len(record["history"]) == 4
    assert record["schedule"]["epochs"] == 4 and record["schedule"]["trainer_epochs"] == 2
    seen = [lr for lr, _, _ in lrs]
    assert seen == pytest.approx([0.01, cosine(1, 2, 0.01, 0.001), 0.001, 0.001])  # per epoch; epochs 2-3 cool down


def test_per_iteration_schedule_warms_up_and_decays_every_step(lrs):
    record = run(compose([*BASE, "trainer.epochs=2", "trainer.max_batches=4", "sched.per_iteration=true",
                          "sched.warmup_epochs=1", "sched.warmup_lr=0.0001", "optim.lr=0.01", "sched.min_lr=0.0"]))
    assert record["schedule"]["per_iteration"] and record["schedule"]["updates_per_epoch"] == 4
    seen = [lr for lr, _, _ in lrs]
    # update t (0-based, 4 per epoch): warmup over 4 updates, then cosine over all 8
    expected = [0.0001 + t * (0.01 - 0.0001) / 4 for t in range(4)] + [cosine(t, 8, 0.01, 0.0) for t in range(4, 8)]
    assert seen == pytest.approx(expected)


def test_per_epoch_schedule_holds_the_lr_within_an_epoch(lrs):
    run(compose([*BASE, "trainer.epochs=2", "trainer.max_batches=3", "optim.lr=0.01", "sched.min_lr=0.0"]))
    seen = [lr for lr, _, _ in lrs]
    assert seen == pytest.approx([0.01] * 3 + [cosine(1, 2, 0.01, 0.0)] * 3)


def test_lr_base_batch_scales_the_lr_by_the_global_batch(lrs):
    record = run(compose([*BASE, "trainer.epochs=1", "trainer.max_batches=1", "sched=none", "optim.lr=0.001",
                          "optim.lr_base_batch=8"]))
    assert [lr for lr, _, _ in lrs] == pytest.approx([0.002])  # 0.001 x 16 / 8
    assert record["schedule"]["lr"] == pytest.approx(0.002)


def test_lamb_is_timm_lamb_with_its_trust_clip(lrs):
    from timm.optim import Lamb

    run(compose([*BASE, "optim=lamb", "optim.trust_clip=true", "optim.lr=0.003", "sched=none", "trainer.epochs=1",
                 "trainer.max_batches=1"]))
    (lr, kind, defaults), = lrs
    assert kind is Lamb and defaults["trust_clip"] is True and lr == pytest.approx(0.003)


@pytest.mark.parametrize("overrides,fragment", [
    (["optim.momentum=0.9"], "does not apply to optim.name=adamw"),
    (["optim=sgd", "optim.trust_clip=true"], "does not apply to optim.name=sgd"),
    (["sched=none", "sched.cooldown_epochs=3"], "sched=none keeps the lr constant"),
])
def test_optimizer_and_schedule_settings_that_cannot_act_are_refused(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        run(compose([*BASE, "trainer.epochs=1", "trainer.max_batches=1", *overrides]))
