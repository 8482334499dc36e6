"""Reduce one tensor to the statistics the energy counters need, once per tensor.

For a tensor ``x`` read by a layer (or emitted by a neuron) that runs ``steps`` times per inference:

* ``numel``, ``nnz`` (non-zeros), ``sum`` and ``abs_sum`` (value sums; they differ for signed spikes),
* ``lo`` / ``hi`` (extremes) and ``integer`` (no fractional value anywhere),
* ``ones``: the 1-bits of the per-position spike counts ``|sum over the steps|``, the activations of the
  bit-serial integer twin (meaningful only for integer inputs);
* on request, two *planes*: for every position of one sample (the trailing ``sample_dims`` dimensions,
  e.g. ``C x H x W`` of a conv input), the sums over the steps and the samples of ``|x|`` and of the
  non-zeros. Weighted with each position's fan-out at the end of the evaluation they give the
  exact event-driven and the NeuroBench operation counts (:mod:`step.energy.fanout`); the C kernel
  adds them up in the same pass. A plane follows the memory order of the sample's dimensions
  (channels-last maps give ``H x W x C`` planes); :class:`Planes` remembers that order.

Binary means ``integer and 0 <= lo and hi <= 1``; ternary (bipolar spikes) ``integer and -1 <= lo < 0
and hi <= 1``.

Three implementations give the same numbers (tests/test_energy_reduce.py compares them):

* on the CPU, the C kernel ``step/native/reduce.c`` reads a float32 tensor once (OpenMP over
  positions) and returns every statistic; a dense tensor in any layout (a transposed K, a
  channels-last map) is reduced in place, since every statistic is a sum or an extreme over
  elements and the per-position counts pair the same memory offsets of every step;
* where the kernel is unavailable (no C compiler, ``STEP_KERNELS=torch``) or the dtype is not
  float32, a torch twin branches on the values (a "synchronisation" costs nothing on the CPU): a
  binary tensor needs one ``x - x^2`` pass with its extremes, one sum over the steps and a
  ``bincount`` of the counts; ``x - x^2`` is exactly 0 at 0 and 1 and non-zero (or NaN) for every
  other float32 value, so "its minimum and maximum are both 0" is an exact binary test;
* on accelerators everything stays a device tensor, so counting never synchronises the device
  (``lazy=True`` takes that path on the CPU too: the tests use it to prove that no counter reads a
  value before the evaluation ends).

:class:`ReductionCache` keeps the reductions of the last few tensors (by storage address, size and
layout, holding a reference so the address cannot be reused) so that Q, K and V reading the same
spikes, or a layer reading the spikes its neuron just emitted, reduce them once.
"""

from __future__ import annotations

import ctypes
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from step.native import dense_outer_first, load, threads_for

#: popcount of 0..255, per device
_POPCOUNT_TABLES: dict[torch.device, torch.Tensor] = {}
#: above this count the CPU path uses an exact SWAR popcount instead of a 256-bin histogram
MAX_BINCOUNT = 255
#: float32 sums of integer values are exact up to this many elements of magnitude <= 1 per step
_EXACT_F32 = 2**24


def popcount(counts: torch.Tensor) -> torch.Tensor:
    """Number of 1-bits of each non-negative integer (< 2**32) in ``counts`` (int64 SWAR)."""
    c = counts.to(torch.int64)
    c = c - ((c >> 1) & 0x55555555)
    c = (c & 0x33333333) + ((c >> 2) & 0x33333333)
    c = (c + (c >> 4)) & 0x0F0F0F0F
    return ((c * 0x01010101) & 0xFFFFFFFF) >> 24


def _table(device: torch.device) -> torch.Tensor:
    table = _POPCOUNT_TABLES.get(device)
    if table is None:
        table = popcount(torch.arange(MAX_BINCOUNT + 1)).to(torch.float64).to(device)
        _POPCOUNT_TABLES[device] = table
    return table


