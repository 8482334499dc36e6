"""Input encoders: ``[B, ...] -> [T, B, ...]``.

Encoders receive un-normalised inputs in [0, 1]; normalisation, where a model wants it, happens
after encoding (in the model's first layer). Event data bypasses the encoder.
"""

from __future__ import annotations

import torch
from torch import nn

from step.registry import ENCODERS


class Encoder(nn.Module):
    """Base class; ``T`` is the number of timesteps produced."""

    def __init__(self, T: int = 4):
        super().__init__()
        if int(T) < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        self.T = int(T)

    def extra_repr(self) -> str:
        return f"T={self.T}"


@ENCODERS.register("direct", paper="Rathi & Roy 2021; used by every spiking transformer")
class Direct(Encoder):
    """Repeat the analog input T times; the first conv + BN + neuron acts as the encoder."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).expand(self.T, *x.shape).contiguous()
