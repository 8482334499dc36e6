"""LIF variants with extra learnable state: KLIF, GLIF and CLIF."""

from __future__ import annotations

import math

import torch
from torch import nn

from step.neurons.base import SpikingNeuron, neuron_signature
from step.neurons.lif import LIF
from step.registry import NEURONS


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


@neuron_signature()
@NEURONS.register("klif", paper="Jiang & Zhang 2023, KLIF (arXiv 2302.09238), Eq. 7-9")
class KLIF(LIF):
    """LIF whose charged membrane is rescaled by a learnable k (init 1) and rectified:

    H[t] = ReLU(k * H_LIF[t]),  S[t] = Theta(H[t] - V_th),  reset as LIF on H[t].
    Learning k tunes the effective surrogate slope and the membrane scale together.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.k = nn.Parameter(torch.tensor(1.0))

    def charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.k * super().charge(x, v))

    run = SpikingNeuron.run  # the fused LIF kernel has no k


@neuron_signature()
@NEURONS.register("glif", paper="Yao et al., NeurIPS 2022 (GLIF), Eq. 9-13")
class GLIF(SpikingNeuron):
    """Gated LIF: three learnable gates alpha, beta, gamma = sigmoid(.) mix two choices each.

    I[t] = X[t] (1 - beta (1 - g_c[t]))                        (input: conductance g_c per step)
    U[t] = (1 - alpha (1 - tau_m)) V[t-1] - (1 - alpha) d + I[t]   (exponential vs linear leak d)
    V[t] = U[t] - (1 - alpha (1 - tau_m)) V[t-1] gamma S[t-1] - (1 - gamma) v_sub S[t-1]
    S[t] = Theta(V[t] - V_th)                                  (reset: hard vs soft by gamma)

    tau_m = sigmoid(w_tau) starts at 1 - 1/tau (the LIF decay), g_c = sigmoid(c[t]) needs ``T``,
    d starts at V_th / (2T) and v_sub at V_th (the paper's initialisation). The gates are one per
    layer here (the paper allows one per channel). ``v_reset`` and ``decay_input`` are kept for the
    uniform interface; GLIF's gates replace them. ``detach_reset`` detaches S[t-1] in the reset.
    """

    def __init__(self, T: int | None = None, tau: float = 2.0, **kwargs):
        super().__init__(T=T, tau=tau, **kwargs)
        if self.T is None:
            raise ValueError("glif needs T (one learnable conductance per time step); set the run's T")
        if self.tau <= 1.0:
            raise ValueError(f"glif needs tau > 1 (its decay starts at 1 - 1/tau), got {tau}")
        self.gate_alpha = nn.Parameter(torch.tensor(0.0))
        self.gate_beta = nn.Parameter(torch.tensor(0.0))
        self.gate_gamma = nn.Parameter(torch.tensor(0.0))
        self.w_tau = nn.Parameter(torch.tensor(_logit(1.0 - 1.0 / self.tau)))
        self.conduct = nn.Parameter(torch.zeros(self.T))
        self.linear_decay = nn.Parameter(torch.tensor(self._v_threshold / (2 * self.T)))
        self.v_subreset = nn.Parameter(torch.tensor(self._v_threshold))

    def run(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_T(x_seq)
        a, b, c = self.gate_alpha.sigmoid(), self.gate_beta.sigmoid(), self.gate_gamma.sigmoid()
        decay = 1 - a * (1 - self.w_tau.sigmoid())
        v = torch.zeros_like(x_seq[0])
        s_prev = torch.zeros_like(x_seq[0])
        spikes = []
        for t in range(x_seq.shape[0]):
            i_t = x_seq[t] * (1 - b * (1 - self.conduct[t].sigmoid()))
            u = decay * v - (1 - a) * self.linear_decay + i_t
            s_r = s_prev.detach() if self.detach_reset else s_prev
            v = u - decay * v * c * s_r - (1 - c) * self.v_subreset * s_r
            s_prev = self.fire(v)
            spikes.append(s_prev)
        return torch.stack(spikes), v


@NEURONS.register("clif", paper="Huang et al., ICML 2024 (CLIF), Eq. 6-9")
class CLIF(SpikingNeuron):
    """Complementary LIF: a complementary potential M records recent firing and raises the reset.

    H[t] = V[t-1] - V[t-1]/tau + X[t]
    S[t] = Theta(H[t] - V_th)
    M[t] = M[t-1] sigmoid(H[t]/tau) + S[t]
    V[t] = H[t] - S[t] (V_th + sigmoid(M[t]))        (soft reset, always; V and M start at 0)

    ``v_reset``/``decay_input`` are kept for the uniform interface; CLIF's own equations fix them.
    ``detach_reset`` detaches S in the reset term.
    """

    def run(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.zeros_like(x_seq[0])
        m = torch.zeros_like(x_seq[0])
        spikes = []
        for x in x_seq:
            h = v - (v - 0.0) / self.tau + x
            decayed = m * torch.sigmoid(h / self.tau)
            s = self.fire(h)
            m = decayed + s
            s_r = s.detach() if self.detach_reset else s
            v = h - s_r * (self.threshold + torch.sigmoid(m))
            spikes.append(s)
        return torch.stack(spikes), v
