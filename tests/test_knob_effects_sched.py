"""Every ``sched.*`` knob (``cooldown_epochs`` aside, being rewired by issue 20), shown by the lr the
optimiser holds at each step of a tiny real run (one step per epoch, so step t is epoch t).

Expected lrs come from the schedules' equations, not from timm: linear warmup from ``warmup_lr``
to ``optim.lr`` over ``warmup_epochs`` (lr_t = warmup_lr + t (lr - warmup_lr) / warmup_epochs),
then the cosine over the whole run (warmup not prefixed): lr_t = min_lr + (lr - min_lr)
(1 + cos(pi t / epochs)) / 2; ``none`` keeps ``optim.lr``.
"""

from __future__ import annotations

import math

import pytest

from knob_runs import step_log, tiny_run

LR, EPOCHS = 0.01, 5


def cosine(t: int, min_lr: float) -> float:
    return min_lr + 0.5 * (LR - min_lr) * (1 + math.cos(math.pi * t / EPOCHS))


def warm(t: int, warmup_lr: float, warmup: int) -> float:
    return warmup_lr + t * (LR - warmup_lr) / warmup


@pytest.mark.parametrize("name,warmup,warmup_lr,min_lr,expected", [
    ("cosine", 0, 1e-6, 1e-3, [cosine(t, 1e-3) for t in range(EPOCHS)]),
    ("cosine", 0, 1e-6, 4e-3, [cosine(t, 4e-3) for t in range(EPOCHS)]),  # min_lr moves the curve
    ("cosine", 2, 1e-4, 1e-3, [warm(0, 1e-4, 2), warm(1, 1e-4, 2)] + [cosine(t, 1e-3) for t in range(2, EPOCHS)]),
    ("cosine", 3, 2e-3, 1e-3, [warm(t, 2e-3, 3) for t in range(3)] + [cosine(t, 1e-3) for t in range(3, EPOCHS)]),
    ("none", 0, 1e-6, 1e-3, [LR] * EPOCHS),
])
def test_lr_at_each_step_follows_the_schedule(monkeypatch, name, warmup, warmup_lr, min_lr, expected):
    log = step_log(monkeypatch)
    record = tiny_run(f"sched.name={name}", f"sched.warmup_epochs={warmup}", f"sched.warmup_lr={warmup_lr}",
                      f"sched.min_lr={min_lr}", f"optim.lr={LR}", f"trainer.epochs={EPOCHS}",
                      "trainer.max_batches=1", "trainer.eval_every=100", "energy.enabled=false")
    lrs = [entry["lr"] for entry in log]
    assert len(lrs) == EPOCHS and all(len(set(group)) == 1 for group in lrs)  # every group at one lr
    assert [g[0] for g in lrs] == pytest.approx(expected, rel=1e-9)
    assert [row["lr"] for row in record["history"]] == pytest.approx(expected, rel=1e-9)  # the record says the same


def test_unknown_scheduler_name_is_a_config_error():
    from step.errors import ConfigError

    with pytest.raises(ConfigError, match="sched.name='nope' is not a scheduler timm knows"):
        tiny_run("sched.name=nope")
