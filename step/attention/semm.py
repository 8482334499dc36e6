"""Spiking Experts Mixture Mechanism (SEMM), Zhou et al., NeurIPS 2024 (OpenReview WcIeEtY3AG).

Both the experts and the router emit spikes and are combined element-wise: no softmax, no top-k.
No official code exists; the operators follow STEP's re-implementation (reference/models.md sec.
6.1-6.2), which reproduces its parameter count (7,739,242 for Spikformer-4-384 + SEMM at 10 classes).

EMSA (``semm``, head-wise experts; tokens ``[T, B, N, C]``, m experts of width d_e):

    K = SN(BN(X W_k)) in {0,1}^(N x d_e),  V = SN(BN(X W_v)) in {0,1}^(N x C)   (shared)
    R = SN(BN(X W_r)) in {0,1}^(N x m)                                           (spiking router)
    O_i = SN_i((Q_i K^T) V * scale),  Q_i = SN(BN(X W_q,i)) in {0,1}^(N x d_e)   (expert i)
    Y = sum_i R[:, i] (.) O_i;   out = SN(BN(Y W_o))

Each expert plays the role of an attention head, so ``heads`` is not used. The expert neurons use
the run's configured threshold (STEP: 1.0), the scale is 0.125.

EMSP (:class:`ExpertsMixtureMLP`, channel-wise experts; used by ``semm-spikformer``):

    H = SN(BN(X W_1)) in {0,1}^(N x h),  [H_1 | H_2] = H split in halves
    G = SN(BN(DWConv3x3(H_1)))  on the token grid (channel router)
    out = SN(BN((G (.) H_2) W_2))

All products between activations go through :class:`step.layers.SpikeMatMul`.

``released_router_reshape=True`` reproduces STEP's router (``spikf_semm_cifar.py``, ``SSA.forward``):
its BatchNorm output ``[T*B, m, N]`` is reshaped to ``[T, B, N, m]`` without a transpose, so token n
of expert i reads the router value of another (token, expert) pair (flat index i*N + n read as
n'*m + i'). STEP's published SEMM numbers were trained that way. Off by default (the paper's
per-token router); ``semm-spikformer`` turns it on with its own ``released_router_reshape``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from step.layers.fold import SeqModule
from step.layers.linear_bn import LinearBN
from step.layers.spike_matmul import SpikeMatMul
from step.registry import ATTENTIONS


@ATTENTIONS.register("semm", paper="SEMM (Zhou et al., NeurIPS 2024), experts mixture spiking attention (EMSA)")
class ExpertsMixtureAttention(nn.Module):
    """EMSA: m spiking expert attentions sharing K and V, gated per token by a spiking router."""

    emits = "spikes"

    def __init__(self, dim: int, heads: int, neuron: Callable[..., nn.Module], expert_dim: int = 96,
                 num_expert: int = 4, scale: float = 0.125, qkv_bias: bool = True,
                 released_router_reshape: bool = False):
        super().__init__()
        if expert_dim < 1 or num_expert < 1:
            raise ValueError(f"semm: expert_dim and num_expert must be >= 1, got {expert_dim}, {num_expert}")
        self.expert_dim, self.num_expert, self.scale = int(expert_dim), int(num_expert), float(scale)
        self.k = LinearBN(dim, expert_dim, bias=qkv_bias)
        self.k_lif = neuron()
        self.v = LinearBN(dim, dim, bias=qkv_bias)
        self.v_lif = neuron()
        self.router = LinearBN(dim, num_expert, bias=True)
        self.router_lif = neuron()
        self.released_router_reshape = bool(released_router_reshape)
        self.expert_q = nn.ModuleList(LinearBN(dim, expert_dim, bias=qkv_bias) for _ in range(num_expert))
        self.expert_q_lif = nn.ModuleList(neuron() for _ in range(num_expert))
        self.expert_lif = nn.ModuleList(neuron() for _ in range(num_expert))
        self.qk = SpikeMatMul()
        self.av = SpikeMatMul()
        self.gate = SpikeMatMul("hadamard")
        self.proj = LinearBN(dim, dim, bias=True)
        self.proj_lif = neuron()

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        k = self.k_lif(self.k(x))
        v = self.v_lif(self.v(x))
        route = self.router(x)  # [T, B, N, m]
        if self.released_router_reshape:  # STEP: the [T*B, m, N] layout read as [T, B, N, m]
            T, B, N, m = route.shape
            route = route.transpose(-1, -2).reshape(T, B, N, m)
        route = self.router_lif(route)
        y = 0
        for i in range(self.num_expert):
            q = self.expert_q_lif[i](self.expert_q[i](x))
            out = self.expert_lif[i](self.av(self.qk(q, k.transpose(-2, -1)), v) * self.scale)
            y = y + self.gate(route[..., i : i + 1], out)
        return self.proj_lif(self.proj(y))


class ExpertsMixtureMLP(nn.Module):
    """EMSP: channel-wise spiking experts; a depth-wise 3x3 conv of one half routes the other half.

    ``hidden`` must be even (STEP: 4C on CIFAR, so 6C^2 weights against Spikformer MLP's 8C^2).
    ``forward(x, hw)`` needs the token grid ``hw`` for the depth-wise conv.
    """

    emits = "spikes"

    def __init__(self, dim: int, hidden: int, neuron: Callable[..., nn.Module], kernel_size: int = 3):
        super().__init__()
        if hidden % 2:
            raise ValueError(f"EMSP needs an even hidden width, got {hidden}")
        half = hidden // 2
        self.half = half
        self.fc1 = LinearBN(dim, hidden)
        self.fc1_lif = neuron()
        self.dw = SeqModule(nn.Conv2d(half, half, kernel_size, 1, kernel_size // 2, groups=half, bias=False),
                            nn.BatchNorm2d(half))
        self.dw_lif = neuron()
        self.gate = SpikeMatMul("hadamard")
        self.fc2 = LinearBN(half, dim)
        self.fc2_lif = neuron()

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        T, B, N, _ = x.shape
        H, W = hw
        if H * W != N:
            raise ValueError(f"EMSP: token grid {hw} does not hold {N} tokens")
        h1, h2 = self.fc1_lif(self.fc1(x)).chunk(2, dim=-1)
        grid = h1.transpose(-1, -2).reshape(T, B, self.half, H, W)
        g = self.dw_lif(self.dw(grid)).flatten(3).transpose(-1, -2)  # [T, B, N, half]
        return self.fc2_lif(self.fc2(self.gate(g, h2)))
