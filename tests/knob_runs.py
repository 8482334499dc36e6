"""Shared helpers of the knob-effect tests (tests/test_knob_effects_*.py): a tiny real run of the
runner, and ways to watch what that run does (the model it trains, the optimiser it steps, the
batches its forward receives) without changing it."""

from __future__ import annotations

import importlib
from typing import Any, Callable

import torch
from torch import nn

from step.config import compose
from step.engine import run

builders = importlib.import_module("step.engine.builders")
run_module = importlib.import_module("step.engine.run")

#: Spikformer-1-16 on 5% of the digits (90 test images), 2 batches of 16 per epoch, T = 2
TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.epochs=1", "trainer.max_batches=2",
        "trainer.batch_size=16", "trainer.eval_batch_size=32", "trainer.progress=false",
        "dataset.test_fraction=0.05", "logger=none"]


def tiny_run(*extra: str) -> dict[str, Any]:
    """One real run of ``step.engine.run`` at tiny size; ``extra`` overrides come last. Another
    ``dataset=`` keeps that dataset's own split (not every dataset has ``test_fraction``)."""
    base = [o for o in TINY if not (o.startswith("dataset.") and any(e.startswith("dataset=") for e in extra))]
    return run(compose([*base, *extra]))


def on_model(monkeypatch, callback: Callable[[nn.Module], None]) -> None:
    """Call ``callback(model)`` on every model the runner builds (before training starts)."""
    real = builders.build_model

    def build_and_watch(cfg, bundle):
        model = real(cfg, bundle)
        callback(model)
        return model

    monkeypatch.setattr(builders, "build_model", build_and_watch)


def cumulative_bn(model: nn.Module) -> None:
    """BN running statistics as the plain average of the batches seen (momentum None), so a model
    trained on two batches already normalises like its training batches at evaluation and its
    neurons fire (with momentum 0.1 the running variance is still near 1 and nothing fires)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None


def record_inputs(model: nn.Module, seen: list) -> None:
    """Append ``(training, input)`` for every forward call of ``model`` (its first argument)."""
    model.register_forward_pre_hook(lambda m, args: seen.append((m.training, args[0].detach().clone())))


def on_optimizer(monkeypatch, callback: Callable[[torch.optim.Optimizer, nn.Module], None]) -> None:
    """Call ``callback(optimizer, model)`` on the optimiser the runner builds."""
    real = builders.build_optimizer

    def build_and_watch(cfg, model):
        optimizer = real(cfg, model)
        callback(optimizer, model)
        return optimizer

    monkeypatch.setattr(builders, "build_optimizer", build_and_watch)


def step_log(monkeypatch) -> list[dict[str, Any]]:
    """One entry per optimiser step of the run: lr of each group, the gradient norm the optimiser
    receives, and each parameter's value before and after the step with its group's settings."""
    log: list[dict[str, Any]] = []

    def watch(optimizer, model):
        names = {id(p): n for n, p in model.named_parameters()}

        def pre(opt, args, kwargs):
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            entry = {"lr": [g["lr"] for g in opt.param_groups],
                     "grad_norm": float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))),
                     "params": {}}
            for g in opt.param_groups:
                for p in g["params"]:
                    if p.grad is not None:
                        entry["params"][names[id(p)]] = {"before": p.detach().clone(), "grad": p.grad.detach().clone(),
                                                         "weight_decay": g["weight_decay"], "lr": g["lr"], "param": p}
            log.append(entry)

        def post(opt, args, kwargs):
            for value in log[-1]["params"].values():
                value["after"] = value.pop("param").detach().clone()

        optimizer.register_step_pre_hook(pre)
        optimizer.register_step_post_hook(post)

    on_optimizer(monkeypatch, watch)
    return log
