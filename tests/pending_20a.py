"""Settings whose keys the loop half of issue 20 (branch issue-20a) adds: the recipe cards already
hold them. Until that branch is merged a card that sets one does not compose or validate; tests
that meet such a card mark it xfail with this reason, and run in full once the keys exist."""

from __future__ import annotations

import pytest

from step.config.schema import SchedConf

#: the keys of RECIPE_KEYS.md owned by 20a (``sched.per_iteration`` stands for all: one merge brings them)
MERGED = "per_iteration" in SchedConf.__dataclass_fields__
KEYS = ("dataset.mixup_prob", "dataset.mixup_switch_prob", "dataset.mixup_mode", "dataset.mixup_off_epoch",
        "dataset.mixup", "dataset.cutmix", "dataset.label_smoothing", "task.loss", "task.tet_lambda",
        "task.tet_means", "model.pooling", "model.distill_head", "sched.per_iteration", "optim.lr_base_batch",
        "optim.trust_clip", "optim=lamb", "kd")
#: how a missing 20a key shows up in a composition or validation error
_MARKS = ("'mixup", "'cutmix'", "'label_smoothing'", "'pooling'", "'distill_head'", "'loss'", "'tet_", "per_iteration",
          "lr_base_batch", "trust_clip", "optim/lamb", "kd")
REASON = "needs issue-20a's keys (tests/pending_20a.py)"


def is_pending(err: BaseException) -> bool:
    """True when ``err`` is a config error about a key 20a adds and that branch is not merged."""
    text = f"{type(err).__name__}: {err}"
    return not MERGED and any(mark in text for mark in _MARKS)


def xfail_if_pending(err: BaseException) -> None:
    if is_pending(err):
        pytest.xfail(f"{REASON}: {str(err).splitlines()[0][:160]}")
