"""Forward hooks that count operations and firing rates on whatever data the model sees.

Usage (the runner's evaluation loop)::

    meter = EnergyMeter(model, T=cfg.T)
    with meter:                      # hooks live only inside the block
        for x, y in test_loader:     # x: [T, B, ...], already encoded
            model(x)
    report = meter.report()

Every hook reduces its tensors (:mod:`step.energy.reduce`: non-zero count, sums, min/max, an
integer test and a popcount of per-position spike counts). On the CPU one C pass returns them all
(or a torch twin that branches on the values); on accelerators they stay on the device and nothing
is synchronised until :meth:`EnergyMeter.report`, which copies every counter to the host in one
transfer (:func:`step.energy.tally.to_host`); the only other read is one look at the weights when
the ``with`` block opens (which layers hold zero weights). A tensor read by several modules (Q, K and V
reading one spike map; a layer reading its neuron's spikes; K^T viewing K) is reduced once, and
the C neuron kernel hands over the count of the spikes it writes, so those are never read back.

Time handling: layers see time-major ``[T, B, ...]`` inputs or time folded into the batch
(``[T*B, ...]``, :class:`step.layers.SeqModule`; ``[T*B*N, C]``, :class:`step.layers.LinearBN`).
A call whose leading dimensions hold T x B samples runs once per timestep (``steps = T``); any other
call (a head on the time-averaged features) runs once per inference.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from step.energy.counters import (
    LayerAccumulator,
    MatMulAccumulator,
    FusedRepConvAccumulator,
    NEUROBENCH_LAYERS,
    SHAPE_FIELDS,
    classify,
)
from step.energy.activity import ElementAccumulator, NeuronAccumulator
from step.energy.tally import to_host
from step.energy import fanout
from step.energy.ops import OpTable
from step.energy.reduce import ReductionCache, binary_reduction
from step.neurons.kernels import set_spike_sink
from step.errors import StepError


class EnergyMeter:
    """Counts ops and firing rates of ``model`` while used as a context manager.

    ``T`` is the run's number of timesteps; ``time_major=False`` is for plain ANNs whose input is
    ``[B, ...]`` (then T must be 1). ``encoder_per_step`` selects which encoder convention the
    report's headline numbers use; both figures are always kept. ``skip_zero_weights``: in the
    ``exact`` convention a synapse whose weight is zero does no work (pruned models). ``lazy``: keep
    every counter a tensor until the report also on the CPU (the accelerator path; None: by device).
    """

    def __init__(self, model: nn.Module, T: int, encoder_per_step: bool = False, time_major: bool = True,
                 skip_zero_weights: bool = False, lazy: bool | None = None):
        if int(T) < 1:
            raise StepError(f"EnergyMeter needs T >= 1 timesteps, got T={T}.")
        if not time_major and int(T) != 1:
            raise StepError("EnergyMeter(time_major=False) is for [B, ...] inputs and needs T=1.")
        self.model = model
        self.T = int(T)
        self.encoder_per_step = bool(encoder_per_step)
        self.time_major = bool(time_major)
        self.skip_zero_weights = bool(skip_zero_weights)
        self._handles: list[Any] = []
        self._accumulators: dict[nn.Module, Any] = {}
        self._batch: int | None = None
        self._cache = ReductionCache(lazy=bool(lazy))
        self.n_samples = 0
        self._calls = 0
        for name, module in _countable_modules(model):
            kind = classify(module)
            acc_type = {
                "conv": LayerAccumulator,
                "linear": LayerAccumulator,
                "matmul": MatMulAccumulator,
                "neuron": NeuronAccumulator,
                "norm": ElementAccumulator,
                "pool": ElementAccumulator,
            }[kind]
            self._accumulators[module] = acc_type(name or type(module).__name__, module, kind)
        self._fused_repconvs(model)

    def _fused_repconvs(self, model: nn.Module) -> None:
        """Unfused RepConv chains: one extra row each, the fused 3x3 conv of the exact convention."""
        from step.layers.repconv import RepConv

        for name, module in model.named_modules():
            if isinstance(module, RepConv) and module.fused is None:
                self._accumulators[module] = FusedRepConvAccumulator(name, module)
                for inner in (module.conv1, module.dw, module.pw):
                    self._accumulators[inner].exact_in = name

    def _layers(self) -> list[LayerAccumulator]:
        return [a for a in self._accumulators.values() if isinstance(a, LayerAccumulator)]

    def _look_at_weights(self) -> None:
        """Zero-weight counts of every conv / linear layer, in one read (weights do not change while
        the model is evaluated; a layer with zero weights keeps per-channel planes)."""
        layers = self._layers()
        if not layers:
            return
        device = layers[0].module.weight.device
        counts = torch.stack([(a.module.weight.detach() == 0).sum().to(device) for a in layers]).tolist()
        for acc, count in zip(layers, counts):
            acc.zero_weights = int(count)
            acc.skip_zero_weights = self.skip_zero_weights

    # -- hooks ------------------------------------------------------------------------------
    def __enter__(self) -> "EnergyMeter":
        if self._handles:
            raise StepError("EnergyMeter is already active; leave the previous 'with' block first.")
        self._look_at_weights()
        self._handles.append(self.model.register_forward_pre_hook(self._count_batch, with_kwargs=True))
        for module in self._accumulators:
            self._handles.append(module.register_forward_hook(self._hook))
        self._previous_sink = set_spike_sink(self._spikes_written)
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        set_spike_sink(self._previous_sink)
        self._cache.clear()

    def _spikes_written(self, spikes: torch.Tensor, steps: int, total: float, ones: float) -> None:
        """The C neuron kernel's count of the spikes it just wrote: the neuron's hook (and the layers
        reading those spikes) then find their reduction in the cache instead of reading them again."""
        self._cache.put(spikes, steps, binary_reduction(spikes.numel(), total, ones))

    def _count_batch(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
        if x is None or x.dim() < (2 if self.time_major else 1):
            raise StepError("EnergyMeter: the model's first argument must be a tensor [T, B, ...].")
        if self.time_major and x.shape[0] != self.T:
            raise StepError(
                f"EnergyMeter: the input's first dimension is {x.shape[0]} but T={self.T}; "
                "feed time-major [T, B, ...] inputs (encode first) or pass the run's T."
            )
        self._batch = int(x.shape[1] if self.time_major else x.shape[0])
        self.n_samples += self._batch
        self._cache.clear()

    def _steps(self, x: torch.Tensor) -> int:
        """T if this call processes every timestep (time-major or time folded into rows), else 1."""
        T, B = self.T, self._batch
        if T == 1 or not B:
            return 1
        if x.dim() >= 2 and x.shape[0] == T and x.shape[1] == B:
            return T
        if x.dim() >= 1 and x.shape[0] % (T * B) == 0:
            return T
        return 1

    def _hook(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        if self._batch is None:
            return  # called outside a forward of the metered model
        acc = self._accumulators[module]
        tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
        if not tensors or not isinstance(output, torch.Tensor):
            return
        if acc.order is None:
            acc.order = self._calls
            self._calls += 1
        with torch.no_grad():
            acc.update(tensors, output.detach(), self._steps(tensors[0]), self._batch, self._cache)

    # -- results ----------------------------------------------------------------------------
    def reset(self) -> None:
        for acc in self._accumulators.values():
            acc.clear()
        self.n_samples = 0
        self._calls = 0

    def table(self) -> OpTable:
        """The op table per inference (synchronises the device once)."""
        if self.n_samples == 0:
            raise StepError("EnergyMeter saw no forward pass; run the model inside 'with meter:' first.")
        used = [acc for acc in self._accumulators.values() if acc.order is not None]
        for acc in used:
            if isinstance(acc, LayerAccumulator) and acc.zero_weights:
                acc.nz_per_tap = fanout.nonzero_weights_per_tap(acc.module)
        to_host(used)  # the one device-to-host copy of the evaluation
        rows = [acc.finish(self.n_samples, self.T) for acc in used]
        for acc, row in zip(used, rows):
            if getattr(acc, "exact_in", ""):  # counted on its RepConv's fused row
                row.exact_in = acc.exact_in
                row.exact_ops = row.exact_ops_executed = row.exact_value_ops = row.exact_nonzero_ops = 0.0
                row.paper_minus_exact = 0.0
                row.exact_overrides = {key: 0 for key in SHAPE_FIELDS}
        rows.sort(key=lambda r: r.order)
        first = next((r for r in rows if r.kind in ("conv", "linear", "matmul")), None)
        if first is not None and not (first.binary or first.integer):
            first.encoder = True  # the first synaptic layer fed a real-valued input encodes it
            first.nonspike_macs_once = first.macs
            first.nonspike_macs_per_step = first.macs * self.T
            if not self.encoder_per_step:  # the same image at every step: computed once
                first.exact_ops = first.exact_ops_executed / max(first.steps, 1.0)
        for row in rows:
            row.nonspike_macs = row.nonspike_macs_per_step if self.encoder_per_step else row.nonspike_macs_once
        facts = model_facts(self.model)
        connections = [a for a in self._layers()
                       if isinstance(a.module, NEUROBENCH_LAYERS) and not isinstance(a, FusedRepConvAccumulator)]
        facts["connection_weights"] = sum(a.module.weight.numel() for a in connections)
        facts["connection_zero_weights"] = sum(a.zero_weights for a in connections)
        return OpTable(T=self.T, n_samples=self.n_samples, layers=rows, encoder_per_step=self.encoder_per_step,
                       skip_zero_weights=self.skip_zero_weights, facts=facts)

    def report(self):
        from step.energy.report import EnergyReport

        return EnergyReport(self.table())


def model_facts(model: nn.Module) -> dict[str, Any]:
    """Parameter count and memory footprint (parameters and buffers, bytes), NeuroBench's way."""
    params = list(model.parameters())
    buffers = list(model.buffers())
    return {
        "parameter_count": sum(p.numel() for p in params),
        "footprint_bytes": sum(t.numel() * t.element_size() for t in (*params, *buffers)),
    }


def _is_neuron(module: nn.Module) -> bool:
    from step.neurons.base import SpikingNeuron

    return isinstance(module, SpikingNeuron) or bool(getattr(module, "is_spiking_neuron", False))


def _countable_modules(model: nn.Module):
    """(name, module) of every module the meter counts; the insides of neurons are skipped."""
    skip: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in skip):
            continue
        if _is_neuron(module):
            skip.append(name)
        if classify(module) is not None:
            yield name, module


