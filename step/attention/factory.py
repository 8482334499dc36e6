"""The attention factory a run hands to its model."""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from step.registry import ATTENTIONS


class AttentionFactory:
    """``factory(dim=..., heads=..., neuron=...)`` builds the configured attention variant.

    The interface every variant implements, so that any attention fits any model:
    ``forward(x, hw)`` with ``x`` time-major tokens ``[T, B, N, C]`` and ``hw = (H, W)`` the token
    grid (``N == H * W``; variants with spatial convolutions use it, others ignore it); the result
    has the shape of ``x`` and is joined to the block's residual stream by the model.

    Every variant also declares ``emits``: ``"spikes"`` (it ends in a neuron) or ``"membrane"``
    (it ends in a weight layer or BN). The host block joins it by the one rule of
    :mod:`step.layers.shortcut`, which keeps every weight layer's input spike-valued whatever the
    variant (a spike-add host closes a membrane-emitting attention with a neuron).
    """

    def __init__(self, name: str = "ssa", **params: Any):
        self.name = name
        self.params = dict(params)
        ATTENTIONS.check_kwargs(name, {**self.params, "dim": 8, "heads": 1, "neuron": None})

    def __call__(self, dim: int, heads: int, neuron: Callable[..., nn.Module]) -> nn.Module:
        return ATTENTIONS.build(self.name, dim=dim, heads=heads, neuron=neuron, **self.params)

    def with_params(self, **params: Any) -> "AttentionFactory":
        """The same attention with ``params`` added (a model's own setting, e.g. SDT's erode pooling)."""
        return AttentionFactory(self.name, **{**self.params, **params})

    def __repr__(self) -> str:
        return f"AttentionFactory({self.name!r}, {self.params})"
