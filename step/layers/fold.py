"""Apply per-timestep layers to time-major tensors by folding T into the batch."""

from __future__ import annotations

import torch
from torch import nn


def fold(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T*B, ...]``."""
    return x.flatten(0, 1)


def unfold(x: torch.Tensor, T: int) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]``."""
    return x.view(T, x.shape[0] // T, *x.shape[1:])


class SeqModule(nn.Sequential):
    """Stateless layers (conv, BN, pooling, linear) applied to every timestep at once."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        T = x.shape[0]
        return unfold(super().forward(fold(x)), T)
