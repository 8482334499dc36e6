"""The one neuron interface every model, attention and backend relies on.

A neuron takes a time-major input current ``[T, B, ...]`` and returns spikes of the same shape.
It keeps no state between calls: the membrane starts at ``v_reset`` (0 for soft reset) at every
call, so no global reset is needed between batches.

All neurons accept the same core keywords (the keys of ``conf/neuron/*.yaml``):
``tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, alpha, learnable_threshold, T``.
They keep each value as an attribute of the same name so that tests can walk a model and prove
every config value arrived.
"""

from __future__ import annotations

import torch
from torch import nn

from step.surrogates import Surrogate, build_surrogate


class SpikingNeuron(nn.Module):
    """Base class for multi-step spiking neurons.

    Subclasses implement :meth:`charge` (membrane update from the previous membrane and the
    input); :meth:`fire` and :meth:`reset` are shared. ``v_reset=None`` selects the soft reset
    (subtract the threshold).
    """

    #: spike values this neuron can emit are integers 0..max_spike (1 for binary neurons)
    max_spike: int = 1
    backend = "native"

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        decay_input: bool = True,
        detach_reset: bool = True,
        surrogate: str | Surrogate = "atan",
        alpha: float | None = None,
        learnable_threshold: bool = False,
        T: int | None = None,
    ):
        super().__init__()
        self.tau = float(tau)
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.v_reset = None if v_reset is None else float(v_reset)
        self.decay_input = bool(decay_input)
        self.detach_reset = bool(detach_reset)
        self.surrogate = build_surrogate(surrogate, alpha)
        self.learnable_threshold = bool(learnable_threshold)
        self.T = None if T is None else int(T)
        self._v_threshold = float(v_threshold)
        threshold = torch.tensor(self._v_threshold)
        if self.learnable_threshold:
            self.threshold = nn.Parameter(threshold)
        else:
            self.register_buffer("threshold", threshold, persistent=False)

    @property
    def v_threshold(self) -> float:
        """The threshold as configured (its current value once it is learnable)."""
        return float(self.threshold.detach()) if self.learnable_threshold else self._v_threshold

    @property
    def alpha(self) -> float:
        return self.surrogate.alpha

    def initial_membrane(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.v_reset if self.v_reset is not None else 0.0)

    def charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def fire(self, h: torch.Tensor) -> torch.Tensor:
        return self.surrogate(h - self.threshold)

    def reset(self, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
        s = spike.detach() if self.detach_reset else spike
        if self.v_reset is None:
            return h - s * self.threshold
        return s * self.v_reset + (1.0 - s) * h  # SpikingJelly's order (bit-identical gradients)

    def run(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Spikes ``[T, B, ...]`` and the final membrane ``V[T-1]`` (the generic autograd loop)."""
        v = self.initial_membrane(x_seq[0])
        spikes = []
        for t in range(x_seq.shape[0]):
            h = self.charge(x_seq[t], v)
            s = self.fire(h)
            v = self.reset(h, s)
            spikes.append(s)
        return torch.stack(spikes), v

    def check_T(self, x_seq: torch.Tensor) -> None:
        if self.T is not None and x_seq.shape[0] != self.T:
            raise ValueError(f"{type(self).__name__} was built for T={self.T} but got {x_seq.shape[0]} time steps")

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.run(x_seq)[0]

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
            f"decay_input={self.decay_input}, detach_reset={self.detach_reset}, "
            f"learnable_threshold={self.learnable_threshold}, T={self.T}"
        )


def neuron_signature(**extra: object):
    """Class decorator: advertise the base keywords plus ``extra`` (name=default) as the
    signature of a subclass whose ``__init__`` takes ``**kwargs``, so that the registry still
    rejects unknown keywords by name."""
    import inspect

    def decorate(cls):
        base = inspect.signature(SpikingNeuron.__init__)
        params = list(base.parameters.values())
        for name, default in extra.items():
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default))
        init = cls.__init__
        init.__signature__ = base.replace(parameters=params)
        return cls

    return decorate
