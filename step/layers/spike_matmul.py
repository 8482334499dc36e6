"""Matrix products between spike tensors as modules, so the energy counter can see them."""

from __future__ import annotations

import torch
from torch import nn


class SpikeMatMul(nn.Module):
    """``a @ b`` (or ``a * b`` for ``mode='hadamard'``) as a module.

    Attention variants route every product of (spike) activations through one of these, in the
    order they compute it, so that op counting charges the product that really happens.
    """

    def __init__(self, mode: str = "matmul"):
        super().__init__()
        if mode not in ("matmul", "hadamard"):
            raise ValueError(f"SpikeMatMul mode must be 'matmul' or 'hadamard', got {mode!r}")
        self.mode = mode

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b if self.mode == "matmul" else a * b

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
