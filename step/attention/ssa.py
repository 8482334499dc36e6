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

    ``proj_lif_over_batch=True`` reproduces a defect of QKFormer's released stage-3 attention
    (zhouchenlin2096/QKFormer, ``Spiking_Self_Attention.forward``): its output neuron runs over the
    folded ``[T*B, C, N]`` tensor, so the membrane steps through the T*B (time, sample) pairs in order
    and carries from one sample into the next: a sample's output depends on the samples before it in
    the batch. Off by default (the paper's neuron runs over T for each sample); QKFormer turns it on
    with ``released_stage3_lif`` so its released checkpoints evaluate as they did.
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
        proj_lif_over_batch: bool = False,
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
        self.proj_lif_over_batch = bool(proj_lif_over_batch)
        # over the folded axis the neuron sees T*B steps, so it is built without a fixed T
        self.proj_lif = neuron(T=None) if self.proj_lif_over_batch else neuron()
        # The "randomised attention" ablation (STEP): Q and K keep their random initial weights.
        self.freeze_qk = bool(freeze_qk)
        if self.freeze_qk:
            for p in (*self.q.parameters(), *self.k.parameters()):
                p.requires_grad_(False)

    def neuron_overrides(self) -> dict[str, dict]:
        """The neuron values set here on purpose (read by step.neurons.check_nodes)."""
        out = {"attn_lif": {"v_threshold": self.attn_threshold}}
        if self.proj_lif_over_batch:
            out["proj_lif"] = {"T": None}
        return out

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
        y = self.proj(self.attn_lif(y))
        if self.proj_lif_over_batch:  # QKFormer's released stage 3: one sequence of T*B steps
            return self.proj_lif(y.reshape(T * B, 1, N, D)).reshape(T, B, N, D)
        return self.proj_lif(y)
