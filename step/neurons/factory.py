"""The neuron factory a run hands to its model: config in, identically configured neurons out."""

from __future__ import annotations

from typing import Any, Iterator

from torch import nn

from step.registry import BACKENDS


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
        # Fail now, not deep inside a model constructor, if the backend, name or keywords are wrong.
        self._backend = BACKENDS.build(backend)  # raises for an unknown backend, listing the valid ones
        self._backend.check(name, {**self.params, "T": T})

    def __call__(self, **overrides: Any) -> nn.Module:
        """A new neuron; ``overrides`` replace single configured values on purpose (``T=None``: a
        neuron that runs over sequences of any length, for the released-behaviour switches)."""
        return self._backend.build_neuron(self.name, **{**self.params, "T": self.T, **overrides})

    def expected(self, **overrides: Any) -> dict[str, Any]:
        """What every neuron from this factory must hold (see :func:`step.neurons.check_nodes`)."""
        from step.neurons.inspect import expected_from_factory

        return expected_from_factory(self, **overrides)

    def __repr__(self) -> str:
        return f"NeuronFactory({self.name!r}, backend={self.backend!r}, T={self.T}, {self.params})"


def spiking_nodes(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Every spiking neuron inside ``model`` (native or backend-adapted), with its module path."""
    from step.neurons.base import SpikingNeuron

    for name, module in model.named_modules():
        if isinstance(module, SpikingNeuron) or getattr(module, "is_spiking_neuron", False):
            yield name, module
