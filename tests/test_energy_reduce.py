"""The per-tensor reductions behind the counters: CPU and device paths agree, exact binary test,
bipolar (ternary) spikes charged as accumulates, one reduction per tensor read by several layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import step  # noqa: F401
from step.energy import EnergyMeter
from step.energy.reduce import ReductionCache, Scratch, _reduce_cpu, _reduce_device, reduce_tensor
from step.layers import SeqModule, SpikeMatMul


def _as_float(value) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "binary": (torch.rand(4, 3, 5, 7, generator=g) < 0.3).float(),
        "ternary": torch.randint(-1, 2, (4, 3, 5, 7), generator=g).float(),
        "integer": torch.randint(0, 5, (4, 3, 5, 7), generator=g).float(),
        "real": torch.randn(4, 3, 5, 7, generator=g),
        "zeros": torch.zeros(4, 3, 5, 7),
    }


@pytest.mark.parametrize("kind", ["binary", "ternary", "integer", "real", "zeros"])
def test_cpu_fast_path_equals_the_device_path(kind):
    x = _tensors()[kind]
    scratch = Scratch()
    _reduce_cpu(torch.rand(3, 1000), 3, scratch)  # leaves larger, dirty buffers behind
    for fast in (_reduce_cpu(x, 4), _reduce_cpu(x, 4, scratch)):
        device = _reduce_device(x, 4)
        for field in ("numel", "nnz", "sum", "abs_sum", "lo", "hi", "integer"):
            assert _as_float(getattr(fast, field)) == pytest.approx(_as_float(getattr(device, field))), field
        if kind != "real":
            assert _as_float(fast.ones) == pytest.approx(_as_float(device.ones))


def test_reduction_against_hand_counts():
    # T=2 steps of 3 positions: counts per position are 2, 1, 0 -> 1-bits 1 + 1 + 0
    x = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    red = reduce_tensor(x, steps=2)
    assert (red.nnz, red.sum, red.lo, red.hi, red.integer, red.ones) == (3.0, 3.0, 0.0, 1.0, True, 2.0)
    # bipolar: |counts| = 2, 0, 1 -> ones 1 + 0 + 1; abs_sum 3 while the signed sum is -1
    y = torch.tensor([[-1.0, 1.0, 0.0], [-1.0, -1.0, 1.0]])
    red = reduce_tensor(y, steps=2)
    assert (red.nnz, red.sum, red.abs_sum, red.lo, red.integer, red.ones) == (5.0, -1.0, 5.0, -1.0, True, 2.0)


@pytest.mark.parametrize("odd", [1 - 2**-24, 1 + 2**-23, 2**-149, -1.0, 2.0, float("nan")])
def test_binary_test_is_exact_for_values_next_to_zero_and_one(odd):
    x = torch.ones(1000)
    x[::3] = 0.0
    x[17] = odd
    red = reduce_tensor(x)
    assert not (red.integer and 0 <= red.lo and red.hi <= 1)  # not binary
    assert reduce_tensor(torch.where(torch.arange(1000) == 17, torch.tensor(1.0), x)).integer


def test_counts_above_255_are_counted_exactly_on_the_cpu():
    x = torch.tensor([[300.0, 1.0, 0.0]])  # integer spikes; one count beyond a 256-bin histogram
    red = reduce_tensor(x)
    assert red.ones == bin(300).count("1") + 1


def test_ternary_input_is_charged_as_accumulates():
    T = 2
    fc = nn.Linear(3, 4, bias=False)
    x = torch.tensor([[1.0, -1.0, 0.0], [0.0, -1.0, 0.0]]).view(T, 1, 3)
    meter = EnergyMeter(fc, T=T)
    with meter, torch.inference_mode():
        fc(x)
    row = meter.report().table.layers[0]
    assert row.ternary and row.signed and row.integer and not row.binary and not row.encoder
    assert row.input_rate == pytest.approx(3 / 6)
    assert row.sops == pytest.approx(3 * 4)  # 3 non-zero spikes x fan-out 4 (adds and subtracts)
    assert row.nonspike_macs == 0
    assert row.twin_bits == 3  # |count| <= 2 needs 2 bits, plus a sign bit


def test_ternary_matmul_counts_every_nonzero_product():
    # a [m=2, k=2] ternary, b [k=2, n=2] ternary; non-zero products: sum_ij |a_ik||b_kj|
    a = torch.tensor([[1.0, -1.0], [0.0, 1.0]])
    b = torch.tensor([[-1.0, 0.0], [1.0, 1.0]])
    expected = float((a.abs() @ b.abs()).sum())  # from the definition
    assert expected == 1 * 1 + 2 * 2  # column sums of |a| (1, 2) . row sums of |b| (1, 2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.mm = SpikeMatMul("matmul")

        def forward(self, x):
            return self.mm(x[..., :2], x[..., 2:])

    x = torch.cat([a, b], -1).view(1, 1, 2, 4)
    net = Net()
    meter = EnergyMeter(net, T=1)
    with meter, torch.inference_mode():
        net(x)
    row = meter.report().table.layers[0]
    assert row.ternary and row.sops == pytest.approx(expected)


def test_shared_input_is_reduced_once_with_identical_numbers():
    torch.manual_seed(0)
    model = nn.ModuleDict({"q": nn.Linear(8, 8), "k": nn.Linear(8, 8), "v": nn.Linear(8, 8)})

    class QKV(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x):
            return self.m["q"](x) + self.m["k"](x) + self.m["v"](x)

    net = QKV()
    x = (torch.rand(4, 2, 5, 8) < 0.4).float()
    meter = EnergyMeter(net, T=4)
    with meter, torch.inference_mode():
        net(x)
    assert meter._cache.hits == 2 and meter._cache.misses == 1
    rows = meter.report().table.layers
    assert len({(r.sops, r.input_rate, r.bitserial_acs) for r in rows}) == 1
    # the same layer fed a copy (a different tensor) gives the same numbers without the cache
    alone = EnergyMeter(model["k"], T=4)
    with alone, torch.inference_mode():
        model["k"](x.clone())
    single = alone.report().table.layers[0]
    assert (single.sops, single.input_rate, single.bitserial_acs) == (rows[0].sops, rows[0].input_rate, rows[0].bitserial_acs)


def test_cache_never_confuses_different_layouts():
    cache = ReductionCache()
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    a = cache.reduce(x, steps=2)  # counts over steps: (2, 1)
    b = cache.reduce(x.t(), steps=2)  # a transposed view: not contiguous, reduced on its own
    assert a.ones == 1 + 1 and b.ones == 1 + 1 and cache.misses == 2
    c = cache.reduce(x.reshape(4), steps=2)  # the same memory in the same order: a hit
    assert c is a and cache.hits == 1


def test_bipolar_attention_qk_is_counted_as_spike_driven():
    from step.neurons.factory import NeuronFactory
    from step.registry import ATTENTIONS

    torch.manual_seed(0)
    attn = ATTENTIONS.build("bipolar", dim=16, heads=2, neuron=NeuronFactory("lif", T=2)).eval()
    x = torch.randn(2, 3, 6, 16) * 3  # T=2, B=3, N=6 tokens: strong enough for +1 and -1 spikes
    meter = EnergyMeter(attn, T=2)
    with meter, torch.inference_mode():
        attn(x)
    qk = next(r for r in meter.report().table.layers if r.kind == "matmul")
    assert qk.ternary and not qk.binary
    assert qk.sops > 0 and qk.nonspike_macs == 0


def test_layer_after_a_neuron_gets_the_one_bits_the_neuron_skipped():
    from step.registry import NEURONS

    torch.manual_seed(0)
    T = 4
    net = nn.Sequential(NEURONS.build("if", v_threshold=1.0, v_reset=0.0, T=T), nn.Linear(6, 3, bias=False))
    x = 2 * torch.rand(T, 5, 6)
    meter = EnergyMeter(net, T=T)
    with meter, torch.inference_mode():
        net(x)
    assert meter._cache.hits == 1  # the linear layer reused the neuron's reduction ...
    layer = meter.report().table.layers[1]
    with torch.inference_mode():
        spikes = net[0](x)
    counts = spikes.sum(0)  # ... and its 1-bits (not computed for the neuron) match a hand count
    ones = sum(bin(int(c)).count("1") for c in counts.flatten())
    assert layer.binary and layer.bitserial_acs == pytest.approx(ones * 3 / 5)
