"""Spiking neurons: one interface (:class:`SpikingNeuron`), many dynamics, several backends."""

from step.neurons.base import SpikingNeuron
from step.neurons import lif, variants, psn, integer  # noqa: F401  (register)
from step.neurons import activations  # noqa: F401  (registers relu, gelu, int8: non-spiking, for ANN/INT8 twins)
from step.neurons.factory import NeuronFactory, spiking_nodes
from step.neurons import backends  # noqa: F401  (registers native, spikingjelly, braincog)
from step.neurons.inspect import check_nodes, declared_overrides, expected_from_factory

__all__ = ["SpikingNeuron", "NeuronFactory", "spiking_nodes", "check_nodes", "declared_overrides", "expected_from_factory"]
