"""Spikformer's spiking self-attention (SSA), Zhou et al., ICLR 2023."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from step.layers.linear_bn import LinearBN
from step.layers.spike_matmul import SpikeMatMul
from step.registry import ATTENTIONS


@ATTENTIONS.register("ssa", paper="Spikformer (Zhou et al., ICLR 2023), Eq. 10-12")
class SpikingSelfAttention(nn.Module):
    """Q, K, V = SN(BN(Linear(x))); Y = SN_{th}((Q K^T) V * scale); out = SN(BN(Linear(Y))).

    No softmax. ``freeze_qk=True`` keeps the Q and K projections at their random initial weights
    (the randomised-attention probe of the STEP paper). ``scale`` is 0.125 and the attention neuron's threshold ``attn_threshold`` is 0.5
    in the paper. Tokens are ``[T, B, N, D]``.
    """

    emits = "spikes"

    def __init__(
        self,
        dim: int,
        heads: int,
        neuron: Callable[..., nn.Module],
        scale: float = 0.125,
        attn_threshold: float = 0.5,
        qkv_bias: bool = True,
        freeze_qk: bool = False,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"ssa: dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.scale = float(scale)
        self.attn_threshold = float(attn_threshold)
        self.q = LinearBN(dim, dim, bias=qkv_bias)
        self.k = LinearBN(dim, dim, bias=qkv_bias)
        self.v = LinearBN(dim, dim, bias=qkv_bias)
        self.q_lif, self.k_lif, self.v_lif = neuron(), neuron(), neuron()
        self.qk = SpikeMatMul()
        self.av = SpikeMatMul()
        self.attn_lif = neuron(v_threshold=self.attn_threshold)
        self.proj = LinearBN(dim, dim, bias=True)
        self.proj_lif = neuron()
        # The "randomised attention" ablation (STEP): Q and K keep their random initial weights.
        self.freeze_qk = bool(freeze_qk)
        if self.freeze_qk:
            for p in (*self.q.parameters(), *self.k.parameters()):
                p.requires_grad_(False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, D = x.shape
        return x.view(T, B, N, self.heads, D // self.heads).transpose(2, 3)  # [T, B, h, N, d]

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        T, B, N, D = x.shape
        q = self._heads(self.q_lif(self.q(x)))
        k = self._heads(self.k_lif(self.k(x)))
        v = self._heads(self.v_lif(self.v(x)))
        attn = self.qk(q, k.transpose(-2, -1)) * self.scale
        y = self.av(attn, v).transpose(2, 3).reshape(T, B, N, D)
        return self.proj_lif(self.proj(self.attn_lif(y)))
