"""Spike-driven self-attention SDSA-1..4 (SDT v1, Yao et al., NeurIPS 2023; Meta-SpikeFormer,
Yao et al., ICLR 2024, Sec. 3.3 and Appendix A).

Every variant takes spike tokens ``[T, B, N, C]`` (the block's shortcut makes them) and returns a
membrane potential of the same shape for the block's shortcut: there is no neuron after the
output projection (``emits = "membrane"``; a spike-add host closes it with a neuron, see
:mod:`step.layers.shortcut`). Q, K, V are binary:

    Q_S = SN(BN(G_q(S))),  K_S = SN(BN(G_k(S))),  V_S = SN(BN(G_v(S)))            (Eq. 11 / 17)
    out = BN(G_o(SDSA(Q_S, K_S, V_S)))                                              (Eq. 12)

with the generators ``G`` chosen by ``qkv`` and ``proj``: ``linear`` (1x1 conv: Q/K/V without
bias, projection with bias, as SDT v1) or ``repconv`` (the 3x3 re-parameterisable conv of
:mod:`step.layers.repconv`, as Meta-SpikeFormer; it needs the token grid ``hw``). Table 5 of the
paper ablates both ("RepConv-1/2/3 -> Linear", "RepConv-4 -> Linear").

Every product between activations runs through a :class:`step.layers.SpikeMatMul` in the order
it is computed, so the energy counter charges what happens. A column sum over tokens is written as
the product it equals (``SUM_c(a * b) = a^T b`` per channel, Appendix A.2), so it is counted as
the N D additions of Table 6.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from step.errors import ConfigError
from step.layers.erode import erode_grid, erode_heads
from step.layers.linear_bn import LinearBN
from step.layers.repconv import TokenRepConvBN
from step.layers.spike_matmul import SpikeMatMul
from step.registry import ATTENTIONS

GENERATORS = ("linear", "repconv")
_PAPER = "Meta-SpikeFormer (Yao et al., ICLR 2024)"


class _TokenLinearBN(LinearBN):
    """``BN(Linear(x))`` on tokens; ignores the grid (the 1x1-conv generator)."""

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        return super().forward(x)


def make_generator(kind: str, dim: int, bias: bool, variant: str) -> nn.Module:
    """A Q/K/V or output generator ``forward(x, hw)``: ``linear`` or ``repconv`` (both end in BN)."""
    if kind == "linear":
        return _TokenLinearBN(dim, dim, bias=bias)
    if kind == "repconv":
        return TokenRepConvBN(dim, dim)
    raise ConfigError(f"{variant}: generator {kind!r} is not one of {', '.join(GENERATORS)}.")


class SpikeDrivenAttention(nn.Module):
    """Shared body: generators, neurons and head reshaping; subclasses define :meth:`mix`."""

    emits = "membrane"
    uses_key = True
    variant = "sdsa"

    def __init__(self, dim: int, heads: int, neuron: Callable[..., nn.Module], qkv: str, proj: str):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"{self.variant}: dim {dim} is not divisible by heads {heads}.")
        self.heads, self.qkv_kind, self.proj_kind = heads, qkv, proj
        self.q = make_generator(qkv, dim, False, self.variant)
        self.q_lif = neuron()
        if self.uses_key:
            self.k = make_generator(qkv, dim, False, self.variant)
            self.k_lif = neuron()
        self.v = make_generator(qkv, dim, False, self.variant)
        self.v_lif = neuron()
        self.proj = make_generator(proj, dim, True, self.variant)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, D = x.shape
        return x.reshape(T, B, N, self.heads, D // self.heads).transpose(2, 3)  # [T, B, h, N, d]

    @staticmethod
    def _merge(y: torch.Tensor) -> torch.Tensor:
        T, B, h, N, d = y.shape
        return y.transpose(2, 3).reshape(T, B, N, h * d)

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        q = self._heads(self.q_lif(self.q(x, hw)))
        k = self._heads(self.k_lif(self.k(x, hw))) if self.uses_key else None
        v = self._heads(self.v_lif(self.v(x, hw)))
        return self.proj(self.mix(q, k, v), hw)

    def mix(self, q: torch.Tensor, k: torch.Tensor | None, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"heads={self.heads}, qkv={self.qkv_kind!r}, proj={self.proj_kind!r}"


@ATTENTIONS.register("sdsa1", paper="Spike-driven Transformer (Yao et al., NeurIPS 2023), Eq. 18 of " + _PAPER)
class SDSA1(SpikeDrivenAttention):
    """SDSA-1: ``Q_S (x) SN_{u}(SUM_c(K_S (x) V_S))`` (Eq. 18), linear in N.

    ``KV = SUM_c(K_S (x) V_S)`` sums the Hadamard product over tokens, one D-vector per sample
    (computed as the per-channel product ``K_S[:, c]^T V_S[:, c]``); a neuron with threshold
    ``attn_threshold`` (0.5 in SDT v1's ``talking_heads_lif``) turns it into a channel mask that
    is applied to Q by a Hadamard product. No scale. ``heads`` only splits channels: every
    operation is per channel, so it does not change the result. SDT v1 builds a ``talking_heads``
    Conv1d(h, h) that its forward never calls; it is not built here.

    ``pooling="erode"`` is SDT v1's DVS mode (:mod:`step.layers.erode`; SDT sets it from
    ``model.pooling``): the K and V spike maps are 3 x 3 max-pooled over the grid, and ``K (x) V``
    (then summed over tokens) and the masked Q are 3 x 3 max-pooled over (token, channel) in head layout.
    """

    variant = "sdsa1"

    POOLINGS = ("none", "erode")

    def __init__(self, dim: int, heads: int, neuron: Callable[..., nn.Module], attn_threshold: float = 0.5,
                 qkv: str = "linear", proj: str = "linear", pooling: str = "none"):
        super().__init__(dim, heads, neuron, qkv, proj)
        if pooling not in self.POOLINGS:
            raise ConfigError(f"sdsa1: pooling must be one of {', '.join(self.POOLINGS)}, got {pooling!r}.")
        self.pooling = str(pooling)
        self.attn_threshold = float(attn_threshold)
        if self.pooling == "erode":  # K (x) V is pooled before its token sum: both products are explicit
            self.kv_product = SpikeMatMul("hadamard")
            self.kv_sum = SpikeMatMul("matmul")
        else:
            self.kv = SpikeMatMul("matmul")  # per-channel K^T V: the token sum of K (x) V
        self.attn_lif = neuron(v_threshold=self.attn_threshold)
        self.mask = SpikeMatMul("hadamard")

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        if self.pooling == "none":
            return super().forward(x, hw)
        q = self._heads(self.q_lif(self.q(x, hw)))
        k = self._heads(erode_grid(self.k_lif(self.k(x, hw)), hw))
        v = self._heads(erode_grid(self.v_lif(self.v(x, hw)), hw))
        return self.proj(self.mix(q, k, v), hw)

    def mix(self, q, k, v):
        T, B, h, N, d = q.shape
        if self.pooling == "erode":
            kv = erode_heads(self.kv_product(k, v))  # [T, B, h, N, d]
            kv = self.kv_sum(kv.new_ones(T, B, h, 1, N), kv)  # token sum: [T, B, h, 1, d]
            return self._merge(erode_heads(self.mask(q, self.attn_lif(kv))))
        kv = self.kv(k.transpose(-2, -1).unsqueeze(-2), v.transpose(-2, -1).unsqueeze(-1))  # [T,B,h,d,1,1]
        kv = self.attn_lif(kv.reshape(T, B, h, 1, d))
        return self._merge(self.mask(q, kv))

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", pooling={self.pooling!r}" if self.pooling != "none" else "")


@ATTENTIONS.register("sdsa2", paper=_PAPER + ", Eq. 19")
class SDSA2(SpikeDrivenAttention):
    """SDSA-2: ``SN_{u}(SUM_c(Q_S)) (x) V_S`` (Eq. 19): binary channel scores from Q alone mask V.

    There is no key (no K generator, no K neuron: 8.7% fewer parameters in the paper's Table 5).
    ``SUM_c(Q_S) = 1^T Q_S`` sums Q over tokens; the neuron's threshold is ``attn_threshold``
    (the paper gives none; SDSA-1's 0.5 is the default).
    """

    variant = "sdsa2"
    uses_key = False

    def __init__(self, dim: int, heads: int, neuron: Callable[..., nn.Module], attn_threshold: float = 0.5,
                 qkv: str = "repconv", proj: str = "repconv"):
        super().__init__(dim, heads, neuron, qkv, proj)
        self.attn_threshold = float(attn_threshold)
        self.q_sum = SpikeMatMul("matmul")  # 1^T Q: the token sum of Q
        self.attn_lif = neuron(v_threshold=self.attn_threshold)
        self.mask = SpikeMatMul("hadamard")

    def mix(self, q, k, v):
        ones = q.new_ones(*q.shape[:-2], 1, q.shape[-2])  # [T, B, h, 1, N]
        scores = self.attn_lif(self.q_sum(ones, q))  # [T, B, h, 1, d]
        return self._merge(self.mask(scores, v))


@ATTENTIONS.register("sdsa3", paper=_PAPER + ", Eq. 15 / 20 (the paper's default)")
class SDSA3(SpikeDrivenAttention):
    """SDSA-3: ``SN_s(Q_S (K_S^T V_S))`` (Eq. 15 / 20), computed K-first so the cost is 2 N d^2 per
    head (linear in N).

    Spikformer's ``SN(Q K^T V * s)`` needs a scale because Q K^T V is a large integer; SDSA-3
    merges it into the neuron instead: ``SN_s`` fires at ``s * u_th`` and no multiplication by a
    scale happens. ``threshold_scale`` is the paper's s, ``attn_threshold`` is u_th. The released
    code multiplies by 0.125 and fires at 0.5, which is the same forward as s = 8, u_th = 0.5
    (reference/models.md 4.3); ``merge_scale: false`` reproduces that literal form (multiply by
    1/s, fire at u_th), whose surrogate gradients differ.
    """

    variant = "sdsa3"
    learnable = False

    def __init__(self, dim: int, heads: int, neuron: Callable[..., nn.Module], threshold_scale: float = 8.0,
                 attn_threshold: float = 0.5, merge_scale: bool = True, qkv: str = "repconv", proj: str = "repconv"):
        super().__init__(dim, heads, neuron, qkv, proj)
        if threshold_scale <= 0:
            raise ConfigError(f"{self.variant}: threshold_scale must be > 0, got {threshold_scale}.")
        self.threshold_scale = float(threshold_scale)
        self.attn_threshold = float(attn_threshold)
        self.merge_scale = bool(merge_scale)
        self.kv = SpikeMatMul("matmul")
        self.qkv_product = SpikeMatMul("matmul")
        if self.merge_scale:
            th = self.threshold_scale * self.attn_threshold
            extra = {"learnable_threshold": True} if self.learnable else {}
            self.attn_lif = neuron(v_threshold=th, **extra)
        else:
            self.attn_lif = neuron(v_threshold=self.attn_threshold)

    def neuron_overrides(self) -> dict:
        """The attention neuron's values set here on purpose (read by step.neurons.check_nodes)."""
        if not self.merge_scale:
            return {"attn_lif": {"v_threshold": self.attn_threshold}}
        extra = {"learnable_threshold": True} if self.learnable else {}
        return {"attn_lif": {"v_threshold": self.threshold_scale * self.attn_threshold, **extra}}

    def mix(self, q, k, v):
        y = self._merge(self.qkv_product(q, self.kv(k.transpose(-2, -1), v)))  # Q (K^T V)
        return self.attn_lif(y if self.merge_scale else y / self.threshold_scale)


@ATTENTIONS.register("sdsa4", paper=_PAPER + ", Appendix A.2 (SDSA-4)")
class SDSA4(SDSA3):
    """SDSA-4: SDSA-3 whose attention-neuron threshold is a learnable parameter initialised at
    ``s * u_th`` (``threshold_scale * attn_threshold``); one extra parameter per block."""

    variant = "sdsa4"
    learnable = True

    def __init__(self, dim: int, heads: int, neuron: Callable[..., nn.Module], threshold_scale: float = 8.0,
                 attn_threshold: float = 0.5, qkv: str = "repconv", proj: str = "repconv"):
        super().__init__(dim, heads, neuron, threshold_scale, attn_threshold, True, qkv, proj)
