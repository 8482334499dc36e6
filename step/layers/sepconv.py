"""Meta-SpikeFormer's SepConv token mixer and 3x3 ChannelConv (Yao et al., ICLR 2024, Eq. 7-10).

Both are branches of a Conv-based SNN block on time-major maps ``[T, B, C, H, W]``; they take
spikes and return a membrane potential (no closing neuron), and the block's shortcut
(:class:`step.layers.shortcut.Residual`) supplies the opening neuron, so that with the membrane
shortcut

    U'  = U  + SepConv(SN(U)),       SepConv(S)     = BN(pw2(dw7x7(SN(BN(pw1(S))))))        (Eq. 7, 9)
    U'' = U' + ChannelConv(SN(U')),  ChannelConv(S) = BN(Conv3x3(SN(BN(Conv3x3(S)))))      (Eq. 8, 10)

SepConv is MobileNet-V2's inverted separable conv (expansion 2, 7x7 depthwise, no biases and no
BN between the depthwise and the second pointwise conv, as released: reference/models.md 4.2);
ChannelConv widens C -> 4C -> C with bias-free 3x3 convs.

The depthwise and second pointwise conv have no neuron between them: the pair is one linear map of
the spikes, which folds into a single k x k conv (hidden -> C) at inference, so it declares
``folds_into_one_layer`` and the spike-driven audit (:mod:`step.energy.audit`) asks only its
first layer, the depthwise conv, to read spikes.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from step.layers.fold import SeqModule


class DepthwisePointwise(SeqModule):
    """``BN(pw(dw(x)))``: a linear chain that folds into one conv (see the module doc)."""

    folds_into_one_layer = True


class SepConv(nn.Module):
    """Inverted separable conv: pw1 (C -> rC) -> BN -> SN -> dw k x k -> pw2 (rC -> C) -> BN."""

    emits = "membrane"

    def __init__(self, dim: int, neuron: Callable[..., nn.Module], expansion: float = 2.0, kernel_size: int = 7):
        super().__init__()
        hidden = int(dim * expansion)
        self.pw1 = SeqModule(nn.Conv2d(dim, hidden, 1, bias=False), nn.BatchNorm2d(hidden))
        self.lif = neuron()
        self.dw_pw2 = DepthwisePointwise(
            nn.Conv2d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden, bias=False),
            nn.Conv2d(hidden, dim, 1, bias=False),
            nn.BatchNorm2d(dim),
        )

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.dw_pw2(self.lif(self.pw1(s)))


class ChannelConv(nn.Module):
    """Conv3x3 (C -> rC) -> BN -> SN -> Conv3x3 (rC -> C) -> BN, no biases."""

    emits = "membrane"

    def __init__(self, dim: int, neuron: Callable[..., nn.Module], ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * ratio)
        self.conv1 = SeqModule(nn.Conv2d(dim, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden))
        self.lif = neuron()
        self.conv2 = SeqModule(nn.Conv2d(hidden, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.lif(self.conv1(s)))
