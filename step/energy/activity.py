"""Counters of what is reported but not synaptic: neuron updates and spikes, norm and pooling operations.

The synaptic counters (conv, linear, spike products) are in :mod:`step.energy.counters`; both kinds
keep device-side sums until :func:`step.energy.tally.to_host`.
"""

from __future__ import annotations

import math

import torch

from step.energy.ops import LayerOps
from step.energy.reduce import ReductionCache
from step.energy.tally import AccumulatorBase, as_float, lazy_add


class NeuronAccumulator(AccumulatorBase):
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
        self.nnz = lazy_add(self.nnz, red.nnz)
        self.sum = lazy_add(self.sum, red.abs_sum)  # spikes, value-weighted (|v| for signed spikes)
        self.steps_total += steps * batch
        self.output_shape = self._per_sample_shape(out, steps, batch)

    def finish(self, n: int, T: int) -> LayerOps:
        leaky = getattr(self.module, "leaky", None)
        if leaky is None:
            leaky = self.type not in ("IF", "IFNode", "IFNeuron")
        return LayerOps(
            name=self.name, type=self.type, kind=self.kind, order=self.order or 0,
            output_shape=self.output_shape, steps=self.steps_total / n, neurons=self.neurons / n,
            neuron_updates=self.updates / n, spikes=as_float(self.sum) / n,
            output_rate=as_float(self.nnz) / self.updates if self.updates else 0.0, leaky=bool(leaky),
        )


class ElementAccumulator(AccumulatorBase):
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
