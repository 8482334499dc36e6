"""Vanilla scaled dot-product attention with real values (Vaswani et al., NeurIPS 2017), for ANN twins.

    Q, K, V = BN(X W_q), BN(X W_k), BN(X W_v)          (real-valued: no neurons on Q, K, V)
    Y = softmax(Q K^T * scale) V,  scale = d_h^-1/2 unless given
    out = N(BN(Y W_o))                                  (N: the run's neuron, ``proj_neuron=True``)

The Linear+BN projections and the output node mirror Spikformer's SSA, so that swapping ``ssa``
for ``softmax`` (and the neuron for ``relu``) changes the attention and the activations and
nothing else of the macro-architecture. Both products go through
:class:`step.layers.SpikeMatMul` (the meter charges them as MACs: their operands are real).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from step.layers.linear_bn import LinearBN
from step.layers.spike_matmul import SpikeMatMul
from step.registry import ATTENTIONS


@ATTENTIONS.register("softmax", paper="Vaswani et al., NeurIPS 2017 (scaled dot-product attention)")
class SoftmaxAttention(nn.Module):
    """Real-valued multi-head softmax attention on tokens ``[T, B, N, C]`` (each timestep apart)."""

    def __init__(self, dim: int, heads: int, neuron: Callable[..., nn.Module], scale: float | None = None,
                 qkv_bias: bool = True, proj_neuron: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"softmax: dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.scale = float(scale) if scale is not None else (dim // heads) ** -0.5
        self.q = LinearBN(dim, dim, bias=qkv_bias)
        self.k = LinearBN(dim, dim, bias=qkv_bias)
        self.v = LinearBN(dim, dim, bias=qkv_bias)
        self.qk = SpikeMatMul()
        self.av = SpikeMatMul()
        self.proj = LinearBN(dim, dim, bias=True)
        self.proj_lif = neuron() if proj_neuron else nn.Identity()
        self.emits = "spikes" if proj_neuron else "membrane"  # see step.layers.shortcut

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, D = x.shape
        return x.view(T, B, N, self.heads, D // self.heads).transpose(2, 3)  # [T, B, h, N, d]

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        T, B, N, D = x.shape
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        attn = torch.softmax(self.qk(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        y = self.av(attn, v).transpose(2, 3).reshape(T, B, N, D)
        return self.proj_lif(self.proj(y))
