"""Read any backbone's ``forward_features`` as a list of time-major feature maps, finest first.

Single-scale backbones (Spikformer, SDT) return tokens ``[T, B, N, D]`` on an ``h x w`` grid;
hierarchical ones (Meta-SpikeFormer, QKFormer) return several stages, as maps ``[T, B, C, h, w]`` or
tokens. The grid of a token tensor is recovered from the input's aspect ratio: with ``N`` tokens
on an ``H x W`` input the stride is ``s = sqrt(H W / N)`` and the grid ``(H / s, W / s)``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn


def _as_list(features: Any) -> list[torch.Tensor]:
    if torch.is_tensor(features):
        return [features]
    if isinstance(features, dict):
        return list(features.values())
    if isinstance(features, (list, tuple)):
        return list(features)
    raise TypeError(f"forward_features returned {type(features).__name__}; expected a tensor, list or dict of tensors")


def tokens_to_map(tokens: torch.Tensor, input_hw: Sequence[int]) -> torch.Tensor:
    """``[T, B, N, D]`` -> ``[T, B, D, h, w]`` with ``h / w = H / W`` and ``h * w = N``."""
    T, B, N, D = tokens.shape
    H, W = int(input_hw[0]), int(input_hw[1])
    stride = math.sqrt(H * W / N)
    h, w = round(H / stride), round(W / stride)
    if h * w != N:
        raise ValueError(f"cannot place {N} tokens on a grid with the input's aspect ratio {H}x{W}")
    return tokens.transpose(2, 3).reshape(T, B, D, h, w)


def feature_maps(features: Any, input_hw: Sequence[int]) -> list[torch.Tensor]:
    """Every scale as ``[T, B, C, h, w]``, sorted from the finest (largest) grid to the coarsest."""
    maps = []
    for f in _as_list(features):
        if f.dim() == 5:
            maps.append(f)
        elif f.dim() == 4:
            maps.append(tokens_to_map(f, input_hw))
        else:
            raise ValueError(f"a feature has shape {tuple(f.shape)}; expected [T,B,C,h,w] maps or [T,B,N,D] tokens")
    return sorted(maps, key=lambda m: -m.shape[-1] * m.shape[-2])


@torch.no_grad()
def probe_feature_shapes(backbone: nn.Module, in_chans: int, img_size: int | Sequence[int], T: int) -> list[tuple[int, int, int]]:
    """``(channels, h, w)`` of each scale, from one forward of a zero image in eval mode.

    Used once at build time so that the neck's widths follow whatever the backbone gives.
    """
    H, W = (img_size, img_size) if isinstance(img_size, int) else (int(img_size[0]), int(img_size[1]))
    was_training = backbone.training
    backbone.eval()
    try:
        param = next(backbone.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        maps = feature_maps(backbone.forward_features(torch.zeros(T, 1, in_chans, H, W, device=device)), (H, W))
    finally:
        backbone.train(was_training)
    return [(m.shape[2], m.shape[3], m.shape[4]) for m in maps]
