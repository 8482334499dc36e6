"""Synaptic per-module accumulators (conv, linear, spike products): dense-MAC formulas and device-side input statistics.

Dense MACs of one call (all samples and timesteps in it), energy.md section 1.2:

* Conv (k kernel elements, groups g): ``out.numel() x (C_in / g) x k``; transposed conv:
  ``in.numel() x (C_out / g) x k``. Bias adds (``out.numel()``) are counted apart.
* Linear: ``out.numel() x in_features`` (the token count is in the leading dimensions).
* SpikeMatMul ``a @ b``: ``out.numel() x a.shape[-1]`` (m k n per head); Hadamard: ``out.numel()``.
* Norm: one multiply-add per element (folded into the previous layer at inference: not charged);
  pooling: ``out.numel() x kernel`` comparisons/adds (not charged by the SDT convention).

A synaptic call adds ``|value| sum x (MACs / input elements)`` accumulates: for a binary input this
is rate x MACs (SOP = T r FL summed over the set), for integer spikes the value-weighted count, for
bipolar {-1, 0, 1} spikes one add or subtract per non-zero (the ``paper`` convention). The per-tensor
reductions live in :mod:`step.energy.reduce`.

For the ``exact`` and ``neurobench`` conventions a conv / linear layer also keeps, per input
geometry, the spike totals (layers whose fan-out is the same at every position) or the per-position
planes of spike sums and non-zero counts (the others); :meth:`LayerAccumulator.finish` weights
them with the exact fan-out of :mod:`step.energy.fanout`. Nothing is read back during the
evaluation: on accelerators every accumulator is a device tensor until
:func:`step.energy.tally.to_host` copies all of them in one transfer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from step.energy import fanout
from step.energy.ops import LayerOps
from step.energy.reduce import Reduction, ReductionCache, plane_key, twin_bits
from step.energy.tally import AccumulatorBase, TensorStats, as_float, lazy_add

#: the layer types NeuroBench's SynapticOperations and ConnectionSparsity see (its STATELESS_LAYERS)
NEUROBENCH_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
_POOLS = (
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)


def classify(module: nn.Module) -> str | None:
    """The row kind the meter gives ``module``, or None if it is not counted."""
    from step.layers.spike_matmul import SpikeMatMul
    from step.neurons.base import SpikingNeuron

    if isinstance(module, SpikingNeuron) or getattr(module, "is_spiking_neuron", False):
        return "neuron"
    if isinstance(module, SpikeMatMul):
        return "matmul"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, _NORMS):
        return "norm"
    if isinstance(module, _POOLS):
        return "pool"
    return None


class GeometryTally:
    """What one conv / linear layer saw at one input geometry, for the exact and NeuroBench counts.

    ``rows``: maps (or token rows) read, i.e. samples x executions. Either ``abs_total`` / ``nz_total``
    (sum of |x| and non-zero count, where every position has the same fan-out and no weight is zero)
    or ``plane_abs`` / ``plane_nz`` (the same per position of one map, logical order).
    """

    def __init__(self, geometry: fanout.ConvGeometry | None, sample_dims: int, shape: tuple[int, ...], planes: bool):
        self.geometry, self.sample_dims, self.shape, self.planes = geometry, sample_dims, shape, planes
        self.rows = 0
        self.abs_total = self.nz_total = self.plane_abs = self.plane_nz = None


class LayerAccumulator(AccumulatorBase):
    """Conv and Linear layers."""

    #: set by the meter before the evaluation: how many of the layer's weights are zero
    zero_weights: int = 0
    #: exact convention: a zero weight does no work (the energy group's skip_zero_weights)
    skip_zero_weights: bool = False
    #: the unfused RepConv this layer belongs to (its exact work is counted on the fused row)
    exact_in: str = ""

    def clear(self) -> None:
        super().clear()
        self.stats = TensorStats()
        self.macs_exec = self.macs_step = self.bias = 0.0
        self.n_in = self.n_out = 0.0
        self.sop = self.ones = None
        self.tallies: dict[tuple, GeometryTally] = {}
        self.nz_per_tap = None  # non-zero weights per input channel and tap, gathered at the end

    def host_holders(self) -> list:
        return [self, self.stats, *self.tallies.values()]

    def _tally(self, x: torch.Tensor, out: torch.Tensor) -> GeometryTally:
        m = self.module
        if self.kind == "linear":
            key: tuple = (x.shape[-1],)
            if key not in self.tallies:
                self.tallies[key] = GeometryTally(None, 1, (x.shape[-1],), planes=bool(self.zero_weights))
            return self.tallies[key]
        n = len(m.kernel_size)
        batched = x.dim() == n + 2
        key = (tuple(x.shape[1:] if batched else x.shape), tuple(out.shape[-n:]))
        if key not in self.tallies:
            geometry = fanout.geometry_of(m, tuple(x.shape[-n:]), tuple(out.shape[-n:]))
            uniform = fanout.is_uniform(fanout.taps_per_position(geometry))
            dims = n + 1
            self.tallies[key] = GeometryTally(geometry, dims, tuple(x.shape[-dims:]),
                                              planes=not uniform or bool(self.zero_weights))
        return self.tallies[key]

    def geometry(self) -> tuple[int, int, int]:
        """(weight elements, bias elements, kernel elements) of the module."""
        m = self.module
        kernel = math.prod(m.kernel_size) if self.kind == "conv" else 1
        bias = m.bias.numel() if getattr(m, "bias", None) is not None else 0
        return m.weight.numel(), bias, kernel

    def call_macs(self, x: torch.Tensor, out: torch.Tensor) -> float:
        m = self.module
        if self.kind == "linear":
            return float(out.numel()) * m.in_features
        kernel = math.prod(m.kernel_size)
        if m.transposed:
            return float(x.numel()) * (m.out_channels // m.groups) * kernel
        return float(out.numel()) * (m.in_channels // m.groups) * kernel

    def update(self, tensors: list[torch.Tensor], out: torch.Tensor, steps: int, batch: int,
               cache: ReductionCache | None = None) -> None:
        x = tensors[0].detach()
        macs = self.call_macs(x, out)
        cache = cache if cache is not None else ReductionCache(0)
        tally = self._tally(x, out)
        red = self.stats.update(cache.reduce(x, steps, sample_dims=tally.sample_dims if tally.planes else 0))
        if tally.planes:
            planes = red.planes[plane_key(x, tally.sample_dims)]
            tally.plane_abs = lazy_add(tally.plane_abs, planes.logical(planes.abs).reshape(-1))
            tally.plane_nz = lazy_add(tally.plane_nz, planes.logical(planes.nz).reshape(-1))
        else:
            tally.abs_total, tally.nz_total = lazy_add(tally.abs_total, red.abs_sum), lazy_add(tally.nz_total, red.nnz)
        tally.rows += x.numel() // max(math.prod(tally.shape), 1)
        per_elem = macs / max(x.numel(), 1)
        # each spike of value v (sign included) drives |v| accumulates per fan-out
        self.sop = lazy_add(self.sop, red.abs_sum * per_elem)
        self.ones = lazy_add(self.ones, red.ones * per_elem)  # bit-serial twin: per-position spike counts
        self.macs_exec += macs
        self.macs_step += macs / steps
        self.steps_total += steps * batch
        self.n_in += x.numel() / steps
        self.n_out += out.numel() / steps
        if getattr(self.module, "bias", None) is not None:
            self.bias += float(out.numel())
        self.output_shape = self._per_sample_shape(out, steps, batch)

    def finish(self, n: int, T: int) -> LayerOps:
        st = self.stats.summary()
        spike_like = st["integer"]
        params, bias_params, kernel = self.geometry()
        row = LayerOps(
            name=self.name, type=self.type, kind=self.kind, order=self.order or 0,
            output_shape=self.output_shape, steps=self.steps_total / n, macs=self.macs_step / n,
            macs_executed=self.macs_exec / n, input_rate=st["rate"], input_mean=st["mean"],
            binary=st["binary"], ternary=st["ternary"], integer=st["integer"], signed=st["signed"],
            bias_adds=self.bias / n, params=params,
            bias_params=bias_params, kernel=kernel, n_in=self.n_in / n, n_out=self.n_out / n,
        )
        if spike_like:
            row.sops = as_float(self.sop) / n
            row.input_spikes = st["abs_mean"] * self.stats.numel / n
            row.bitserial_acs = as_float(self.ones) / n
            row.twin_bits = twin_bits(T, st["max"], st["signed"])
            if row.macs and row.n_in:  # 1-bits per activation = bit-serial ACs / fan-out
                row.bit_density = row.bitserial_acs / (row.macs / row.n_in) / (row.twin_bits * row.n_in)
        else:
            row.nonspike_macs_once = row.nonspike_macs_per_step = row.macs_executed
        self._finish_exact(row, n, st)
        return row

    def _fanouts(self, tally: GeometryTally) -> tuple[torch.Tensor, torch.Tensor]:
        """Fan-out of every input position (channel first) with every weight, and with the non-zero
        weights only (the same tensor when no weight is zero)."""
        reach = fanout.channels_reached(self.module)
        if tally.geometry is None:  # linear: every feature reaches every output
            every = torch.full(tally.shape, float(reach), dtype=torch.float64)
            nz = self.nz_per_tap.to(torch.float64) if self.zero_weights else every
            return every, nz
        taps = fanout.taps_per_position(tally.geometry)
        every = (reach * taps).expand(tally.shape)
        if not self.zero_weights:
            return every, every
        return every, fanout.weighted_fanout(tally.geometry, self.nz_per_tap)

    def _finish_exact(self, row: LayerOps, n: int, st: dict) -> None:
        """Exact (in-bounds, value-weighted) and NeuroBench (non-zero inputs x non-zero weights) counts."""
        value = value_nz_w = nonzero = nonzero_nz_w = dense = 0.0
        for tally in self.tallies.values():
            every, nz_w = self._fanouts(tally)
            dense += tally.rows * float(every.sum())
            if tally.planes:
                a = torch.as_tensor(tally.plane_abs, dtype=torch.float64).reshape(tally.shape)
                z = torch.as_tensor(tally.plane_nz, dtype=torch.float64).reshape(tally.shape)
                value += float((a * every).sum())
                value_nz_w += float((a * nz_w).sum())
                nonzero += float((z * every).sum())
                nonzero_nz_w += float((z * nz_w).sum())
            else:  # one fan-out everywhere and no zero weight
                f = float(every.reshape(-1)[0]) if every.numel() else 0.0
                value += as_float(tally.abs_total) * f
                nonzero += as_float(tally.nz_total) * f
                value_nz_w, nonzero_nz_w = value, nonzero
        skip = self.skip_zero_weights
        row.exact_value_ops = (value_nz_w if skip else value) / n
        row.exact_nonzero_ops = (nonzero_nz_w if skip else nonzero) / n
        row.exact_ops_executed = row.exact_value_ops if st["integer"] else row.exact_nonzero_ops
        row.exact_ops = row.exact_ops_executed
        row.exact_is_mac = not st["integer"]
        row.paper_minus_exact = row.sops - value / n if st["integer"] else 0.0
        row.zero_weights = int(self.zero_weights)
        row.nb_seen = isinstance(self.module, NEUROBENCH_LAYERS)
        if row.nb_seen:
            row.nb_spiking = st["binary"] or st["ternary"] or (st["integer"] and st["max"] == 0)
            row.nb_ops = nonzero_nz_w / n
            row.nb_dense = dense / n


class FusedRepConvAccumulator(LayerAccumulator):
    """An unfused :class:`step.layers.repconv.RepConv` counted as the one 3x3 conv it folds into, for
    the ``exact`` convention only (the chain's own rows keep the ``paper`` and ``neurobench`` counts,
    which see the layers as executed). ``module`` is the fused conv (geometry and weights); the hook
    sits on the RepConv, so the row reads the chain's spike input."""

    def __init__(self, name: str, repconv: nn.Module):
        super().__init__(name, repconv.fused_conv(), "conv")
        self.type = "RepConv(fused)"

    def finish(self, n: int, T: int) -> LayerOps:
        full = super().finish(n, T)
        row = LayerOps(name=self.name, type=self.type, kind="conv", order=full.order, output_shape=full.output_shape,
                       steps=full.steps, input_rate=full.input_rate, input_mean=full.input_mean, binary=full.binary,
                       ternary=full.ternary, integer=full.integer, signed=full.signed, kernel=full.kernel,
                       n_in=full.n_in, n_out=full.n_out)
        for key in ("exact_ops", "exact_ops_executed", "exact_value_ops", "exact_nonzero_ops", "exact_is_mac",
                    "zero_weights"):
            setattr(row, key, getattr(full, key))
        row.exact_overrides = {key: getattr(full, key) for key in SHAPE_FIELDS}
        return row


