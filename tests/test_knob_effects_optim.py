"""Every ``optim.*`` knob, shown by the parameter updates of a tiny real run.

The optimiser's pre/post step hooks keep each parameter before and after every step and the
gradient it received; the updates must follow the optimiser's published rule with the configured
name, lr, weight decay and momentum, and biases and BN parameters must get no weight decay under
``filter_bias_and_bn`` (and get it without). ``sched=none`` keeps the lr constant here; the
schedule's knobs are tests/test_knob_effects_sched.py.
"""

from __future__ import annotations

import pytest
import torch

from knob_runs import step_log, tiny_run

LR, WD, MOMENTUM = 0.05, 0.2, 0.5
COMMON = ("sched=none", "energy.enabled=false", f"optim.lr={LR}", f"optim.weight_decay={WD}")


def _no_decay(name: str, before: torch.Tensor) -> bool:
    """Biases and BN/1-D parameters: what ``filter_bias_and_bn`` exempts (timm's rule)."""
    return before.ndim <= 1 or name.endswith(".bias")


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("filter_bias_and_bn", [True, False])
def test_sgd_updates_follow_nesterov_momentum_with_the_configured_lr_decay_and_momentum(monkeypatch, filter_bias_and_bn):
    """timm's ``sgd`` is torch SGD with Nesterov momentum: d = g + wd p; b1 = d1, b2 = m b1 + d2;
    p <- p - lr (d + m b)."""
    log = step_log(monkeypatch)
    tiny_run(*COMMON, "optim=sgd", f"optim.momentum={MOMENTUM}", f"optim.filter_bias_and_bn={filter_bias_and_bn}")
    assert len(log) == 2
    exempt = decayed = 0
    for name, first in log[0]["params"].items():
        second = log[1]["params"][name]
        wd = 0.0 if filter_bias_and_bn and _no_decay(name, first["before"]) else WD
        assert first["weight_decay"] == second["weight_decay"] == wd, name
        assert first["lr"] == LR
        d1 = first["grad"] + wd * first["before"]
        b1 = d1
        assert _close(first["after"], first["before"] - LR * (d1 + MOMENTUM * b1)), name
        d2 = second["grad"] + wd * second["before"]
        b2 = MOMENTUM * b1 + d2
        assert _close(second["after"], second["before"] - LR * (d2 + MOMENTUM * b2)), name
        exempt += wd == 0.0
        decayed += wd == WD
    if filter_bias_and_bn:
        assert exempt >= 10 and decayed >= 5  # BN weights and biases, linear/conv weights
    else:
        assert exempt == 0


def test_adamw_first_step_is_lr_times_the_gradient_sign_plus_decoupled_decay(monkeypatch):
    """AdamW's first step (bias-corrected moments m = g, v = g^2): p <- p (1 - lr wd) - lr g / (|g| + eps)."""
    log = step_log(monkeypatch)
    tiny_run(*COMMON, "optim=adamw", "trainer.max_batches=1")
    assert len(log) == 1
    biases = 0
    for name, p in log[0]["params"].items():
        wd = 0.0 if _no_decay(name, p["before"]) else WD
        assert p["weight_decay"] == wd, name
        expected = p["before"] * (1 - LR * wd) - LR * p["grad"] / (p["grad"].abs() + 1e-8)
        assert torch.allclose(p["after"].double(), expected.double(), rtol=1e-4, atol=1e-6), name
        biases += wd == 0.0
    assert biases >= 10


def test_unknown_optimizer_name_is_a_config_error():
    from step.errors import ConfigError

    with pytest.raises(ConfigError, match="optim.name='nope' is not an optimizer timm knows"):
        tiny_run("optim.name=nope")
