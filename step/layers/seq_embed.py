"""1-D spiking patch embedding for sequences: Spikformer's SPS with 1-D convolutions.

The sequential counterpart of :class:`step.layers.patch_embed.SpikingPatchSplitting`, used for
sMNIST / psMNIST / sCIFAR-10, MNIST-1D and SHD (the STEP sequential ablations feed Spikformer
through a 1-D embedding). Input ``[T, B, L, C]`` (length-major, as datasets deliver ``[L, C]``),
output tokens ``[T, B, N, D]`` with ``N = ceil(L / patch_size)`` after ``log2(patch_size)`` pools.

Channels grow ``C -> D/8 -> D/4 -> D/2 -> D`` through ``Conv1d(kernel_size, padding k//2, no
bias) -> BatchNorm1d -> neuron``; the last ``log2(patch_size)`` stages end in ``MaxPool1d(3, 2, 1)``.
A conv-BN-neuron relative position embedding is added to the last stage's spikes, as in SPS.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from step.layers.fold import SeqModule
from step.layers.patch_embed import pooling_stages


class SpikingSeqEmbed(nn.Module):
    """``[T, B, L, C_in]`` -> tokens ``[T, B, N, D]`` through four Conv1d-BN-neuron stages and a 1-D RPE."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, neuron: Callable[..., nn.Module], kernel_size: int = 3):
        super().__init__()
        if dim % 8:
            raise ValueError(f"the sequence embedding needs dim divisible by 8, got {dim}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (length-preserving), got {kernel_size}")
        widths = [in_chans, dim // 8, dim // 4, dim // 2, dim]
        pad = kernel_size // 2
        self.patch_size = patch_size
        stages = []
        for i, pool in enumerate(pooling_stages(patch_size)):
            conv = SeqModule(nn.Conv1d(widths[i], widths[i + 1], kernel_size, 1, pad, bias=False), nn.BatchNorm1d(widths[i + 1]))
            after = SeqModule(nn.MaxPool1d(3, 2, 1)) if pool else nn.Identity()
            stages.append(nn.ModuleDict({"conv": conv, "lif": neuron(), "pool": after}))
        self.stages = nn.ModuleList(stages)
        self.rpe_conv = SeqModule(nn.Conv1d(dim, dim, kernel_size, 1, pad, bias=False), nn.BatchNorm1d(dim))
        self.rpe_lif = neuron()

    def num_tokens(self, seq_len: int) -> int:
        """N for an input of length ``seq_len`` (each pool maps n to ceil(n / 2))."""
        n = seq_len
        for stage in self.stages:
            if not isinstance(stage["pool"], nn.Identity):
                n = (n + 1) // 2
        return n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"SpikingSeqEmbed expects [T, B, L, C], got shape {tuple(x.shape)}")
        x = x.transpose(-1, -2).contiguous()  # [T, B, C, L]
        for stage in self.stages:
            x = stage["pool"](stage["lif"](stage["conv"](x)))
        x = x + self.rpe_lif(self.rpe_conv(x))
        return x.transpose(-1, -2).contiguous()  # [T, B, N, D]
