"""QKFormer's Q-K attention (Zhou et al., NeurIPS 2024): binary token or channel masks, no V.

Q-K token attention (QKTA), per head h with d_h channels, tokens ``[T, B, N, C]``:

    Q = SN(BN(X W_q)),  K = SN(BN(X W_k))                  (binary; no bias, as released)
    A_t[n, h] = SN_mask( sum_{j in head h} Q[n, j] )       (binary token mask, V_th 0.5)
    X' = SN(BN(Linear(A_t (.) K)))                          (mask broadcast over the head's channels)

Q-K channel attention (QKCA):

    A_c[j] = SN_mask( sum_n Q[n, j] )                       (binary channel mask)
    X' = SN(BN(Linear(A_c (.) K)))

Both are linear in N. The row/column sums are computed as products with a ones vector and the
mask as a Hadamard product, all through :class:`step.layers.SpikeMatMul`, so the energy meter
counts them. The mask neuron is named ``mask_lif`` and its threshold ``mask_threshold`` (0.5 in
the released code, where it is called ``attn_lif``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from step.layers.linear_bn import LinearBN
from step.layers.spike_matmul import SpikeMatMul
from step.registry import ATTENTIONS


class _QKAttention(nn.Module):
    emits = "spikes"

    def __init__(self, dim: int, heads: int, neuron: Callable[..., nn.Module], mask_threshold: float = 0.5,
                 qk_bias: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"{type(self).__name__}: dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.mask_threshold = float(mask_threshold)
        self.q = LinearBN(dim, dim, bias=qk_bias)
        self.k = LinearBN(dim, dim, bias=qk_bias)
        self.q_lif, self.k_lif = neuron(), neuron()
        self.reduce = SpikeMatMul()
        self.mask_lif = neuron(v_threshold=self.mask_threshold)
        self.apply_mask = SpikeMatMul("hadamard")
        self.proj = LinearBN(dim, dim, bias=True)
        self.proj_lif = neuron()

    def _mask(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        q = self.q_lif(self.q(x))
        k = self.k_lif(self.k(x))
        return self.proj_lif(self.proj(self._mask(q, k)))


@ATTENTIONS.register("qk_token", paper="QKFormer (Zhou et al., NeurIPS 2024), Q-K token attention")
class QKTokenAttention(_QKAttention):
    """QKTA: a binary per-head token mask from the channel sums of Q selects tokens of K (no V)."""

    def _mask(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        T, B, N, C = q.shape
        d = C // self.heads
        qh = q.view(T, B, N, self.heads, d)
        ones = torch.ones(d, 1, dtype=q.dtype, device=q.device)
        mask = self.mask_lif(self.reduce(qh, ones))  # [T, B, N, h, 1]
        return self.apply_mask(mask, k.view(T, B, N, self.heads, d)).reshape(T, B, N, C)


@ATTENTIONS.register("qk_channel", paper="QKFormer (Zhou et al., NeurIPS 2024), Q-K channel attention")
class QKChannelAttention(_QKAttention):
    """QKCA: a binary channel mask from the token sums of Q selects channels of K (no V).

    ``heads`` only has to divide ``dim``: the channel mask is per channel, so heads do not matter.
    """

    def _mask(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(1, q.shape[2], dtype=q.dtype, device=q.device)
        mask = self.mask_lif(self.reduce(ones, q))  # [T, B, 1, C]
        return self.apply_mask(mask, k)
