"""Integrate-and-fire and leaky integrate-and-fire neurons (SpikingJelly's equations)."""

from __future__ import annotations

import torch

from step.neurons.base import SpikingNeuron
from step.registry import NEURONS


@NEURONS.register("lif", paper="Gerstner & Kistler 2002; SpikingJelly LIFNode")
class LIF(SpikingNeuron):
    """H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau  (decay_input), else with X undecayed."""

    def charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        v_reset = 0.0 if self.v_reset is None else self.v_reset
        if self.decay_input:
            if v_reset == 0.0:
                return v + (x - v) / self.tau
            return v + (x - (v - v_reset)) / self.tau
        if v_reset == 0.0:
            return v * (1.0 - 1.0 / self.tau) + x
        return v - (v - v_reset) / self.tau + x


@NEURONS.register("if", paper="Integrate-and-fire; SpikingJelly IFNode")
class IF(SpikingNeuron):
    """H[t] = V[t-1] + X[t] (no leak; ``tau`` is kept only for a uniform interface)."""

    def charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return v + x
