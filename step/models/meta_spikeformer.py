"""Meta-SpikeFormer / Spike-driven Transformer V2 (Yao et al., ICLR 2024; Table 7, Fig. 2,
reference/models.md sec. 4).

Five sub-stages of widths ``dims = (C, 2C, 4C, 8C, D4)`` and block counts ``depths``; each opens
with a downsampling conv of stride ``strides[i]``:

| sub-stage | downsampling                                     | blocks (Table 7: 1, 1, 2, 6, 2)      |
|-----------|--------------------------------------------------|--------------------------------------|
| 1a        | Conv7x7 (in -> C, bias) + BN, no neuron          | Conv-based SNN blocks (C)            |
| 1b        | SN -> Conv3x3 (C -> 2C, bias) + BN               | Conv-based SNN blocks (2C)           |
| 2         | SN -> Conv3x3 (2C -> 4C, bias) + BN              | Conv-based SNN blocks (4C)           |
| 3         | SN -> Conv3x3 (4C -> 8C, bias) + BN              | Transformer-based SNN blocks (8C)    |
| 4         | SN -> Conv3x3 stride 1 (8C -> D4, bias) + BN     | Transformer-based SNN blocks (D4)    |

Conv-based block (Eq. 7-10): ``U <- U + SepConv(SN(U)); U <- U + ChannelConv(SN(U))``.
Transformer-based block (Eq. 11-14): ``U <- U + Attn(SN(U)); U <- U + MLP(SN(U))`` on tokens, the
attention from the run's AttentionFactory. The paper's default is ``sdsa3`` with RepConv Q/K/V
and output (conf/attention/sdsa3.yaml, which ``model=meta-spikeformer-*`` selects); the Python
default when no factory is given is ``sdsa3`` too. Head: mean over tokens -> SN -> Linear -> mean
over T (``distill_head``: plus DeiT's distillation head, see ``forward``). ``shortcut`` swaps the
membrane shortcut for ``sew``/``vs`` everywhere
(the stream then carries spikes and each downsampling ends in a neuron instead of opening with one).

Published sizes at 1000 classes, 224 px (every module built is used by the forward):
15M = dims (32, 64, 128, 256, 360): 15,112,208; 31M = (48, 96, 192, 384, 480): 31,333,864;
55M = (64, 128, 256, 512, 640): 55,350,248 (55,991,248 with the distillation head of the released
T=4 fine-tune). Stage 4 is 360/480/640, not 10C (models.md 4.4).

``forward_features`` returns the four paper stages' outputs, a list of residual-stream maps
``[T, B, C_i, H_i, W_i]`` (membrane potentials under ``ms``, spikes otherwise) at overall strides
4, 8, 16, 16 for the ImageNet strides: stage 1 = after sub-stage 1b, then 2, 3 and 4.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from step.attention.factory import AttentionFactory
from step.errors import ConfigError
from step.layers.fold import SeqModule
from step.layers.sepconv import ChannelConv, SepConv
from step.layers.shortcut import Residual, check_shortcut, stream_carries_spikes
from step.models.common import PerTimestepLogits, resolve_components
from step.models.sdt import SDTBlock, init_sdt_weights
from step.neurons.factory import NeuronFactory
from step.registry import MODELS

_PAPER = "Meta-SpikeFormer (Yao et al., ICLR 2024), Table 7"


class Downsample(nn.Module):
    """``BN(Conv(SN(x)))`` on a membrane stream, ``SN(BN(Conv(x)))`` on a spike stream; the first
    (on the input frames) has no opening neuron."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, neuron, opening: bool, closing: bool):
        super().__init__()
        self.pre_lif = neuron() if opening else None
        self.conv = SeqModule(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=True), nn.BatchNorm2d(cout))
        self.post_lif = neuron() if closing else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_lif is not None:
            x = self.pre_lif(x)
        x = self.conv(x)
        return self.post_lif(x) if self.post_lif is not None else x


