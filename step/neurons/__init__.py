"""Spiking neurons: one interface (:class:`SpikingNeuron`), many dynamics, several backends."""

from step.neurons.base import SpikingNeuron
from step.neurons import lif  # noqa: F401  (registers)
from step.neurons.factory import NeuronFactory, spiking_nodes

__all__ = ["SpikingNeuron", "NeuronFactory", "spiking_nodes"]
