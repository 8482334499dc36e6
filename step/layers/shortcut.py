"""The contract between a branch (an attention, an MLP, a conv mixer) and the block that hosts it.

**What a branch declares.** Every branch says what its last operation hands back, in a class or
instance attribute ``emits``:

* ``"spikes"``: it ends in a neuron (Spikformer's SSA, QKFormer's Q-K attention, SEMM, bipolar
  attention, Spikformer's MLP; integer-spike neurons count as spikes);
* ``"membrane"``: it ends in a weight layer or BN, so it hands back a membrane potential (or an
  input current) for a membrane shortcut to add (SDSA-1..4, SDT's MLP, SepConv, ChannelConv,
  softmax attention built with ``proj_neuron=False``).

**What a host block declares.** Every block that joins a branch to its residual stream declares
its ``shortcut`` (Meta-SpikeFormer, Yao et al., ICLR 2024, Fig. 4):

* ``sew``  spike-element-wise (Fang et al., 2021; Spikformer, QKFormer, SEMM): the stream carries
  spikes (integer counts after the sums): ``x <- x + SN(F(x))``;
* ``ms``   membrane shortcut (Hu et al., 2024; SDT v1 and Meta-SpikeFormer): the stream carries
  membrane potentials and every branch opens with a neuron: ``x <- x + F(SN(x))``;
* ``vs``   vanilla shortcut (Zheng et al., 2021): the stream carries spikes; the input spikes join
  the membrane of a closing neuron: ``x <- SN(x + F(x))``.

**The rule** (:func:`closing_neuron`, the same for every branch and every host): every weight
layer's input must be spikes, and a branch's weight layers read what the host feeds it (the spike
stream under ``sew`` and ``vs``, the opening neuron's spikes under ``ms``). So

* ``sew`` + ``membrane``: the host appends a closing neuron to the branch (``x + SN(F(x))``); a
  membrane added to the spike stream would make the next branch's weight layers read real values;
* ``sew`` + ``spikes``: joined as is (``x + F(x)``);
* ``ms`` + either: joined as is; the stream is a membrane anyway and the next branch opens with a
  neuron, so a spike-emitting branch only adds its spikes to the membrane;
* ``vs`` + either: the closing neuron is the shortcut's own.

A branch that declares anything else (or nothing) is refused with one :class:`ConfigError`, as is
an unknown shortcut. An attention ablation therefore changes only the attention: the host adds
the same neuron to every membrane-emitting variant. The spike-driven audit of each run
(:mod:`step.energy.audit`) checks the outcome on the data.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from step.errors import ConfigError

SHORTCUTS = ("ms", "sew", "vs")
EMITS = ("spikes", "membrane")


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


def branch_emits(branch: nn.Module) -> str:
    """What ``branch`` declares it emits (``spikes`` or ``membrane``); anything else is refused.

    ``emits_spikes = True/False`` is read as the older spelling of ``emits``.
    """
    emits = getattr(branch, "emits", None)
    if emits is None and isinstance(getattr(branch, "emits_spikes", None), bool):
        emits = "spikes" if branch.emits_spikes else "membrane"
    if emits not in EMITS:
        raise ConfigError(
            f"{type(branch).__name__} declares emits={emits!r}, so no shortcut rule fits it: a branch "
            "must declare emits = 'spikes' (it ends in a neuron) or 'membrane' (it ends in a weight "
            "layer or BN) so that its host can keep every weight layer's input spike-valued "
            "(step/layers/shortcut.py, docs/ablations.md)."
        )
    return emits


def closing_neuron(branch: nn.Module, kind: str, neuron: Callable[..., nn.Module]) -> nn.Module | None:
    """The neuron a ``kind`` host puts after ``branch`` (None: joined as is); see the module doc."""
    emits = branch_emits(branch)
    if kind == "vs" or (kind == "sew" and emits == "membrane"):
        return neuron()
    return None


class Residual(nn.Module):
    """``x <- join(x, branch)`` for one shortcut kind; ``forward(x, *args)`` passes ``args`` to the branch."""

    def __init__(self, branch: nn.Module, kind: str, neuron: Callable[..., nn.Module]):
        super().__init__()
        self.kind = check_shortcut(kind, type(branch).__name__)
        self.branch = branch
        self.in_lif = neuron() if kind == "ms" else None
        self.out_lif = closing_neuron(branch, kind, neuron)

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        if self.kind == "ms":
            return x + self.branch(self.in_lif(x), *args)
        y = self.branch(x, *args)
        if self.kind == "sew":
            return x + (self.out_lif(y) if self.out_lif is not None else y)
        return self.out_lif(x + y)

    def extra_repr(self) -> str:
        return f"shortcut={self.kind!r}"
