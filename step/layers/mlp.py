"""The spiking MLP of Spikformer: SN(BN(W2 SN(BN(W1 x))))."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from step.layers.linear_bn import LinearBN


class SpikingMLP(nn.Module):
    emits = "spikes"

    def __init__(self, dim: int, hidden: int, neuron: Callable[..., nn.Module]):
        super().__init__()
        self.fc1 = LinearBN(dim, hidden)
        self.lif1 = neuron()
        self.fc2 = LinearBN(hidden, dim)
        self.lif2 = neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif2(self.fc2(self.lif1(self.fc1(x))))
