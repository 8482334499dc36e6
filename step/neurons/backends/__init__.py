"""Backends: the same neuron interface served by our code, SpikingJelly 2.0 or BrainCog.

Each backend is registered in ``step.registry.BACKENDS`` as a class with ``offers`` (neuron names)
and ``build_neuron(name, **params)``. Library imports happen on first use, so ``import step`` does
not need SpikingJelly or BrainCog.
"""

from step.neurons.backends.base import Backend, backends_offering
from step.neurons.backends import native, spikingjelly, braincog  # noqa: F401  (register)

__all__ = ["Backend", "backends_offering"]