def ones_in_counts(counts: torch.Tensor) -> torch.Tensor:
    """Total 1-bits of the integer values in ``counts`` (0..255), in one histogram pass.

    ``torch.histc`` has a fixed output size, so this never synchronises the device; float64 bins
    because a float32 bin stops counting at 2**24 elements.
    """
    hist = torch.histc(counts.to(torch.float64), bins=MAX_BINCOUNT + 1, min=-0.5, max=MAX_BINCOUNT + 0.5)
    return (hist * _table(counts.device)).sum()


def _ones_cpu(counts: torch.Tensor, max_count: float) -> float:
    """Exact 1-bit total of non-negative integer ``counts`` on the CPU (any size of value)."""
    if max_count <= MAX_BINCOUNT:
        hist = torch.bincount(counts.to(torch.uint8).reshape(-1), minlength=MAX_BINCOUNT + 1)
        return float((hist.to(torch.float64) * _table(counts.device)).sum())
    return float(popcount(counts).sum())


@dataclass
class Reduction:
    """Statistics of one tensor; fields are floats (CPU) or 0-d device tensors (accelerators)."""

    numel: int
    nnz: Any
    sum: Any
    abs_sum: Any
    lo: Any
    hi: Any
    integer: Any  # bool, or a 0-d bool tensor
    ones: Any  # 1-bits of the per-position |spike counts|; 0 where not integer; None: not asked for
    planes: dict = field(default_factory=dict)  # plane key -> Planes (see plane_key)


@dataclass
class Planes:
    """Per-position sums over steps and samples, positions in the memory order ``order`` of the sample's
    dimensions (``order[i]`` is the logical sample dimension stored i-th, outermost first)."""

    abs: Any  # sum of |x|, float64 [P]
    nz: Any  # non-zero count, float64 [P]
    shape: tuple[int, ...]  # logical shape of one sample's positions
    order: tuple[int, ...]

    def logical(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (a plane in memory order) laid out in the sample's logical shape."""
        stored = [self.shape[d] for d in self.order]
        inverse = sorted(range(len(self.order)), key=lambda i: self.order[i])
        return values.reshape(stored).permute(*inverse)


class Scratch:
    """Reusable flat buffers: a fresh multi-megabyte tensor per reduction costs page faults on the CPU."""

    def __init__(self) -> None:
        self._bufs: dict[tuple, torch.Tensor] = {}

    def get(self, slot: str, numel: int, like: torch.Tensor) -> torch.Tensor:
        key = (slot, like.dtype, like.device)
        buf = self._bufs.get(key)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=like.dtype, device=like.device)
            self._bufs[key] = buf
        return buf[:numel]


def _steps_view(x: torch.Tensor, steps: int, scratch: Scratch | None = None) -> torch.Tensor:
    if steps <= 1:
        return x.reshape(-1)
    rows = x.reshape(steps, -1)
    if scratch is None:
        return rows.sum(0)
    return torch.sum(rows, 0, out=scratch.get("counts", rows.shape[1], x))


def _reduce_cpu(x: torch.Tensor, steps: int, scratch: Scratch | None = None, need_ones: bool = True) -> Reduction:
    flat = x.reshape(-1)
    # x - x^2 is 0 exactly at 0 and 1 and non-zero (or NaN) at every other float, also in float32
    # rounding, so its extremes are both 0 iff x is binary: one pass decides the common case
    dev = torch.addcmul(flat, flat, flat, value=-1, out=scratch.get("dev", flat.numel(), flat)) \
        if scratch is not None else torch.addcmul(flat, flat, flat, value=-1)
    d_lo, d_hi = (float(v) for v in torch.aminmax(dev))
    counts = _steps_view(x, steps, scratch)  # exact for spikes: each entry sums at most `steps` small integers
    if d_lo == 0.0 and d_hi == 0.0:  # binary
        # a float32 sum of 0/1 values is exact while the total stays below 2**24
        s = float(counts.sum() if x.numel() <= _EXACT_F32 else counts.sum(dtype=torch.float64))
        lo = 0.0 if s < x.numel() else 1.0
        hi = 1.0 if s > 0 else 0.0
        ones = (_ones_cpu(counts, steps) if need_ones else None) if hi > 0 else 0.0
        return Reduction(x.numel(), s, s, s, lo, hi, True, ones)
    s = float(counts.sum(dtype=torch.float64))
    lo, hi = (float(v) for v in torch.aminmax(x))
    integer = not bool(torch.frac(x).any())
    if integer and x.numel() <= _EXACT_F32:  # min(|x|, 1) is 1 exactly at the non-zeros: two fast passes
        mags = flat.abs() if lo < 0 else flat
        unit = torch.clamp(mags, max=1, out=scratch.get("dev", flat.numel(), flat)) if scratch is not None \
            else torch.clamp(mags, max=1)
        nnz = float(unit.sum())
    else:
        nnz = float(torch.count_nonzero(x))  # slow on the CPU: real-valued inputs only
    abs_sum = s if lo >= 0 else float(x.abs().sum(dtype=torch.float64))
    ones = 0.0
    if integer:
        ones = _integer_ones(counts, lo) if need_ones else None
    return Reduction(x.numel(), nnz, s, abs_sum, lo, hi, integer, ones)


