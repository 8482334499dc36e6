"""Token-wise Linear + BatchNorm on time-major token tensors ``[T, B, N, C]``."""

from __future__ import annotations

import torch
from torch import nn


class LinearBN(nn.Module):
    """``BN(Linear(x))`` over the channel axis; BN statistics pool over T, B and tokens.

    This is Spikformer's CIFAR ``Linear`` + ``BatchNorm1d`` pair (the 1-D BN there sees
    ``[T*B, C, N]``, which pools over the same axes).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.bn = nn.BatchNorm1d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1]
        y = self.bn(self.linear(x.reshape(-1, x.shape[-1])))
        return y.view(*shape, -1)
