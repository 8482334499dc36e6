"""Exact fan-out of every input position of a convolution: the synapses a spike there really reaches.

The papers' count charges a conv input ``rate x T x FLOPs``, i.e. every spike the layer's *average*
fan-out ``MACs / input elements``, which includes the taps that land on zero padding and, with a
stride, averages fan-outs that differ from position to position. An event-driven chip does no work
for a padded tap. Here the fan-out is counted per position, once per layer geometry (cached):

* along one spatial dimension, output ``o`` reads input ``i = o s - p + k d`` with tap ``k``
  (stride s, padding p, dilation d); a transposed conv writes output ``o = i s - p + k d``. The
  matrix ``M[i, k]`` counts the outputs that tap ``k`` connects to input ``i`` (0 or 1 for zero
  padding; reflect / replicate / circular padding send the padded taps to real inputs, so some
  entries are larger). It is built by a loop over outputs and taps: no formula to get wrong.
* a kernel is the outer product of its dimensions, so the in-bounds tap count of position
  ``(i_1, .., i_n)`` is ``prod_d sum_k M_d[i_d, k]`` and every input channel reaches
  ``C_out / groups`` output channels per tap;
* with zero weights discounted (pruned models; NeuroBench always does), input channel ``c`` at tap
  ``k`` reaches ``nz[c, k]`` output channels (the non-zero weights of that channel and tap), and its
  fan-out is ``sum_k prod_d M_d[i_d, k_d] nz[c, k]``, one ``einsum`` per layer.

A layer's exact count is then ``sum over positions of (spike sum there) x fan-out``, where the spike
sums are the planes of :mod:`step.energy.reduce` collected during the evaluation. Layers whose
fan-out is the same everywhere (1x1 convs, linear layers) need no plane: their exact count is the
spike total times that fan-out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ConvGeometry:
    """The spatial wiring of one convolution call (per dimension tuples)."""

    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]  # leading (left / top) padding; the trailing side follows from out_size
    dilation: tuple[int, ...]
    transposed: bool = False
    padding_mode: str = "zeros"


def geometry_of(module: nn.modules.conv._ConvNd, in_size: tuple[int, ...], out_size: tuple[int, ...]) -> ConvGeometry:
    """The geometry of ``module`` applied to a map of spatial size ``in_size`` giving ``out_size``."""
    n = len(in_size)
    kernel, dilation = tuple(module.kernel_size), tuple(module.dilation)
    padding = module.padding
    if isinstance(padding, str):  # 'valid' -> 0; 'same' -> total d (k - 1), the smaller half first
        padding = tuple(0 if padding == "valid" else dilation[i] * (kernel[i] - 1) // 2 for i in range(n))
    return ConvGeometry(tuple(in_size), tuple(out_size), kernel, tuple(module.stride), tuple(padding), dilation,
                        bool(module.transposed), str(getattr(module, "padding_mode", "zeros")))


def _source(i: int, n: int, mode: str) -> int | None:
    """The input index a padded read at ``i`` takes under ``mode`` (None: a zero, no synapse)."""
    if 0 <= i < n:
        return i
    if mode == "zeros":
        return None
    if mode == "reflect":
        return -i if i < 0 else 2 * (n - 1) - i
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    if mode == "circular":
        return i % n
    raise ValueError(f"unknown padding_mode {mode!r}")


@functools.lru_cache(maxsize=512)
def tap_matrix(n_in: int, n_out: int, k: int, s: int, p: int, d: int, transposed: bool, mode: str) -> torch.Tensor:
    """``M[i, j]``: outputs that tap ``j`` connects to input ``i`` along one dimension (float64)."""
    m = torch.zeros(n_in, k, dtype=torch.float64)
    if transposed:
        for i in range(n_in):
            for j in range(k):
                if 0 <= i * s - p + j * d < n_out:
                    m[i, j] += 1
        return m
    for o in range(n_out):
        for j in range(k):
            i = _source(o * s - p + j * d, n_in, mode)
            if i is not None:
                m[i, j] += 1
    return m


def tap_matrices(g: ConvGeometry) -> list[torch.Tensor]:
    return [tap_matrix(g.in_size[i], g.out_size[i], g.kernel[i], g.stride[i], g.padding[i], g.dilation[i],
                       g.transposed, g.padding_mode) for i in range(len(g.in_size))]


@functools.lru_cache(maxsize=512)
def taps_per_position(g: ConvGeometry) -> torch.Tensor:
    """Kernel taps of every input position that land inside the output (spatial shape, float64)."""
    out = torch.ones((), dtype=torch.float64)
    for m in tap_matrices(g):
        out = out.unsqueeze(-1) * m.sum(1)
    return out


def is_uniform(taps: torch.Tensor) -> bool:
    return taps.numel() == 0 or bool(taps.min() == taps.max())


def weighted_fanout(g: ConvGeometry, nz: torch.Tensor) -> torch.Tensor:
    """``F[c, i_1, .., i_n] = sum_k prod_d M_d[i_d, k_d] nz[c, k]``: output synapses with a non-zero
    weight reached from input channel ``c`` at each position (``nz``: [C_in, k_1, .., k_n])."""
    mats = tap_matrices(g)
    letters = "abcdefgh"[: len(mats)]
    spatial = "pqrstuvw"[: len(mats)]
    spec = ",".join(f"{spatial[i]}{letters[i]}" for i in range(len(mats)))
    return torch.einsum(f"z{letters},{spec}->z{spatial}", nz.to(torch.float64), *mats)


def nonzero_weights_per_tap(module: nn.Module) -> torch.Tensor:
    """``nz[c, k]``: output channels that input channel ``c`` reaches through a non-zero weight at tap
    ``k`` ([C_in, *kernel] for a conv, [in_features] for a linear layer). Stays on the weight's device."""
    w = module.weight.detach()
    if isinstance(module, nn.Linear):
        return (w != 0).sum(0)
    groups = module.groups
    if module.transposed:  # [C_in, C_out / g, *k]
        return (w != 0).sum(1)
    c_out, c_in_g = w.shape[:2]
    nz = (w != 0).reshape(groups, c_out // groups, c_in_g, *w.shape[2:]).sum(1)
    return nz.reshape(groups * c_in_g, *w.shape[2:])


def channels_reached(module: nn.Module) -> int:
    """Output channels (or features) one input channel reaches per tap: C_out / groups."""
    if isinstance(module, nn.Linear):
        return module.out_features
    return module.out_channels // module.groups


def dense_inbounds(g: ConvGeometry, module: nn.Module) -> float:
    """Synapses of one full input map inside the output, every weight counted (NeuroBench's Dense)."""
    return float(taps_per_position(g).sum()) * module.in_channels * channels_reached(module)