class _CReduction(ctypes.Structure):
    """``step_reduction`` of step/native/reduce.c."""

    _fields_ = [("nnz", ctypes.c_double), ("sum", ctypes.c_double), ("abs_sum", ctypes.c_double),
                ("ones", ctypes.c_double), ("non_integer", ctypes.c_double), ("nan", ctypes.c_double),
                ("lo", ctypes.c_float), ("hi", ctypes.c_float)]


def _c_library(x: torch.Tensor):
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return None
    return load("reduce")


def _reduce_c(lib, x: torch.Tensor, steps: int) -> Reduction:
    if not dense_outer_first(x):
        x = x.contiguous()
    out = _CReduction()
    threads = threads_for(x.numel())
    if lib.step_reduce(x.data_ptr(), steps, x.numel() // steps, ctypes.byref(out), threads):
        raise MemoryError("step_reduce: no memory for the per-chunk results")
    return _from_c(x, out)


def _from_c(x: torch.Tensor, out: _CReduction) -> Reduction:
    integer = out.non_integer == 0
    lo, hi = (float("nan"), float("nan")) if out.nan else (float(out.lo), float(out.hi))
    return Reduction(x.numel(), out.nnz, out.sum, out.abs_sum, lo, hi, integer, out.ones if integer else 0.0)


def _integer_ones(counts: torch.Tensor, lo: float) -> float:
    mags = counts.abs() if lo < 0 else counts
    return _ones_cpu(mags, float(mags.max()) if mags.numel() else 0.0)


def plane_key(x: torch.Tensor, sample_dims: int) -> tuple:
    return (tuple(x.shape), tuple(x.stride()), int(sample_dims))


def plane_view(x: torch.Tensor, sample_dims: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``x`` with its last ``sample_dims`` dimensions permuted into memory order (outermost first) as a
    contiguous view of the same memory, and that order; a contiguous copy and the identity where the
    layout has no such view (then every sample is no longer one block of memory)."""
    lead = x.dim() - sample_dims
    dims = list(range(lead, x.dim()))
    order = sorted(dims, key=lambda d: (-x.stride(d), d))
    view = x.permute(*range(lead), *order)
    if not view.is_contiguous():
        return x.contiguous(), tuple(range(sample_dims))
    return view, tuple(d - lead for d in order)


def _planes_torch(view: torch.Tensor, P: int, binary: bool) -> tuple[torch.Tensor, torch.Tensor]:
    rows = view.reshape(-1, P)
    if binary:  # |x| = non-zeros; float32 column sums of 0/1 are exact below 2**24 rows
        plane = rows.sum(0, dtype=torch.float64 if rows.shape[0] >= _EXACT_F32 else None).double()
        return plane, plane
    return rows.abs().sum(0, dtype=torch.float64), torch.count_nonzero(rows, dim=0).double()


def _planes(x: torch.Tensor, sample_dims: int, binary: bool = False) -> Planes:
    view, order = plane_view(x, sample_dims)
    shape = tuple(x.shape[x.dim() - sample_dims:])
    P = math.prod(shape)
    pa, pn = _planes_torch(view, P, binary)
    return Planes(pa, pn, shape, order)


def _reduce_device(x: torch.Tensor, steps: int) -> Reduction:
    lo, hi = torch.aminmax(x)
    counts = _steps_view(x, steps)
    s = counts.sum(dtype=torch.float64)
    abs_sum = x.abs().sum(dtype=torch.float64)
    integer = ~torch.frac(x).any()
    ones = ones_in_counts(counts.abs()) * integer  # histc: fixed size, no synchronisation
    return Reduction(x.numel(), torch.count_nonzero(x), s, abs_sum, lo, hi, integer, ones)


def reduce_tensor(x: torch.Tensor, steps: int = 1, scratch: Scratch | None = None, need_ones: bool = True,
                  sample_dims: int = 0, lazy: bool = False) -> Reduction:
    """The :class:`Reduction` of ``x`` read ``steps`` times per inference (``x`` holds the steps).

    ``need_ones=False`` lets the torch twin skip the bit-serial 1-bit count (``ones`` is then None):
    neurons and spike products do not use it, only the conv / linear layers reading the tensor do
    (the C kernel counts them in the same pass anyway). ``sample_dims > 0`` adds the planes over the
    last ``sample_dims`` dimensions (under ``plane_key(x, sample_dims)``). ``lazy`` keeps every
    statistic a tensor (the accelerator path) on the CPU too.
    """
    key = plane_key(x, sample_dims) if sample_dims else None
    x, steps = _prepared(x, steps)
    if x.numel() == 0:
        red = Reduction(0, 0.0, 0.0, 0.0, 0.0, 0.0, True, 0.0)
        if key:
            red.planes[key] = _planes(x, sample_dims)
        return red
    if lazy or x.device.type != "cpu":
        red = _reduce_device(x, steps)
    else:
        lib = _c_library(x)
        if lib is not None:
            if key:
                red = _reduce_c_planes(lib, x, steps, sample_dims)
                if red is not None:
                    return red
            red = _reduce_c(lib, x, steps)
        else:
            red = _reduce_cpu(x, steps, scratch, need_ones)
    if key:
        red.planes[key] = _planes(x, sample_dims)
    return red


def _reduce_c_planes(lib, x: torch.Tensor, steps: int, sample_dims: int) -> Reduction | None:
    """The C reduction with its planes in the same pass (None where the layout does not split into
    whole samples per step: the caller then adds the planes apart)."""
    view, order = plane_view(x, sample_dims)
    shape = tuple(x.shape[x.dim() - sample_dims:])
    P = math.prod(shape)
    N = view.numel() // steps
    if P == 0 or N % P:
        return None
    pa = torch.zeros(P, dtype=torch.float64)
    pn = torch.zeros(P, dtype=torch.float64)
    out = _CReduction()
    rc = lib.step_reduce_planes(view.data_ptr(), steps, N, P, ctypes.byref(out), pa.data_ptr(), pn.data_ptr(),
                                threads_for(view.numel()))
    if rc:
        raise MemoryError("step_reduce_planes: no memory for the per-chunk results")
    red = _from_c(x, out)
    red.planes[plane_key(x, sample_dims)] = Planes(pa, pn, shape, order)
    return red


def _prepared(x: torch.Tensor, steps: int) -> tuple[torch.Tensor, int]:
    """``x`` detached as floats, and ``steps`` (1 when the elements do not split into that many steps)."""
    x = x.detach()
    if not x.is_floating_point():
        x = x.to(torch.float32)
    return x, (1 if steps > 1 and x.numel() % steps else steps)


def _fill_ones(x: torch.Tensor, steps: int, red: Reduction, scratch: Scratch | None) -> None:
    """Add the 1-bit count to a reduction made without it (CPU only)."""
    x, steps = _prepared(x, steps)
    counts = _steps_view(x, steps, scratch)
    red.ones = _integer_ones(counts, float(red.lo)) if bool(red.integer) else 0.0


def _fill_planes(x: torch.Tensor, red: Reduction, sample_dims: int) -> None:
    """Add the planes to a reduction made without them (one pass over ``x``; a column sum when the
    reduction already proves ``x`` binary, e.g. spikes counted by the C neuron kernel)."""
    binary = not isinstance(red.lo, torch.Tensor) and bool(red.integer) and red.lo >= 0 and red.hi <= 1
    prepared, _ = _prepared(x, 1)
    red.planes[plane_key(x, sample_dims)] = _planes(prepared, sample_dims, binary)


class ReductionCache:
    """Reductions of the most recent tensors, so that a tensor read by several modules is reduced once.

    Keys are (storage address, element count, dtype, device, steps) of contiguous tensors: a reshape
    of the same memory (``[T, B, N, C]`` -> ``[T*B*N, C]``) has the same elements in the same order,
    hence the same reduction. Where the C kernel reduces, a dense view in another order (``K^T`` of
    a ``K`` already reduced) shares the key too: its statistics do not depend on the order. Each
    entry holds its tensor, so its memory cannot be freed and reused by another tensor while the
    entry lives; ``size`` bounds the extra memory kept alive.
    """

    def __init__(self, size: int = 6, lazy: bool = False):
        self.size = int(size)
        self.lazy = bool(lazy)
        self._entries: OrderedDict[tuple, tuple[torch.Tensor, Reduction]] = OrderedDict()
        self.scratch = Scratch()
        self.hits = self.misses = 0

    def clear(self) -> None:
        """Forget the cached tensors (the scratch buffers stay for the next batch)."""
        self._entries.clear()

    def _key(self, x: torch.Tensor, steps: int) -> tuple:
        return (x.data_ptr(), x.numel(), x.dtype, x.device, steps)

    def _cacheable(self, x: torch.Tensor) -> bool:
        return self.size > 0 and (x.is_contiguous() or (not self.lazy and _c_library(x) is not None
                                                        and dense_outer_first(x)))

    def put(self, x: torch.Tensor, steps: int, red: Reduction) -> None:
        """Store the reduction of ``x`` made elsewhere (the C neuron kernel counts the spikes it writes)."""
        x = x.detach()
        if not self._cacheable(x):
            return
        self._entries[self._key(x, steps)] = (x, red)
        self._entries.move_to_end(self._key(x, steps))
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def reduce(self, x: torch.Tensor, steps: int = 1, need_ones: bool = True, sample_dims: int = 0) -> Reduction:
        """The reduction of ``x`` (with the planes over its last ``sample_dims`` dimensions if > 0)."""
        x = x.detach()
        if not self._cacheable(x):
            self.misses += 1
            return reduce_tensor(x, steps, self.scratch, need_ones, sample_dims, self.lazy)
        key = self._key(x, steps)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            red = entry[1]
            if need_ones and red.ones is None:
                _fill_ones(x, steps, red, self.scratch)
            if sample_dims and plane_key(x, sample_dims) not in red.planes:
                _fill_planes(x, red, sample_dims)
            return red
        self.misses += 1
        red = reduce_tensor(x, steps, self.scratch, need_ones, sample_dims, self.lazy)
        self._entries[key] = (x, red)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return red


def binary_reduction(numel: int, total: float, ones: float) -> Reduction:
    """The reduction of a tensor of ``numel`` values in {0, 1} holding ``total`` ones (the C neuron
    kernel's count of the spikes it wrote), equal to what :func:`reduce_tensor` computes for it."""
    lo = 0.0 if total < numel else 1.0
    hi = 1.0 if total > 0 else 0.0
    return Reduction(numel, total, total, total, lo, hi, True, ones)


def twin_bits(T: int, max_value: float, signed: bool = False) -> int:
    """Bits that hold a spike count of up to ``T x max_value`` (plus a sign bit for signed spikes)."""
    return max(1, math.ceil(math.log2(T * max(max_value, 1.0) + 1))) + (1 if signed else 0)