class ConvBlock(nn.Module):
    """Conv-based SNN block: SepConv token mixer, then the 3x3 ChannelConv, each behind a shortcut."""

    def __init__(self, dim: int, neuron, shortcut: str, sepconv_ratio: float, conv_ratio: float):
        super().__init__()
        self.sepconv = Residual(SepConv(dim, neuron, expansion=sepconv_ratio), shortcut, neuron)
        self.channel_conv = Residual(ChannelConv(dim, neuron, ratio=conv_ratio), shortcut, neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_conv(self.sepconv(x))


def _five(values: Sequence[int], key: str) -> list[int]:
    values = [int(v) for v in values]
    if len(values) != 5 or min(values) < 0:
        raise ConfigError(f"meta-spikeformer: {key} needs 5 non-negative integers (sub-stages 1a, 1b, 2, 3, 4), got {values}.")
    return values


class MetaSpikeFormer(PerTimestepLogits, nn.Module):
    """Input ``[T, B, C_in, H, W]`` -> logits ``[B, num_classes]``; see the module docstring."""

    def __init__(
        self,
        num_classes: int = 1000,
        img_size: int = 224,
        in_chans: int = 3,
        dims: Sequence[int] = (32, 64, 128, 256, 360),
        depths: Sequence[int] = (1, 1, 2, 6, 2),
        strides: Sequence[int] = (2, 2, 2, 2, 1),
        heads: int = 8,
        mlp_ratio: float = 4.0,
        sepconv_ratio: float = 2.0,
        conv_ratio: float = 4.0,
        shortcut: str = "ms",
        distill_head: bool = False,
        neuron: NeuronFactory | None = None,
        attention: AttentionFactory | None = None,
    ):
        super().__init__()
        neuron, attention = resolve_components(neuron, attention or AttentionFactory("sdsa3"))
        dims, depths, strides = _five(dims, "dims"), _five(depths, "depths"), _five(strides, "strides")
        self.shortcut = check_shortcut(shortcut, "meta-spikeformer")
        self.num_classes, self.img_size = num_classes, img_size
        spikes = stream_carries_spikes(shortcut)
        widths = [in_chans] + dims
        self.downsample = nn.ModuleList(
            Downsample(widths[i], widths[i + 1], 7 if i == 0 else 3, strides[i], neuron,
                       opening=(i > 0 and not spikes), closing=spikes)
            for i in range(5)
        )
        self.stages = nn.ModuleList()
        for i in range(5):
            if i < 3:
                blocks = [ConvBlock(dims[i], neuron, shortcut, sepconv_ratio, conv_ratio) for _ in range(depths[i])]
            else:  # the Transformer-based block is SDT v1's block
                blocks = [SDTBlock(dims[i], heads, mlp_ratio, neuron, attention, shortcut) for _ in range(depths[i])]
            self.stages.append(nn.ModuleList(blocks))
        # the head neuron turns the pooled membrane (ms) or spike counts (sew) into spikes; a vs stream
        # is binary and pools to rates in [0, 1] that a LIF of threshold 1 (tau 2) never fires on, so
        # the classifier saw zeros and nothing trained: there the rates feed the classifier directly
        # (charged as non-spike MACs by the energy meter)
        self.head_lif = nn.Identity() if shortcut == "vs" else neuron()
        self.head = nn.Linear(dims[4], num_classes)
        self.distill_head = bool(distill_head)
        # DeiT's distillation head, as in the released model (``kd=True``): a second classifier on the same
        # head spikes, trained against the teacher; at evaluation the two heads' logits are averaged
        self.head_kd = nn.Linear(dims[4], num_classes) if self.distill_head else None
        init_sdt_weights(self, self.head, self.head_kd)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i in range(5):
            x = self.downsample[i](x)
            if i < 3:
                for block in self.stages[i]:
                    x = block(x)
            else:
                T, B, C, H, W = x.shape
                tokens = x.flatten(-2).transpose(-1, -2).contiguous()
                for block in self.stages[i]:
                    tokens = block(tokens, (H, W))
                x = tokens.transpose(-1, -2).reshape(T, B, C, H, W)
            if i >= 1:
                features.append(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, K]``; with ``distill_head`` a training forward returns ``(class, distillation)``
        logits and an eval forward their mean (DeiT); per-timestep ``[T, B, K]`` while training for TET."""
        x = self.head_lif(self.forward_features(x)[-1].flatten(-2).mean(-1))  # [T, B, C]
        per_t = self._timestep_output()
        logits = self.head(x) if per_t else self.head(x).mean(0)
        if self.head_kd is None:
            return logits
        logits_kd = self.head_kd(x) if per_t else self.head_kd(x).mean(0)
        if self.training:
            return logits, logits_kd
        return (logits + logits_kd) / 2


MODELS.add("meta-spikeformer", MetaSpikeFormer, paper=_PAPER,
           description="Meta-SpikeFormer of any widths and depths (dims, depths, strides, shortcut)")

_VARIANTS = {
    # name: (dims, depths, strides, heads, img_size, description)
    "meta-spikeformer-15m": ((32, 64, 128, 256, 360), (1, 1, 2, 6, 2), (2, 2, 2, 2, 1), 8, 224, "C=32, 15.1M"),
    "meta-spikeformer-31m": ((48, 96, 192, 384, 480), (1, 1, 2, 6, 2), (2, 2, 2, 2, 1), 8, 224, "C=48, 31.3M"),
    "meta-spikeformer-55m": ((64, 128, 256, 512, 640), (1, 1, 2, 6, 2), (2, 2, 2, 2, 1), 8, 224, "C=64, 55.4M"),
    # not published: the 15M widths with stride-1 stems, so 32 px gives an 8 x 8 token grid
    "meta-spikeformer-cifar": ((32, 64, 128, 256, 360), (1, 1, 2, 6, 2), (1, 1, 2, 2, 1), 8, 32, "15M widths, 32 px, 8x8 tokens"),
    # not published: a CPU-sized one for tests and the embedded digits (16 px -> 4 x 4 tokens)
    "meta-spikeformer-tiny": ((8, 16, 32, 64, 64), (1, 1, 1, 1, 1), (1, 1, 2, 2, 1), 4, 16, "tiny, for CPU"),
}
for _name, (_dims, _depths, _strides, _heads, _img, _desc) in _VARIANTS.items():
    MODELS.add(_name, MetaSpikeFormer, paper=_PAPER, description=f"Meta-SpikeFormer {_desc}",
               dims=list(_dims), depths=list(_depths), strides=list(_strides), heads=_heads, img_size=_img)
