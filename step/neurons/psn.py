"""Parallel spiking neuron (Fang et al., NeurIPS 2023, "Parallel Spiking Neurons with High
Efficiency and Ability to Learn Long-term Dependencies"), Eq. 10-11."""

from __future__ import annotations

import math

import torch
from torch import nn

from step.neurons.base import SpikingNeuron, neuron_signature
from step.registry import NEURONS


@neuron_signature()
@NEURONS.register("psn", paper="Fang et al., NeurIPS 2023 (PSN), Eq. 10-11")
class PSN(SpikingNeuron):
    """H = W X + b,  S = Theta(H - V_th), all T steps at once (no reset, no sequential loop).

    W is a learnable T x T matrix (Kaiming-uniform, as in the paper's code), b a learnable
    per-step offset starting at 0, so the effective threshold V_th - b[t] is learnable per step
    (the paper's B, which starts at -V_th). Needs ``T``. ``tau``, ``v_reset``, ``decay_input`` and
    ``detach_reset`` do not enter PSN's equations and are kept for the uniform interface.
    """

    def __init__(self, T: int | None = None, **kwargs):
        super().__init__(T=T, **kwargs)
        if self.T is None:
            raise ValueError("psn needs T (its weight is a learnable T x T matrix); set the run's T")
        self.weight = nn.Parameter(torch.empty(self.T, self.T))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(self.T, 1))

    def run(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_T(x_seq)
        h = torch.addmm(self.bias - self.threshold, self.weight, x_seq.flatten(1))
        s = self.surrogate(h).view(x_seq.shape)
        return s, (h[-1] + self.threshold).view(x_seq.shape[1:])
