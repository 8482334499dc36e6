"""Spikformer's spiking patch splitting (SPS): four conv-BN-neuron stages and a conv RPE."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from step.layers.fold import SeqModule


def pooling_stages(patch_size: int, stages: int = 4) -> list[bool]:
    """Which of the ``stages`` conv stages end in a stride-2 max-pool (the last log2(patch) ones)."""
    n_pool = int(round(math.log2(patch_size)))
    if 2**n_pool != patch_size or not 0 <= n_pool <= stages:
        raise ValueError(f"patch_size must be a power of two between 1 and {2**stages}, got {patch_size}")
    return [i >= stages - n_pool for i in range(stages)]


def pools_per_stage(patch_size: int, stages: int) -> list[int]:
    """Stride-2 max-pools after each of ``stages`` conv stages: one in each of the last log2(patch)
    stages, and any pools left over (fewer stages than pools) all after the last stage."""
    n_pool = int(round(math.log2(patch_size)))
    if 2**n_pool != patch_size or n_pool < 0:
        raise ValueError(f"patch_size must be a power of two, got {patch_size}")
    if stages < 1:
        raise ValueError(f"the patch embedding needs at least one conv stage, got {stages}")
    counts = [1 if i >= stages - n_pool else 0 for i in range(stages)]
    counts[-1] += max(0, n_pool - stages)
    return counts


class SpikingPatchSplitting(nn.Module):
    """``[T, B, C_in, H, W]`` -> tokens ``[T, B, N, D]`` with N = (H/patch) * (W/patch).

    Channels grow in -> D/8 -> D/4 -> D/2 -> D through 3x3 convs without bias, each followed by BN
    and a neuron; the last ``log2(patch_size)`` stages max-pool (3, stride 2, pad 1). A conv-BN-neuron
    relative position embedding is added to the last stage's spikes (values in {0, 1, 2}).

    ``stages`` (4 in the paper) is the patch-embedding depth ablated by STEP: with k stages the
    widths are D/2^(k-1), ..., D/2, D, and a stage count below log2(patch) pools repeatedly after
    the last stage so the token grid stays the same.
    """

    def __init__(self, in_chans: int, dim: int, patch_size: int, neuron: Callable[..., nn.Module], stages: int = 4):
        super().__init__()
        if dim % 2 ** (stages - 1):
            raise ValueError(f"SPS with {stages} stages needs dim divisible by {2 ** (stages - 1)}, got {dim}")
        widths = [in_chans] + [dim // 2 ** (stages - 1 - i) for i in range(stages)]
        pools = pools_per_stage(patch_size, stages)
        self.patch_size = patch_size
        stages_ = []
        for i, n_pools in enumerate(pools):
            conv = SeqModule(nn.Conv2d(widths[i], widths[i + 1], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[i + 1]))
            after = SeqModule(*[nn.MaxPool2d(3, 2, 1) for _ in range(n_pools)]) if n_pools else nn.Identity()
            stages_.append(nn.ModuleDict({"conv": conv, "lif": neuron(), "pool": after}))
        self.stages = nn.ModuleList(stages_)
        self.rpe_conv = SeqModule(nn.Conv2d(dim, dim, 3, 1, 1, bias=False), nn.BatchNorm2d(dim))
        self.rpe_lif = neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage["pool"](stage["lif"](stage["conv"](x)))
        x = x + self.rpe_lif(self.rpe_conv(x))
        return x.flatten(-2).transpose(-1, -2).contiguous()  # [T, B, N, D]
