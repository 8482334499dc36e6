"""The native backend: the neurons of :mod:`step.neurons`, built from ``step.registry.NEURONS``."""

from __future__ import annotations

from typing import Any

from torch import nn

from step.neurons.backends.base import Backend
from step.registry import BACKENDS, NEURONS


@BACKENDS.register("native", paper="STEP's own neurons")
class NativeBackend(Backend):
    """Every neuron in ``step.registry.NEURONS``."""

    name = "native"

    @property
    def offers(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(NEURONS.names())

    def check(self, neuron: str, params: dict[str, Any]) -> None:
        if neuron not in NEURONS:
            super().check(neuron, params)
        NEURONS.check_kwargs(neuron, params)

    def build_neuron(self, neuron: str, **params: Any) -> nn.Module:
        self.check(neuron, params)
        return NEURONS.build(neuron, **params)
