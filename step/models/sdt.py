"""Spike-driven Transformer v1 (SDT; Yao et al., NeurIPS 2023): MS_SPS patch embedding, blocks with
the membrane shortcut, and a neuron before the classifier (reference/models.md sec. 3).

Architecture, input ``[T, B, C_in, H, W]``:

* :class:`MSPatchEmbed` (MS_SPS): stages 1-3 ``Conv3x3 -> BN -> SN -> [pool]``, stage 4
  ``Conv3x3 -> BN -> [pool]`` = U (a membrane); ``out = U + BN(Conv3x3(SN(U)))`` (RPE). Widths
  in -> D/8 -> D/4 -> D/2 -> D, bias-free; ``pooling_stat`` (4 characters of 0/1) says which
  stages end in MaxPool(3, 2, 1): CIFAR "0011", ImageNet "1111", CIFAR10-DVS (64 px) "0011",
  Gesture (128 px) "0111".
* ``depth`` blocks on tokens ``[T, B, N, D]``: ``U <- U + Attn(SN(U)); U <- U + MLP(SN(U))``
  (membrane shortcut ``ms``; ``sew`` and ``vs`` are the ablations of :mod:`step.layers.shortcut`).
  The attention comes from the run's AttentionFactory; SDT v1's own is ``sdsa1``
  (``model=sdt-*`` selects it on the command line; it is also the Python default when none is given).
  MLP: ``BN(fc2(SN(BN(fc1(S)))))``, hidden ``mlp_ratio * D``, biases.
* head: mean over tokens -> SN -> Linear(D, classes) -> mean over T.
* ``pooling``: ``none``, or ``erode``, the released code's DVS mode (``dvs_mode``, on for CIFAR10-DVS):
  SDSA-1 max-pools its K and V spike maps and two products 3 x 3 (:mod:`step.layers.erode`).

Parameter counts: the released code also builds one ``talking_heads`` Conv1d(h, h) per block that
its forward never calls, so its printed totals hold ``depth * heads^2`` dead weights (10,279,716
for 2-512 at 100 classes). Here only modules the forward uses are built: 2-512 has 10,279,588
parameters at 100 classes (10,233,418 at 10), which is the published 10.28M at its 0.01M
rounding; ImageNet 6-512 and 10-512 give 23,373,352 and 36,005,416 (23.37M, 36.01M).
"""

from __future__ import annotations

import torch
from torch import nn

from step.attention.factory import AttentionFactory
from step.errors import ConfigError
from step.layers.fold import SeqModule
from step.layers.linear_bn import LinearBN
from step.layers.shortcut import Residual, check_shortcut, stream_carries_spikes
from step.models.common import PerTimestepLogits, resolve_components
from step.neurons.factory import NeuronFactory
from step.registry import MODELS

_PAPER = "Spike-driven Transformer (Yao et al., NeurIPS 2023)"


def parse_pooling_stat(pooling_stat: str) -> list[bool]:
    """``"0011"`` -> ``[False, False, True, True]`` (which SPS stages max-pool)."""
    s = str(pooling_stat)
    if len(s) != 4 or set(s) - {"0", "1"}:
        raise ConfigError(f"sdt: pooling_stat must be 4 characters of 0/1 (e.g. \"0011\"), got {pooling_stat!r}.")
    return [c == "1" for c in s]


