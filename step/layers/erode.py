"""SDT v1's DVS "Erode" pooling (the released code's class name), for ``model.pooling=erode`` on SDT.

The released Spike-driven Transformer (BICLab/Spike-Driven-Transformer, ``module/ms_conv.py``)
switches it on for CIFAR10-DVS (``dvs_mode``). ``Erode`` is ``MaxPool3d(kernel (1, 3, 3), stride 1,
padding (0, 1, 1))``: on a 5-D tensor it takes the maximum over a 3 x 3 window of the *last two* axes
(kernel 1 on the third-last), keeping the shape. On binary spikes that is a dilation (a spike spreads
to its 8 neighbours), whatever the name says. SDSA-1 applies it to four tensors:

1. the K spike map ``[T, B, C, H, W]``: 3 x 3 over the image grid (H, W), per channel;
2. the V spike map, likewise;
3. ``K (x) V`` in head layout ``[T, B, h, N, d]``, before its sum over tokens: 3 x 3 over
   (token index N, channel within the head d), N being the row-major flattening of the grid, so the
   token window runs along image rows and wraps from one row's end to the next row's start;
4. ``Q (x) SN(SUM(...))`` in head layout, before the output projection: likewise over (N, d).

Here tokens are ``[T, B, N, C]``; :func:`erode_grid` does (1)-(2) on them given the grid ``hw``,
:func:`erode_heads` does (3)-(4). Padding never wins a max (-inf), so a border keeps its own values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def erode_heads(x: torch.Tensor) -> torch.Tensor:
    """3 x 3 max (stride 1, same size) over the last two axes of any ``[..., N, d]`` tensor."""
    *lead, n, d = x.shape
    return F.max_pool2d(x.reshape(-1, 1, n, d), 3, 1, 1).reshape(*lead, n, d)


def erode_grid(tokens: torch.Tensor, hw: tuple[int, int] | None) -> torch.Tensor:
    """3 x 3 max (stride 1) over the image grid of tokens ``[T, B, N, C]`` (``N = H W``, row-major), per channel."""
    if hw is None:
        raise ValueError("erode pooling needs the token grid (H, W)")
    T, B, N, C = tokens.shape
    H, W = hw
    if H * W != N:
        raise ValueError(f"erode pooling: grid {H}x{W} does not hold {N} tokens")
    grid = tokens.transpose(-1, -2).reshape(T * B, C, H, W)
    return F.max_pool2d(grid, 3, 1, 1).reshape(T, B, C, N).transpose(-1, -2)
