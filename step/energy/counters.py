"""Per-module accumulators: dense-MAC formulas and device-side input statistics.

Dense MACs of one call (all samples and timesteps in it), energy.md section 1.2:

* Conv (k kernel elements, groups g): ``out.numel() x (C_in / g) x k``; transposed conv:
  ``in.numel() x (C_out / g) x k``. Bias adds (``out.numel()``) are counted apart.
* Linear: ``out.numel() x in_features`` (the token count is in the leading dimensions).
* SpikeMatMul ``a @ b``: ``out.numel() x a.shape[-1]`` (m k n per head); Hadamard: ``out.numel()``.
* Norm: one multiply-add per element (folded into the previous layer at inference: not charged);
  pooling: ``out.numel() x kernel`` comparisons/adds (not charged by the SDT convention).

A synaptic call adds ``value_sum x (MACs / input elements)`` accumulates: for a binary input this
is rate x MACs (SOP = T r FL summed over the set), for integer spikes the value-weighted count.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from step.energy.ops import LayerOps

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


#: spike counts up to this value enter the bit-serial twin (T x max spike value must stay below)
MAX_COUNT = 255
_POPCOUNTS: dict[torch.device, torch.Tensor] = {}


def ones_in_counts(counts: torch.Tensor) -> torch.Tensor:
    """Total 1-bits of the integer values in ``counts`` (0..MAX_COUNT), in one histogram pass.

    ``torch.histc`` has a fixed output size, so this never synchronises the device.
    """
    table = _POPCOUNTS.get(counts.device)
    if table is None:
        table = popcount(torch.arange(MAX_COUNT + 1)).to(torch.float64).to(counts.device)
        _POPCOUNTS[counts.device] = table
    # float64 bins: a float32 bin would stop counting at 2**24 elements
    hist = torch.histc(counts.to(torch.float64), bins=MAX_COUNT + 1, min=-0.5, max=MAX_COUNT + 0.5)
    return (hist * table).sum()


def popcount(counts: torch.Tensor) -> torch.Tensor:
    """Number of 1-bits of each non-negative integer (< 2**32) in ``counts`` (int64 SWAR)."""
    c = counts.to(torch.int64)
    c = c - ((c >> 1) & 0x55555555)
    c = (c & 0x33333333) + ((c >> 2) & 0x33333333)
    c = (c + (c >> 4)) & 0x0F0F0F0F
    return ((c * 0x01010101) & 0xFFFFFFFF) >> 24


def twin_bits(T: int, max_value: float) -> int:
    """Bits that hold a spike count of up to ``T x max_value``: ceil(log2(T x max + 1))."""
    return max(1, math.ceil(math.log2(T * max(max_value, 1.0) + 1)))


class TensorStats:
    """Running device-side reductions of one input stream: numel, non-zeros, sum, min, max, frac."""

    def __init__(self) -> None:
        self.numel = 0
        self.nnz = self.sum = self.min = self.max = self.nonint = None

    def update(self, x: torch.Tensor, s: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Accumulate ``x`` (``s``: its value sum if already known); return (non-zeros, sum)."""
        nnz = torch.count_nonzero(x)
        if s is None:
            s = x.sum()
        s = s.to(torch.float64)
        if x.is_floating_point():
            lo, hi = torch.aminmax(x)
            frac = torch.frac(x).any()  # a non-integer value anywhere
        else:
            lo, hi, frac = x.min(), x.max(), torch.zeros((), dtype=torch.bool, device=x.device)
        self.numel += x.numel()
        self.nnz, self.sum = _add(self.nnz, nnz), _add(self.sum, s)
        self.min = lo if self.min is None else torch.minimum(self.min, lo)
        self.max = hi if self.max is None else torch.maximum(self.max, hi)
        self.nonint = frac if self.nonint is None else self.nonint | frac
        return nnz, s

    def summary(self) -> dict[str, Any]:
        if not self.numel:
            return {"rate": None, "mean": None, "binary": False, "integer": False, "max": 0.0}
        nnz, s, lo, hi = _item(self.nnz), _item(self.sum), _item(self.min), _item(self.max)
        integer = lo >= 0 and not bool(self.nonint.item())
        return {
            "rate": nnz / self.numel,
            "mean": s / self.numel,
            "binary": lo >= 0 and hi <= 1 and s == nnz,
            "integer": integer,
            "max": hi,
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


class LayerAccumulator(_Base):
    """Conv and Linear layers."""

    def clear(self) -> None:
        super().clear()
        self.stats = TensorStats()
        self.macs_exec = self.macs_step = self.bias = 0.0
        self.n_in = self.n_out = 0.0
        self.sop = self.ones = None

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

    def update(self, tensors: list[torch.Tensor], out: torch.Tensor, steps: int, batch: int) -> None:
        x = tensors[0].detach()
        macs = self.call_macs(x, out)
        # per-position spike counts over the T steps: the activations of the bit-serial twin
        counts = x.reshape(steps, -1).sum(0) if steps > 1 else x.reshape(-1)
        _, s = self.stats.update(x, counts.sum())
        per_elem = macs / max(x.numel(), 1)
        self.sop = _add(self.sop, s * per_elem)
        ones = ones_in_counts(counts)  # meaningful only for integer inputs
        self.ones = _add(self.ones, ones.to(torch.float64) * per_elem)
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
        spike_like = st["binary"] or st["integer"]
        params, bias_params, kernel = self.geometry()
        row = LayerOps(
            name=self.name, type=self.type, kind=self.kind, order=self.order or 0,
            output_shape=self.output_shape, steps=self.steps_total / n, macs=self.macs_step / n,
            macs_executed=self.macs_exec / n, input_rate=st["rate"], input_mean=st["mean"],
            binary=st["binary"], integer=st["integer"], bias_adds=self.bias / n, params=params,
            bias_params=bias_params, kernel=kernel, n_in=self.n_in / n, n_out=self.n_out / n,
        )
        if spike_like:
            row.sops = _item(self.sop) / n
            row.input_spikes = st["mean"] * self.stats.numel / n
            row.bitserial_acs = _item(self.ones) / n
            row.twin_bits = twin_bits(T, st["max"])
            if row.macs and row.n_in:  # 1-bits per activation = bit-serial ACs / fan-out
                row.bit_density = row.bitserial_acs / (row.macs / row.n_in) / (row.twin_bits * row.n_in)
        else:
            row.nonspike_macs_once = row.nonspike_macs_per_step = row.macs_executed
        return row


class MatMulAccumulator(_Base):
    """:class:`step.layers.SpikeMatMul` products (matmul or Hadamard), both operands tracked."""

    def clear(self) -> None:
        super().clear()
        self.a, self.b = TensorStats(), TensorStats()
        self.macs_exec = self.macs_step = 0.0
        self.exact = self.sop_a = self.sop_b = None

    def update(self, tensors: list[torch.Tensor], out: torch.Tensor, steps: int, batch: int) -> None:
        a, b = tensors[0].detach(), tensors[1].detach()
        hadamard = getattr(self.module, "mode", "matmul") == "hadamard"
        macs = float(out.numel()) * (1 if hadamard else a.shape[-1])
        _, sa = self.a.update(a)
        _, sb = self.b.update(b)
        # for two binary operands every product term is an AND; the output sums the non-zero ones
        self.exact = _add(self.exact, out.sum().to(torch.float64))
        self.sop_a = _add(self.sop_a, sa * (macs / max(a.numel(), 1)))
        self.sop_b = _add(self.sop_b, sb * (macs / max(b.numel(), 1)))
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
            binary=sa["binary"], integer=sa["integer"], input_rate_b=sb["rate"], binary_b=sb["binary"],
        )
        if sa["binary"] and sb["binary"]:
            row.sops = _item(self.exact) / n  # exact count of AND operations that fire
        elif sa["binary"] or sb["binary"]:
            # one binary operand: each of its spikes selects entries of the other to add
            row.sops = (_item(self.sop_a) if sa["binary"] else _item(self.sop_b)) / n
        elif sa["integer"] and sb["integer"]:
            row.sops = min(_item(self.sop_a), _item(self.sop_b)) / n  # value-weighted, smaller side
        elif sa["integer"] or sb["integer"]:
            row.sops = (_item(self.sop_a) if sa["integer"] else _item(self.sop_b)) / n
        else:
            row.nonspike_macs_once = row.nonspike_macs_per_step = row.macs_executed
        return row


class NeuronAccumulator(_Base):
    """Spiking neurons: updates (T x neurons) and the spikes they emit."""

    def clear(self) -> None:
        super().clear()
        self.updates = self.neurons = 0.0
        self.nnz = self.sum = None

    def update(self, tensors: list[torch.Tensor], out: torch.Tensor, steps: int, batch: int) -> None:
        self.updates += float(out.numel())
        self.neurons += out.numel() / steps
        nnz = torch.count_nonzero(out)
        self.nnz = _add(self.nnz, nnz)
        binary = getattr(self.module, "max_spike", None) == 1  # then the spike count is the sum
        self.sum = _add(self.sum, nnz if binary else out.sum().to(torch.float64))
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

    def clear(self) -> None:
        super().clear()
        self.ops = 0.0

    def update(self, tensors: list[torch.Tensor], out: torch.Tensor, steps: int, batch: int) -> None:
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
