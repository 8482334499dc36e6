"""Counting never reads device values during an evaluation: one transfer when the report is made.

On an accelerator every ``.item()``, ``float(t)``, ``if t:``, ``.tolist()``, ``.cpu()`` or data-
dependent op (``nonzero``, boolean indexing) on an activation stalls the device until it has caught
up. The test runs the counters' accelerator path (``EnergyMeter(lazy=True)``) on the CPU with
inputs of a tensor subclass that stands for device memory: every read of its values (or of anything
computed from it) is counted. The model's own forward is the baseline.
"""

from __future__ import annotations

import pytest
import torch

import step  # noqa: F401
from step import native
from step.energy import EnergyMeter
from step.energy import counters
from step.registry import MODELS

#: the calls that read device values back to the host (or need them to size a result)
READS = {
    torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.__bool__,
    torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__index__, torch.Tensor.nonzero, torch.nonzero,
    torch.masked_select, torch.Tensor.masked_select, torch.unique, torch.Tensor.unique, torch.bincount,
    torch.Tensor.bincount,
}


class OnDevice(torch.Tensor):
    """A tensor standing for accelerator memory: reading its values is counted as a synchronisation.
    ``.cpu()`` hands back an ordinary tensor (the values are on the host from then on)."""

    reads: list[str] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        boolean_index = func is torch.Tensor.__getitem__ and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool
            for i in (args[1] if isinstance(args[1], tuple) else (args[1],)))
        if func in READS or boolean_index:
            cls.reads.append(getattr(func, "__name__", str(func)))
        out = super().__torch_function__(func, types, args, kwargs)
        if func is torch.Tensor.cpu:
            return out.as_subclass(torch.Tensor)
        return out


@pytest.fixture(autouse=True)
def torch_twins():
    native.select("torch")  # the C kernels read raw memory; the device path is the torch one
    yield
    native.select(None)


def _model(depth: int):
    torch.manual_seed(0)
    return MODELS.build("spikformer", num_classes=4, img_size=16, in_chans=1, depth=depth, dim=16, heads=2).eval()


def _batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(2, 4, 1, 16, 16, generator=g) * 3).as_subclass(OnDevice) for _ in range(2)]


def _reads_in_forward(model, meter=None) -> list[str]:
    OnDevice.reads = []
    with torch.inference_mode():
        if meter is None:
            for x in _batches():
                model(x)
        else:
            with meter:
                for x in _batches():
                    model(x)
    return list(OnDevice.reads)


@pytest.mark.parametrize("depth", [1, 2])
def test_counting_reads_nothing_during_the_evaluation_and_once_at_the_end(depth):
    model = _model(depth)
    baseline = _reads_in_forward(model)
    meter = EnergyMeter(model, T=2, lazy=True)
    assert _reads_in_forward(model, meter) == baseline  # not one read per layer, nor per batch
    OnDevice.reads = []
    report = meter.report()
    assert OnDevice.reads == ["cpu"]  # the one transfer, whatever the depth
    # and the numbers are those of the host path
    plain = EnergyMeter(model, T=2)
    with plain, torch.inference_mode():
        for x in _batches():
            model(x.as_subclass(torch.Tensor))
    for a, b in zip(report.table.layers, plain.report().table.layers):
        for field in ("sops", "exact_ops", "nb_ops", "nb_dense", "input_rate", "output_rate", "bitserial_acs"):
            va, vb = getattr(a, field), getattr(b, field)
            assert (va is None and vb is None) or va == pytest.approx(vb, rel=1e-9, abs=1e-9), (a.name, field)


def test_the_check_catches_a_per_layer_read(monkeypatch):
    """The detector works: a counter that reads one value per call (as ``float(t)``) is caught."""
    model = _model(1)
    baseline = _reads_in_forward(model)
    update = counters.TensorStats.update

    def reading_update(self, red):
        float(red.nnz)  # the kind of per-layer synchronisation the counters must not do
        return update(self, red)

    monkeypatch.setattr(counters.TensorStats, "update", reading_update)
    reads = _reads_in_forward(model, EnergyMeter(model, T=2, lazy=True))
    assert len(reads) > len(baseline)
