"""The three residual shortcuts of spiking networks (Meta-SpikeFormer, Yao et al., ICLR 2024, Fig. 4).

A block joins a branch ``F`` to its residual stream ``x`` in one of three ways:

* ``ms``  membrane shortcut (Hu et al., 2024; SDT v1 and Meta-SpikeFormer): the stream carries
  membrane potentials, every branch opens with a neuron and ends without one:
  ``x <- x + F(SN(x))``. Identity mapping and spike-driven computation both hold.
* ``sew`` spike-element-wise (Fang et al., 2021): the stream carries spikes, every branch ends
  in a neuron and the sum is an integer count: ``x <- x + SN(F(x))``.
* ``vs``  vanilla shortcut (Zheng et al., 2021): the stream carries spikes; the input spikes join
  the membrane of the branch's closing neuron: ``x <- SN(x + F(x))``.

A branch that already ends in a neuron (Spikformer's SSA, say) declares ``emits_spikes = True``;
under ``sew`` it then gets no extra closing neuron. Branches without the attribute are taken to
emit spikes, which is what every attention that predates this module does.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from step.errors import ConfigError

SHORTCUTS = ("ms", "sew", "vs")


def check_shortcut(kind: str, model: str) -> str:
    """``kind`` if it is a known shortcut, else a :class:`ConfigError` naming the valid ones."""
    if kind not in SHORTCUTS:
        raise ConfigError(
            f"{model}: unknown shortcut {kind!r}; choose one of {', '.join(SHORTCUTS)} "
            "(ms: membrane shortcut, sew: spike-element-wise, vs: vanilla)."
        )
    return kind


def stream_carries_spikes(kind: str) -> bool:
    """True for ``sew`` and ``vs`` (a spike stream), False for ``ms`` (a membrane stream)."""
    return kind != "ms"


class Residual(nn.Module):
    """``x <- join(x, branch)`` for one shortcut kind; ``forward(x, *args)`` passes ``args`` to the branch."""

    def __init__(self, branch: nn.Module, kind: str, neuron: Callable[..., nn.Module]):
        super().__init__()
        self.kind = check_shortcut(kind, type(branch).__name__)
        self.branch = branch
        emits_spikes = bool(getattr(branch, "emits_spikes", True))
        self.in_lif = neuron() if kind == "ms" else None
        needs_out = kind == "vs" or (kind == "sew" and not emits_spikes)
        self.out_lif = neuron() if needs_out else None

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        if self.kind == "ms":
            return x + self.branch(self.in_lif(x), *args)
        y = self.branch(x, *args)
        if self.kind == "sew":
            return x + (self.out_lif(y) if self.out_lif is not None else y)
        return self.out_lif(x + y)

    def extra_repr(self) -> str:
        return f"shortcut={self.kind!r}"
