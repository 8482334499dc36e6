"""Spiking FPN neck and spiking semantic-FPN head (Kirillov et al., CVPR 2019, "Panoptic FPN").

Meta-SpikeFormer (sec. 4.4, App. C.3) runs its backbones with a Semantic FPN re-implemented in a
spike-driven way. Here every convolution reads spikes: each unit is neuron -> conv -> BN, with the
neurons built by the run's :class:`~step.neurons.factory.NeuronFactory`.

FPN (Lin et al., CVPR 2017): ``L_i = BN(Conv1x1(SN(C_i)))``; top-down ``P_top = L_top``,
``P_i = L_i + Up2(P_{i+1})`` (nearest, so summed spike-driven maps stay integer); outputs
``F_i = BN(Conv3x3(SN(P_i)))``.

Semantic head: level ``i`` at stride ``s_i`` goes through ``max(1, log2(s_i / s_0))`` units of
neuron -> conv3x3 -> BN, each followed by a 2x upsample while coarser than the finest level; the
branches are summed, a neuron spikes, a 1x1 conv gives class scores, the mean over T gives logits,
and a bilinear upsample brings them to the input size.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from step.layers.fold import SeqModule, fold, unfold


def upsample_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest upsampling of ``[T, B, C, h, w]`` to ``size`` (binary inputs stay binary)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return unfold(F.interpolate(fold(x), size=tuple(size), mode="nearest"), x.shape[0])


class SpikingConvUnit(nn.Module):
    """``x -> BN(Conv(SN(x)))`` on ``[T, B, C, h, w]``: the conv always reads spikes."""

    def __init__(self, c_in: int, c_out: int, kernel: int, neuron: Callable[..., nn.Module]):
        super().__init__()
        self.lif = neuron()
        self.conv = SeqModule(nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.lif(x))


class SpikingFPN(nn.Module):
    """Feature pyramid over the backbone's scales (finest first) -> ``dim`` channels at every scale."""

    def __init__(self, in_channels: Sequence[int], dim: int, neuron: Callable[..., nn.Module]):
        super().__init__()
        self.lateral = nn.ModuleList(SpikingConvUnit(c, dim, 1, neuron) for c in in_channels)
        self.output = nn.ModuleList(SpikingConvUnit(dim, dim, 3, neuron) for _ in in_channels)
        self.dim = dim

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(maps) != len(self.lateral):
            raise ValueError(f"FPN built for {len(self.lateral)} scales got {len(maps)}")
        laterals = [lat(m) for lat, m in zip(self.lateral, maps)]
        for i in range(len(laterals) - 2, -1, -1):  # top-down
            laterals[i] = laterals[i] + upsample_to(laterals[i + 1], laterals[i].shape[-2:])
        return [out(p) for out, p in zip(self.output, laterals)]


class _ScaleBranch(nn.Module):
    def __init__(self, dim: int, head_dim: int, n_up: int, neuron: Callable[..., nn.Module]):
        super().__init__()
        self.units = nn.ModuleList(
            SpikingConvUnit(dim if i == 0 else head_dim, head_dim, 3, neuron) for i in range(max(1, n_up))
        )
        self.n_up = n_up

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        for unit in self.units:
            x = unit(x)
            if self.n_up:
                x = upsample_to(x, (x.shape[-2] * 2, x.shape[-1] * 2))
        return upsample_to(x, size) if tuple(x.shape[-2:]) != tuple(size) else x


class SpikingSemanticHead(nn.Module):
    """FPN levels ``[T, B, dim, h_i, w_i]`` -> per-pixel logits ``[B, num_classes, H, W]``."""

    def __init__(self, dim: int, head_dim: int, num_classes: int, level_sizes: Sequence[Sequence[int]],
                 neuron: Callable[..., nn.Module]):
        super().__init__()
        finest = level_sizes[0][0]
        ups = [int(round(math.log2(finest / max(s[0], 1)))) for s in level_sizes]
        self.branches = nn.ModuleList(_ScaleBranch(dim, head_dim, n, neuron) for n in ups)
        self.cls_lif = neuron()
        self.classifier = SeqModule(nn.Conv2d(head_dim, num_classes, 1))

    def forward(self, levels: Sequence[torch.Tensor], out_size: Sequence[int]) -> torch.Tensor:
        size = levels[0].shape[-2:]
        fused = sum(branch(x, size) for branch, x in zip(self.branches, levels))
        logits = self.classifier(self.cls_lif(fused)).mean(0)  # [B, K, h0, w0]
        return F.interpolate(logits, size=tuple(out_size), mode="bilinear", align_corners=False)
