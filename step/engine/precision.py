"""Numeric precision and compilation: ``trainer.precision=32|bf16|fp16`` and ``trainer.compile``.

- ``32``: plain float32.
- ``bf16``: ``torch.autocast`` to bfloat16 (CUDA and CPU); no loss scaling is needed because
  bfloat16 keeps float32's exponent range.
- ``fp16``: ``torch.autocast`` to float16 with a ``GradScaler`` (dynamic loss scaling, Micikevicius
  et al. 2018, "Mixed Precision Training"); CUDA only.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

from step.errors import ConfigError


def check_precision(precision: str, device: torch.device) -> None:
    if str(precision) == "fp16" and device.type != "cuda":
        raise ConfigError(f"trainer.precision=fp16 needs CUDA (autocast + GradScaler) but this run is on "
                          f"{device.type}; use trainer.precision=bf16 or 32 on CPU.")


def autocast_factory(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A zero-argument callable giving the autocast context of one forward pass."""
    if str(precision) == "32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if str(precision) == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    return torch.amp.GradScaler("cuda") if str(precision) == "fp16" and device.type == "cuda" else None


def set_neuron_compilation(enabled: bool) -> None:
    """Route the fused IF/LIF loops through torch.compile for this run (``trainer.compile_neurons``).

    Set at the start of every run, on or off, so one run's choice never leaks into the next.
    """
    from step.neurons.kernels import enable_compile

    enable_compile(bool(enabled))


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile(model)`` when asked (the state dict is read from the original module)."""
    return torch.compile(model) if enabled else model
