"""What every backend provides, and the error for a neuron a backend lacks."""

from __future__ import annotations

from typing import Any

from torch import nn

from step.errors import ConfigError
from step.registry import BACKENDS


class Backend:
    """A source of neurons behind :class:`step.neurons.SpikingNeuron`'s interface."""

    name: str = ""
    #: neuron names this backend can build
    offers: tuple[str, ...] = ()

    def check(self, neuron: str, params: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` unless ``neuron`` with ``params`` can be built here."""
        if neuron not in self.offers:
            others = [b for b in backends_offering(neuron) if b != self.name]
            where = f"Backends offering '{neuron}': {', '.join(others)}." if others else (
                f"No backend offers '{neuron}'.")
            raise ConfigError(
                f"backend '{self.name}' has no neuron '{neuron}'. {where} "
                f"Neurons of backend '{self.name}': {', '.join(self.offers)}."
            )

    def build_neuron(self, neuron: str, **params: Any) -> nn.Module:  # pragma: no cover
        raise NotImplementedError


def backends_offering(neuron: str) -> list[str]:
    """Names of the registered backends that can build ``neuron``."""
    return [name for name in BACKENDS.names() if neuron in BACKENDS.build(name).offers]


class AdaptedNeuron(nn.Module):
    """A library neuron behind our interface: ``[T, B, ...]`` in, spikes out, no state kept.

    Holds the configured values under the same attribute names as
    :class:`step.neurons.SpikingNeuron` (``tau, v_threshold, v_reset, decay_input, detach_reset,
    surrogate`` with ``.alpha``, ``learnable_threshold, T, max_spike``) so that model walks check
    backend neurons exactly like native ones. Subclasses implement :meth:`run`.
    """

    is_spiking_neuron = True
    max_spike = 1

    def __init__(self, neuron: str, node: nn.Module, surrogate: nn.Module, *, tau: float, v_threshold: float,
                 v_reset: float | None, decay_input: bool, detach_reset: bool, learnable_threshold: bool,
                 T: int | None):
        super().__init__()
        self.neuron = neuron
        self.node = node
        self.surrogate = surrogate
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.decay_input = bool(decay_input)
        self.detach_reset = bool(detach_reset)
        self.learnable_threshold = bool(learnable_threshold)
        self.T = None if T is None else int(T)

    @property
    def alpha(self) -> float:
        return self.surrogate.alpha

    def run(self, x_seq):  # pragma: no cover
        """Spikes ``[T, ...]`` and the final membrane."""
        raise NotImplementedError

    def forward(self, x_seq):
        return self.run(x_seq)[0]

    def extra_repr(self) -> str:
        return (f"{self.neuron}, tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"decay_input={self.decay_input}, detach_reset={self.detach_reset}, T={self.T}")


def split_params(params: dict[str, Any]) -> dict[str, Any]:
    """The neuron keywords with the defaults of :class:`step.neurons.SpikingNeuron` filled in."""
    import inspect

    from step.neurons.base import SpikingNeuron

    sig = inspect.signature(SpikingNeuron.__init__).parameters
    out = {k: p.default for k, p in sig.items() if k != "self"}
    unknown = sorted(set(params) - set(out))
    if unknown:
        raise ConfigError(f"neuron options {unknown} are not known to library backends; valid: {sorted(out)}")
    out.update(params)
    return out
