"""Per-module accumulators: dense-MAC formulas and device-side input statistics.

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
evaluation: on accelerators every accumulator is a device tensor until :func:`to_host` copies all
of them in one transfer.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from step.energy import fanout
from step.energy.ops import LayerOps
from step.energy.reduce import Reduction, ReductionCache, plane_key, twin_bits

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


def _add(total: Any, value: Any) -> Any:
    return value if total is None else total + value


def _item(value: Any) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value or 0.0)


def _min(a: Any, b: Any) -> Any:
    if a is None:
        return b
    return torch.minimum(a, b) if isinstance(a, torch.Tensor) else min(a, b)


def _max(a: Any, b: Any) -> Any:
    if a is None:
        return b
    return torch.maximum(a, b) if isinstance(a, torch.Tensor) else max(a, b)


def _and(a: Any, b: Any) -> Any:
    if a is None:
        return b
    return a & b if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor) else (a and b)


class TensorStats:
    """Running sums of the :class:`~step.energy.reduce.Reduction` of one input stream."""

    def __init__(self) -> None:
        self.numel = 0
        self.nnz = self.sum = self.abs_sum = self.min = self.max = self.integer = self.ones = None

    def update(self, red: Reduction) -> Reduction:
        self.numel += red.numel
        self.nnz, self.sum, self.abs_sum = _add(self.nnz, red.nnz), _add(self.sum, red.sum), _add(self.abs_sum, red.abs_sum)
        if red.ones is not None:
            self.ones = _add(self.ones, red.ones)
        self.min, self.max = _min(self.min, red.lo), _max(self.max, red.hi)
        self.integer = _and(self.integer, red.integer)
        return red

    def summary(self) -> dict[str, Any]:
        """rate, mean, binary ({0, 1}), ternary ({-1, 0, 1}), integer (any integer spikes), signed, max."""
        if not self.numel:
            return {"rate": None, "mean": None, "abs_mean": None, "binary": False, "ternary": False,
                    "integer": False, "signed": False, "max": 0.0}
        lo, hi = _item(self.min), _item(self.max)
        integer = bool(_item(self.integer))
        return {
            "rate": _item(self.nnz) / self.numel,
            "mean": _item(self.sum) / self.numel,
            "abs_mean": _item(self.abs_sum) / self.numel,
            "binary": integer and lo >= 0 and hi <= 1,
            "ternary": integer and -1 <= lo < 0 and hi <= 1,
            "integer": integer,
            "signed": lo < 0,
            "max": max(abs(lo), abs(hi)),
        }


class _Base:
    def __init__(self, name: str, module: nn.Module, kind: str):
        self.name, self.module, self.kind = name, module, kind
        self.type = type(module).__name__
        self.clear()

    def clear(self) -> None:
        self.order: int | None = None
        self.output_shape: tuple[int, ...] = ()
        self.steps_total = 0.0  # sum over calls of steps x samples

    def _per_sample_shape(self, out: torch.Tensor, steps: int, batch: int) -> tuple[int, ...]:
        shape = tuple(out.shape)
        if steps > 1 and len(shape) >= 2 and shape[0] * shape[1] == steps * batch:
            return shape[2:]
        return shape[1:]


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


class LayerAccumulator(_Base):
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
            tally.plane_abs = _add(tally.plane_abs, planes.logical(planes.abs).reshape(-1))
            tally.plane_nz = _add(tally.plane_nz, planes.logical(planes.nz).reshape(-1))
        else:
            tally.abs_total, tally.nz_total = _add(tally.abs_total, red.abs_sum), _add(tally.nz_total, red.nnz)
        tally.rows += x.numel() // max(math.prod(tally.shape), 1)
        per_elem = macs / max(x.numel(), 1)
        # each spike of value v (sign included) drives |v| accumulates per fan-out
        self.sop = _add(self.sop, red.abs_sum * per_elem)
        self.ones = _add(self.ones, red.ones * per_elem)  # bit-serial twin: per-position spike counts
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
            row.sops = _item(self.sop) / n
            row.input_spikes = st["abs_mean"] * self.stats.numel / n
            row.bitserial_acs = _item(self.ones) / n
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
                value += _item(tally.abs_total) * f
                nonzero += _item(tally.nz_total) * f
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


class MatMulAccumulator(_Base):
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
            self.exact = _add(self.exact, terms)
        self.sop_a = _add(self.sop_a, ra.abs_sum * (macs / max(a.numel(), 1)))
        self.sop_b = _add(self.sop_b, rb.abs_sum * (macs / max(b.numel(), 1)))
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
            row.sops = _item(self.exact) / n  # exact count of the non-zero product terms
        elif unit_a or unit_b:
            # one unit-spike operand: each of its spikes selects entries of the other to add
            row.sops = (_item(self.sop_a) if unit_a else _item(self.sop_b)) / n
        elif sa["integer"] and sb["integer"]:
            row.sops = min(_item(self.sop_a), _item(self.sop_b)) / n  # value-weighted, smaller side
        elif sa["integer"] or sb["integer"]:
            row.sops = (_item(self.sop_a) if sa["integer"] else _item(self.sop_b)) / n
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


class NeuronAccumulator(_Base):
    """Spiking neurons: updates (T x neurons) and the spikes they emit."""

    def host_holders(self) -> list:
        return [self]

    def clear(self) -> None:
        super().clear()
        self.updates = self.neurons = 0.0
        self.nnz = self.sum = None

    def update(self, tensors: list[torch.Tensor], out: torch.Tensor, steps: int, batch: int,
               cache: ReductionCache | None = None) -> None:
        self.updates += float(out.numel())
        self.neurons += out.numel() / steps
        # reduced once and shared with the layers that read these spikes next
        red = (cache if cache is not None else ReductionCache(0)).reduce(out, steps, need_ones=False)
        self.nnz = _add(self.nnz, red.nnz)
        self.sum = _add(self.sum, red.abs_sum)  # spikes, value-weighted (|v| for signed spikes)
        self.steps_total += steps * batch
        self.output_shape = self._per_sample_shape(out, steps, batch)

    def finish(self, n: int, T: int) -> LayerOps:
        leaky = getattr(self.module, "leaky", None)
        if leaky is None:
            leaky = self.type not in ("IF", "IFNode", "IFNeuron")
        return LayerOps(
            name=self.name, type=self.type, kind=self.kind, order=self.order or 0,
            output_shape=self.output_shape, steps=self.steps_total / n, neurons=self.neurons / n,
            neuron_updates=self.updates / n, spikes=_item(self.sum) / n,
            output_rate=_item(self.nnz) / self.updates if self.updates else 0.0, leaky=bool(leaky),
        )


class ElementAccumulator(_Base):
    """Norm and pooling layers: element operations only (reported, not charged)."""

    def host_holders(self) -> list:
        return [self]

    def clear(self) -> None:
        super().clear()
        self.ops = 0.0

    def update(self, tensors: list[torch.Tensor], out: torch.Tensor, steps: int, batch: int,
               cache: ReductionCache | None = None) -> None:
        if self.kind == "pool":
            m = self.module
            kernel = getattr(m, "kernel_size", None)
            if kernel is None:  # adaptive pooling reads every input element once
                self.ops += float(tensors[0].numel())
            else:
                k = math.prod(kernel) if isinstance(kernel, (tuple, list)) else kernel ** (out.dim() - 2)
                self.ops += float(out.numel()) * k
        else:
            self.ops += float(out.numel())
        self.steps_total += steps * batch
        self.output_shape = self._per_sample_shape(out, steps, batch)

    def finish(self, n: int, T: int) -> LayerOps:
        return LayerOps(
            name=self.name, type=self.type, kind=self.kind, order=self.order or 0,
            output_shape=self.output_shape, steps=self.steps_total / n, ops=self.ops / n,
        )


def to_host(accumulators) -> int:
    """Replace every tensor an accumulator holds by host values, in ONE device-to-host copy.

    0-d tensors become Python floats (bools for flags), planes CPU float64 tensors. Returns the
    number of tensors moved. This is the counters' only read of device values.
    """
    slots: list[tuple[Any, str, torch.Tensor]] = []
    for acc in accumulators:
        for holder in acc.host_holders():
            for name, value in vars(holder).items():
                if isinstance(value, torch.Tensor) and name != "module":
                    slots.append((holder, name, value))
    if not slots:
        return 0
    # 0-d values first, so that one tolist() of that slice turns them into floats
    slots.sort(key=lambda slot: slot[2].dim() != 0)
    flat = torch.cat([v.detach().reshape(-1).to(torch.float64) for _, _, v in slots]).cpu()
    n_scalars = sum(1 for _, _, v in slots if v.dim() == 0)
    scalars = flat[:n_scalars].tolist()
    offset = n_scalars
    for i, (holder, name, value) in enumerate(slots):
        if i < n_scalars:
            host: Any = bool(scalars[i]) if value.dtype == torch.bool else scalars[i]
        else:
            host = flat[offset:offset + value.numel()].reshape(value.shape)
            offset += value.numel()
        setattr(holder, name, host)
    return len(slots)
