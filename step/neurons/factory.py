"""The neuron factory a run hands to its model: config in, identically configured neurons out."""

from __future__ import annotations

from typing import Any, Iterator

from torch import nn

from step.registry import BACKENDS, NEURONS


class NeuronFactory:
    """Builds neurons of one type with one set of parameters.

    ``factory()`` returns a new neuron configured as the run's config says; ``factory(v_threshold=0.5)``
    overrides single values on purpose (an attention neuron's threshold, say). Models must get every
    neuron from here so that no node is ever built with library defaults.
    """

    def __init__(self, name: str = "lif", backend: str = "native", T: int | None = None, **params: Any):
        self.name = name
        self.backend = backend
        self.T = T
        self.params = dict(params)
        # Fail now, not deep inside a model constructor, if name or keywords are wrong.
        if backend == "native":
            NEURONS.check_kwargs(name, {**self.params, "T": T})
        else:
            BACKENDS.get(backend)  # raises for an unknown backend

    def __call__(self, **overrides: Any) -> nn.Module:
        kwargs = {**self.params, **overrides, "T": self.T}
        if self.backend == "native":
            return NEURONS.build(self.name, **kwargs)
        return BACKENDS.build(self.backend).build_neuron(self.name, **kwargs)

    def __repr__(self) -> str:
        return f"NeuronFactory({self.name!r}, backend={self.backend!r}, T={self.T}, {self.params})"


def spiking_nodes(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Every spiking neuron inside ``model`` (native or backend-adapted), with its module path."""
    from step.neurons.base import SpikingNeuron

    for name, module in model.named_modules():
        if isinstance(module, SpikingNeuron) or getattr(module, "is_spiking_neuron", False):
            yield name, module
