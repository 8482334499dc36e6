"""IF, LIF, parametric LIF and exponential IF neurons (SpikingJelly 2.0's equations and order of
operations, so that spikes, membranes and gradients agree with it bit for bit)."""

from __future__ import annotations

import math

import torch
from torch import nn

from step.neurons.base import SpikingNeuron, neuron_signature
from step.neurons.lif_op import multistep, surrogate_spec
from step.registry import NEURONS


class _FusedMixin:
    """IF/LIF (and PLIF, the integer LIF) run the neuron op ``step::lif_forward``
    (:mod:`step.neurons.lif_op`: C kernel on the CPU, Triton on CUDA, the torch loop elsewhere) when
    the threshold is fixed and the surrogate a registered one.

    Otherwise they run the generic autograd loop. Both give the same spikes, membranes and input
    gradients (the op's backward follows autograd's order of operations on that loop), and so does
    SpikingJelly 2.0 (tests/test_neurons.py).
    """

    _fused_tau: bool = True  # IF has no leak

    def _op_decay(self):
        """PLIF's decay k (a tensor), else None (the decay is 1 / tau)."""
        return None

    def run(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.learnable_threshold or surrogate_spec(self.surrogate) is None:
            return SpikingNeuron.run(self, x_seq)
        return multistep(
            x_seq,
            tau=self.tau if self._fused_tau else None,
            decay_input=self.decay_input,
            v_threshold=self._v_threshold,
            v_reset=self.v_reset,
            detach_reset=self.detach_reset,
            surrogate=self.surrogate,
            k=self._op_decay(),
            max_spike=self.max_spike if self._integer_spike else 0,
        )

    #: the integer LIF's round(clamp(H / V_th, 0, D)) instead of the Heaviside spike
    _integer_spike: bool = False


@NEURONS.register("lif", paper="Gerstner & Kistler 2002; SpikingJelly LIFNode")
class LIF(_FusedMixin, SpikingNeuron):
    """Leaky integrate-and-fire.

    decay_input: H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau
    otherwise:   H[t] = V[t-1] - (V[t-1] - V_reset) / tau + X[t]
    S[t] = Theta(H[t] - V_th); V[t] = H[t](1 - S[t]) + V_reset S[t] (hard) or H[t] - V_th S[t] (soft,
    ``v_reset=None``, where V_reset counts as 0 in the charge).
    """

    def charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r = 0.0 if self.v_reset is None else self.v_reset
        if self.decay_input:
            return v + (x - (v - r)) / self.tau
        return v - (v - r) / self.tau + x


@NEURONS.register("if", paper="Integrate-and-fire; SpikingJelly IFNode")
class IF(_FusedMixin, SpikingNeuron):
    """H[t] = V[t-1] + X[t] (no leak; ``tau`` is kept only for a uniform interface)."""

    _fused_tau = False

    def charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return v + x


@neuron_signature()
@NEURONS.register("plif", paper="Fang et al., ICCV 2021 (PLIF), Eq. 6-8")
class PLIF(_FusedMixin, SpikingNeuron):
    """Parametric LIF: the decay 1/tau becomes k = sigmoid(w), w learnable, w0 = -ln(tau - 1).

    decay_input: H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) k; otherwise
    H[t] = V[t-1] - (V[t-1] - V_reset) k + X[t]. ``tau`` keeps the initial time constant.
    """

    def __init__(self, tau: float = 2.0, **kwargs):
        super().__init__(tau=tau, **kwargs)
        if self.tau <= 1.0:
            raise ValueError(f"plif needs tau > 1 (its decay is sigmoid(-ln(tau - 1))), got {tau}")
        self.w = nn.Parameter(torch.tensor(-math.log(self.tau - 1.0)))

    def _op_decay(self):
        return self.w.sigmoid()

    def charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        k = self.w.sigmoid()
        r = 0.0 if self.v_reset is None else self.v_reset
        if self.decay_input:
            return v + (x - (v - r)) * k
        return v - (v - r) * k + x


@neuron_signature(delta_T=1.0, theta_rh=0.8)
@NEURONS.register("eif", paper="Fourcaud-Trocme et al., J. Neurosci. 2003 (exponential IF)")
class EIF(SpikingNeuron):
    """Exponential integrate-and-fire, Euler step dt = 1:

    H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset) + delta_T exp((V[t-1] - theta_rh) / delta_T)) / tau
    (``decay_input``; otherwise X[t] is added undivided). ``theta_rh`` is the rheobase threshold
    and ``delta_T`` the sharpness; the spike threshold V_th sits above theta_rh.
    """

    def __init__(self, tau: float = 2.0, delta_T: float = 1.0, theta_rh: float = 0.8, **kwargs):
        super().__init__(tau=tau, **kwargs)
        if delta_T <= 0:
            raise ValueError(f"eif needs delta_T > 0, got {delta_T}")
        self.delta_T = float(delta_T)
        self.theta_rh = float(theta_rh)

    def charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r = 0.0 if self.v_reset is None else self.v_reset
        drive = -(v - r) + self.delta_T * torch.exp((v - self.theta_rh) / self.delta_T)
        if self.decay_input:
            return v + (x + drive) / self.tau
        return v + drive / self.tau + x