class MSPatchEmbed(nn.Module):
    """MS_SPS: ``[T, B, C_in, H, W]`` -> membrane maps ``[T, B, D, H', W']``."""

    def __init__(self, in_chans: int, dim: int, pooling_stat: str, neuron):
        super().__init__()
        if dim % 8:
            raise ConfigError(f"sdt: the patch embedding needs dim divisible by 8, got {dim}.")
        pools = parse_pooling_stat(pooling_stat)
        widths = [in_chans, dim // 8, dim // 4, dim // 2, dim]
        self.convs = nn.ModuleList(
            SeqModule(nn.Conv2d(widths[i], widths[i + 1], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[i + 1]))
            for i in range(4)
        )
        self.lifs = nn.ModuleList(neuron() for _ in range(3))  # stage 4 ends without a neuron
        self.pools = nn.ModuleList(SeqModule(nn.MaxPool2d(3, 2, 1)) if p else nn.Identity() for p in pools)
        self.rpe_lif = neuron()
        self.rpe_conv = SeqModule(nn.Conv2d(dim, dim, 3, 1, 1, bias=False), nn.BatchNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(4):
            x = self.convs[i](x)
            if i < 3:
                x = self.lifs[i](x)
            x = self.pools[i](x)
        return x + self.rpe_conv(self.rpe_lif(x))


class SpikeDrivenMLP(nn.Module):
    """``BN(fc2(SN(BN(fc1(S)))))`` on tokens: spikes in, membrane out (the shortcut adds the opening SN)."""

    emits = "membrane"

    def __init__(self, dim: int, hidden: int, neuron):
        super().__init__()
        self.fc1 = LinearBN(dim, hidden, bias=True)
        self.lif = neuron()
        self.fc2 = LinearBN(hidden, dim, bias=True)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.lif(self.fc1(s)))


class SDTBlock(nn.Module):
    """``x <- join(x, Attn); x <- join(x, MLP)`` with the chosen shortcut (``ms``, ``sew`` or ``vs``;
    each branch is joined by the rule of :mod:`step.layers.shortcut`)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, neuron, attention: AttentionFactory, shortcut: str):
        super().__init__()
        self.shortcut = shortcut
        self.attn = Residual(attention(dim=dim, heads=heads, neuron=neuron), shortcut, neuron)
        self.mlp = Residual(SpikeDrivenMLP(dim, int(dim * mlp_ratio), neuron), shortcut, neuron)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return self.mlp(self.attn(x, hw))


def init_sdt_weights(model: nn.Module, *heads: nn.Linear | None) -> None:
    """trunc_normal(0.02) conv and token-linear weights, zero biases, BN at (1, 0); the
    classifiers (``heads``) keep PyTorch's default init, as in the released SDT code."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and not any(m is h for h in heads):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SpikeDrivenTransformer(PerTimestepLogits, nn.Module):
    """Input ``[T, B, C_in, H, W]`` -> logits ``[B, num_classes]``.

    ``forward_features`` returns the residual stream as tokens ``[T, B, N, D]`` (N = H' W', row-major
    over the final grid); ``feature_grid(img_size)`` gives ``(H', W')``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        img_size: int = 32,
        in_chans: int = 3,
        depth: int = 2,
        dim: int = 512,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        pooling_stat: str = "0011",
        shortcut: str = "ms",
        pooling: str = "none",
        neuron: NeuronFactory | None = None,
        attention: AttentionFactory | None = None,
    ):
        super().__init__()
        neuron, attention = resolve_components(neuron, attention or AttentionFactory("sdsa1"))
        if pooling != "none":
            if attention.name != "sdsa1" or pooling != "erode":
                raise ConfigError(f"sdt: pooling={pooling!r} is the released SDT DVS mode: pooling=erode inside SDSA-1 "
                                  f"(attention=sdsa1); this run has attention={attention.name}.")
            attention = attention.with_params(pooling=pooling)
        self.pooling = str(pooling)
        self.shortcut = check_shortcut(shortcut, "sdt")
        self.num_classes, self.img_size, self.pooling_stat = num_classes, img_size, str(pooling_stat)
        self.patch_embed = MSPatchEmbed(in_chans, dim, self.pooling_stat, neuron)
        self.entry_lif = neuron() if stream_carries_spikes(shortcut) else None
        self.blocks = nn.ModuleList(
            SDTBlock(dim, heads, mlp_ratio, neuron, attention, shortcut) for _ in range(depth)
        )
        # the head neuron turns the pooled membrane (ms) or spike counts (sew) into spikes; a vs stream
        # is binary and pools to rates in [0, 1] that a LIF of threshold 1 (tau 2) never fires on, so
        # the classifier saw zeros and nothing trained: there the rates feed the classifier directly
        # (charged as non-spike MACs by the energy meter)
        self.head_lif = nn.Identity() if shortcut == "vs" else neuron()
        self.head = nn.Linear(dim, num_classes)
        init_sdt_weights(self, self.head)

    def feature_grid(self, img_size: int) -> tuple[int, int]:
        n = img_size
        for pool in parse_pooling_stat(self.pooling_stat):
            n = (n + 1) // 2 if pool else n
        return n, n

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        u = self.patch_embed(x)  # [T, B, D, H', W']
        hw = (u.shape[-2], u.shape[-1])
        x = u.flatten(-2).transpose(-1, -2).contiguous()  # [T, B, N, D]
        if self.entry_lif is not None:
            x = self.entry_lif(x)
        for block in self.blocks:
            x = block(x, hw)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.head_lif(self.forward_features(x).mean(2)))  # [T, B, K]
        return logits if self._timestep_output() else logits.mean(0)


MODELS.add("sdt", SpikeDrivenTransformer, paper=_PAPER,
           description="Spike-driven Transformer v1 of any depth and width (depth, dim, heads, pooling_stat, shortcut)")

_VARIANTS = {
    # name: (depth, dim, pooling_stat, img_size, in_chans)  -- the released configs (models.md 3.5)
    "sdt-2-512": (2, 512, "0011", 32, 3),
    "sdt-8-384": (8, 384, "1111", 224, 3),
    "sdt-6-512": (6, 512, "1111", 224, 3),
    "sdt-8-512": (8, 512, "1111", 224, 3),
    "sdt-10-512": (10, 512, "1111", 224, 3),
    "sdt-8-768": (8, 768, "1111", 224, 3),
    "sdt-2-256": (2, 256, "0011", 64, 2),  # CIFAR10-DVS at 64 x 64
}
for _name, (_depth, _dim, _pool, _img, _in) in _VARIANTS.items():
    MODELS.add(
        _name,
        SpikeDrivenTransformer,
        paper=_PAPER,
        description=f"SDT-{_depth}-{_dim} (8 heads, pooling {_pool}, {_img} px)",
        depth=_depth,
        dim=_dim,
        heads=8,
        pooling_stat=_pool,
        img_size=_img,
        in_chans=_in,
    )
