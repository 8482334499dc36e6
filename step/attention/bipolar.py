"""Bipolar self-attention (BSA), after Wang, Zhang, ..., Li, "Bipolar Self-attention for Spiking
Transformers", NeurIPS 2025 (OpenReview nG45z7lJ7D).

RECONSTRUCTED FROM THE PAPER'S DESCRIPTION: no code was released and only the abstract and reviews
could be read (reference/models.md sec. 7), so the exact thresholds, the Shiftmax base and its
normalisation are our reading, not the authors'. Treat results as experimental.

What the paper describes, and how it is realised here (tokens ``[T, B, N, C]``, heads of d_h):

1. Ternary {-1, 0, +1} spikes for Q and K, so that negative-negative and positive-negative
   membrane interactions are represented. Each ternary node is a pair of the run's neurons on the
   membrane and on its negation:  Q = SN_+(U_q) - SN_-(-U_q),  U_q = BN(X W_q)  (same for K).
   V = SN(BN(X W_v)) stays binary.
2. S = Q K^T, a ternary matmul: homopolar pairs add +1, heteropolar pairs -1 (integers in [-d_h, d_h]).
3. Shiftmax, a power-of-two softmax approximation with no exp and no division:

       e_j = round(scale * S_j * log2(e)) - max_k round(scale * S_k * log2(e))     (integers <= 0)
       A_j = 2^(e_j) / 2^(round(log2 sum_k 2^(e_k)))

   Numerator and denominator are powers of two, so A V is computed with shifts and adds. Rows sum
   to sum_k 2^(e_k) / 2^round(log2 sum) in [2^-1/2, 2^1/2]: "partly" row-stochastic. In the limit of
   no rounding A = softmax(scale * S). Rounding uses a straight-through gradient.
4. Y = A V, then Spikformer's tail: out = SN(BN(Linear(SN_attn(Y)))), attention threshold
   ``attn_threshold``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from step.layers.linear_bn import LinearBN
from step.layers.spike_matmul import SpikeMatMul
from step.registry import ATTENTIONS

LOG2E = 1.0 / math.log(2.0)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity gradient."""
    return x + (torch.round(x) - x).detach()


def shiftmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Power-of-two softmax approximation of ``softmax(z)`` along ``dim`` (see the module doc)."""
    e = round_ste(z * LOG2E)
    e = e - e.detach().amax(dim=dim, keepdim=True)
    p = torch.exp2(e)
    return p * torch.exp2(-round_ste(torch.log2(p.sum(dim=dim, keepdim=True))))


@ATTENTIONS.register("bipolar", paper="Bipolar Self-attention (Wang et al., NeurIPS 2025), reconstructed from the paper's description")
class BipolarSelfAttention(nn.Module):
    """Ternary Q/K spikes, ternary Q K^T, Shiftmax, binary V (RECONSTRUCTED: see the module doc)."""

    emits = "spikes"

    def __init__(self, dim: int, heads: int, neuron: Callable[..., nn.Module], scale: float = 0.125,
                 attn_threshold: float = 0.5, qkv_bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"bipolar: dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.scale = float(scale)
        self.attn_threshold = float(attn_threshold)
        self.q = LinearBN(dim, dim, bias=qkv_bias)
        self.k = LinearBN(dim, dim, bias=qkv_bias)
        self.v = LinearBN(dim, dim, bias=qkv_bias)
        self.q_pos_lif, self.q_neg_lif = neuron(), neuron()
        self.k_pos_lif, self.k_neg_lif = neuron(), neuron()
        self.v_lif = neuron()
        self.qk = SpikeMatMul()
        self.av = SpikeMatMul()
        self.attn_lif = neuron(v_threshold=self.attn_threshold)
        self.proj = LinearBN(dim, dim, bias=True)
        self.proj_lif = neuron()

    @staticmethod
    def ternary(pos: nn.Module, neg: nn.Module, u: torch.Tensor) -> torch.Tensor:
        """{-1, 0, +1} spikes: a positive and a negative neuron on the same membrane input."""
        return pos(u) - neg(-u)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, D = x.shape
        return x.view(T, B, N, self.heads, D // self.heads).transpose(2, 3)  # [T, B, h, N, d]

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        T, B, N, D = x.shape
        q = self._heads(self.ternary(self.q_pos_lif, self.q_neg_lif, self.q(x)))
        k = self._heads(self.ternary(self.k_pos_lif, self.k_neg_lif, self.k(x)))
        v = self._heads(self.v_lif(self.v(x)))
        attn = shiftmax(self.qk(q, k.transpose(-2, -1)) * self.scale)
        y = self.av(attn, v).transpose(2, 3).reshape(T, B, N, D)
        return self.proj_lif(self.proj(self.attn_lif(y)))
