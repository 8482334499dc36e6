"""Spiking single-stage anchor-free detection head in the style of FCOS (Tian et al., ICCV 2019).

One head is shared by every FPN level. Two towers of ``depth`` units neuron -> conv3x3 -> BN read
the level; the class tower ends in neuron -> conv3x3 giving one logit per object class, the box
tower in neuron -> conv3x3 giving the distances ``(l, t, r, b)`` from the location to the box sides
and one centre-ness logit. Every conv reads spikes; the raw outputs are averaged over T.

The tower convolutions are shared across levels, their batch norms are not (one per level, as
EfficientDet does): a BN shared by levels normalises each level with its own batch statistics in
training but with running statistics pooled over all levels at evaluation, which on a 4-level
backbone dropped mAP@0.5 from 31.7 (train-mode statistics) to 8.0 on digits-scenes. FCOS itself
uses GroupNorm, which cannot be folded into the convolution of a spike-driven network.

Distances are ``exp(g_l * x) * s_l`` with a learnable per-level gain ``g_l`` and the level's stride
``s_l`` (FCOS's per-level scale, with the stride normalisation of FCOS v2). Locations are the
centres of the grid cells, ``((j + 0.5) s, (i + 0.5) s)`` in input pixels.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from step.layers.fold import SeqModule


def grid_points(sizes: Sequence[Sequence[int]], strides: Sequence[float], device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cell centres ``[P, 2]`` (x, y), their stride ``[P]`` and level index ``[P]`` over all levels."""
    points, point_strides, levels = [], [], []
    for lvl, ((h, w), s) in enumerate(zip(sizes, strides)):
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1))
        point_strides.append(torch.full((h * w,), float(s), device=device))
        levels.append(torch.full((h * w,), lvl, device=device, dtype=torch.long))
    return torch.cat(points), torch.cat(point_strides), torch.cat(levels)


class SharedTowerUnit(nn.Module):
    """``x -> BN_level(Conv(SN(x)))``: the conv shared by every level, one BN per level."""

    def __init__(self, dim: int, neuron: Callable[..., nn.Module], num_levels: int):
        super().__init__()
        self.lif = neuron()
        self.conv = SeqModule(nn.Conv2d(dim, dim, 3, 1, 1, bias=False))
        self.norms = nn.ModuleList(SeqModule(nn.BatchNorm2d(dim)) for _ in range(num_levels))

    def forward(self, x: torch.Tensor, level: int) -> torch.Tensor:
        return self.norms[level](self.conv(self.lif(x)))


class SharedTower(nn.ModuleList):
    """``depth`` :class:`SharedTowerUnit` s applied in turn to one level."""

    def forward(self, x: torch.Tensor, level: int) -> torch.Tensor:  # type: ignore[override]
        for unit in self:
            x = unit(x, level)
        return x


class SpikingFCOSHead(nn.Module):
    """FPN levels -> ``{"cls_logits": [B,P,K], "box_ltrb": [B,P,4], "centerness": [B,P], ...}``.

    ``num_classes`` counts the object classes only (labels ``1..K`` of the data map to logits
    ``0..K-1``; label 0 is the background, as in torchvision's detection models).
    """

    def __init__(self, dim: int, num_classes: int, neuron: Callable[..., nn.Module], depth: int = 2,
                 num_levels: int = 1, prior_prob: float = 0.01):
        super().__init__()
        self.cls_tower = SharedTower(SharedTowerUnit(dim, neuron, num_levels) for _ in range(depth))
        self.box_tower = SharedTower(SharedTowerUnit(dim, neuron, num_levels) for _ in range(depth))
        self.cls_lif, self.box_lif = neuron(), neuron()
        self.cls_out = SeqModule(nn.Conv2d(dim, num_classes, 3, 1, 1))
        self.box_out = SeqModule(nn.Conv2d(dim, 5, 3, 1, 1))  # l, t, r, b, centre-ness
        self.gains = nn.Parameter(torch.ones(num_levels))
        nn.init.normal_(self.cls_out[0].weight, std=0.01)
        nn.init.constant_(self.cls_out[0].bias, -math.log((1 - prior_prob) / prior_prob))  # focal-loss prior
        nn.init.normal_(self.box_out[0].weight, std=0.01)
        nn.init.zeros_(self.box_out[0].bias)
        self.num_classes = num_classes

    def forward(self, levels: Sequence[torch.Tensor], input_hw: Sequence[int]) -> dict[str, torch.Tensor]:
        cls_all, box_all, ctr_all, sizes, strides = [], [], [], [], []
        for lvl, x in enumerate(levels):
            h, w = x.shape[-2:]
            stride = input_hw[0] / h
            cls = self.cls_out(self.cls_lif(self.cls_tower(x, lvl))).mean(0)  # [B, K, h, w]
            box = self.box_out(self.box_lif(self.box_tower(x, lvl))).mean(0)  # [B, 5, h, w]
            cls_all.append(cls.flatten(2).transpose(1, 2))
            ltrb = torch.exp((self.gains[lvl] * box[:, :4]).clamp(max=10.0)) * stride
            box_all.append(ltrb.flatten(2).transpose(1, 2))
            ctr_all.append(box[:, 4].flatten(1))
            sizes.append((h, w))
            strides.append(stride)
        points, point_strides, point_levels = grid_points(sizes, strides, device=levels[0].device)
        return {
            "cls_logits": torch.cat(cls_all, 1), "box_ltrb": torch.cat(box_all, 1), "centerness": torch.cat(ctr_all, 1),
            "points": points, "strides": point_strides, "levels": point_levels,
            "image_size": torch.tensor([int(input_hw[0]), int(input_hw[1])]),
        }