#: the fields of a row that describe the layer as executed (its dense MACs, weights, bias, input)
SHAPE_FIELDS = ("macs", "macs_executed", "params", "bias_params", "bias_adds", "input_spikes")


class MatMulAccumulator(AccumulatorBase):
    """:class:`step.layers.SpikeMatMul` products (matmul or Hadamard), both operands tracked."""

    def clear(self) -> None:
        super().clear()
        self.a, self.b = TensorStats(), TensorStats()
        self.macs_exec = self.macs_step = 0.0
        self.exact = self.sop_a = self.sop_b = None

    def update(self, tensors: list[torch.Tensor], out: torch.Tensor, steps: int, batch: int,
               cache: ReductionCache | None = None) -> None:
        a, b = tensors[0].detach(), tensors[1].detach()
        hadamard = getattr(self.module, "mode", "matmul") == "hadamard"
        macs = float(out.numel()) * (1 if hadamard else a.shape[-1])
        cache = cache if cache is not None else ReductionCache(0)
        ra = self.a.update(cache.reduce(a, steps, need_ones=False))
        rb = self.b.update(cache.reduce(b, steps, need_ones=False))
        # for two spike operands every non-zero product term is one add (or subtract for signed
        # spikes): sum_ij |a_ik| |b_kj| = sum_k (column sum of |a|)_k (row sum of |b|)_k, exact.
        # On the CPU the reductions are numbers: skip the count where an operand is not unit spikes
        # (then finish() never reads it); on accelerators it is always computed (no synchronisation).
        if _may_be_unit(ra) and _may_be_unit(rb):
            a_mag = a.abs() if _maybe_negative(ra) else a
            b_mag = b.abs() if _maybe_negative(rb) else b
            if hadamard:
                terms = (a_mag * b_mag).sum(dtype=torch.float64)
            else:  # column / row sums of unit spikes are exact in float32 (fewer than 2**24 terms)
                terms = (a_mag.sum(-2).double() * b_mag.sum(-1).double()).sum()
            self.exact = lazy_add(self.exact, terms)
        self.sop_a = lazy_add(self.sop_a, ra.abs_sum * (macs / max(a.numel(), 1)))
        self.sop_b = lazy_add(self.sop_b, rb.abs_sum * (macs / max(b.numel(), 1)))
        self.macs_exec += macs
        self.macs_step += macs / steps
        self.steps_total += steps * batch
        self.output_shape = self._per_sample_shape(out, steps, batch)

    def finish(self, n: int, T: int) -> LayerOps:
        sa, sb = self.a.summary(), self.b.summary()
        row = LayerOps(
            name=self.name, type=self.type, kind=self.kind, order=self.order or 0,
            output_shape=self.output_shape, steps=self.steps_total / n, macs=self.macs_step / n,
            macs_executed=self.macs_exec / n, input_rate=sa["rate"], input_mean=sa["mean"],
            binary=sa["binary"], ternary=sa["ternary"], integer=sa["integer"], signed=sa["signed"],
            input_rate_b=sb["rate"], binary_b=sb["binary"],
        )
        unit_a, unit_b = sa["binary"] or sa["ternary"], sb["binary"] or sb["ternary"]
        if unit_a and unit_b:
            row.sops = as_float(self.exact) / n  # exact count of the non-zero product terms
        elif unit_a or unit_b:
            # one unit-spike operand: each of its spikes selects entries of the other to add
            row.sops = (as_float(self.sop_a) if unit_a else as_float(self.sop_b)) / n
        elif sa["integer"] and sb["integer"]:
            row.sops = min(as_float(self.sop_a), as_float(self.sop_b)) / n  # value-weighted, smaller side
        elif sa["integer"] or sb["integer"]:
            row.sops = (as_float(self.sop_a) if sa["integer"] else as_float(self.sop_b)) / n
        else:
            row.nonspike_macs_once = row.nonspike_macs_per_step = row.macs_executed
        # the paper's count of a spike product is already exact (coincidences, or one add per
        # entry a spike selects); NeuroBench does not see products of activations
        row.exact_ops = row.exact_ops_executed = row.nonspike_macs_once if row.nonspike_macs_once else row.sops
        row.exact_is_mac = bool(row.nonspike_macs_once)
        return row

    def host_holders(self) -> list:
        return [self, self.a, self.b]


def _may_be_unit(red: Reduction) -> bool:
    """False only when a CPU reduction proves the tensor is not binary or ternary spikes."""
    if isinstance(red.lo, torch.Tensor):
        return True
    return bool(red.integer) and -1 <= red.lo and red.hi <= 1


def _maybe_negative(red: Reduction) -> bool:
    """True unless the reduction proves every value non-negative (device reductions: always True)."""
    return isinstance(red.lo, torch.Tensor) or red.lo < 0
