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


@pytest.mark.parametrize("kernels", ["c", "torch"])
def test_layer_after_a_neuron_gets_the_one_bits_the_neuron_skipped(kernels):
    from step import native
    from step.registry import NEURONS

    if kernels == "c" and native.load("reduce") is None:
        pytest.skip("no C compiler")
    torch.manual_seed(0)
    T = 4
    net = nn.Sequential(NEURONS.build("if", v_threshold=1.0, v_reset=0.0, T=T), nn.Linear(6, 3, bias=False))
    x = 2 * torch.rand(T, 5, 6)
    meter = EnergyMeter(net, T=T)
    native.select(kernels)
    try:
        with meter, torch.inference_mode():
            net(x)
    finally:
        native.select(None)
    # the linear layer reused the neuron's reduction; with the C kernel the neuron's own forward
    # counted its spikes, so nothing was read back at all
    assert (meter._cache.hits, meter._cache.misses) == ((2, 0) if kernels == "c" else (1, 1))
    layer = meter.report().table.layers[1]
    with torch.inference_mode():
        spikes = net[0](x)
    counts = spikes.sum(0)  # ... and its 1-bits (not computed for the neuron) match a hand count
    ones = sum(bin(int(c)).count("1") for c in counts.flatten())
    assert layer.binary and layer.bitserial_acs == pytest.approx(ones * 3 / 5)


# ---- the C kernel (step/native/reduce.c) and its torch twin -----------------------------------
def _needs_c():
    from step import native

    if native.load("reduce") is None:
        pytest.skip("no C compiler: the torch twin runs (tested above)")


def _c_and_twin(x: torch.Tensor, steps: int):
    from step import native

    native.select("c")
    try:
        c = reduce_tensor(x, steps)
    finally:
        native.select(None)
    return c, _reduce_cpu(x.contiguous(), steps if x.numel() % steps == 0 else 1)


@pytest.mark.parametrize("kind", ["binary", "ternary", "integer", "real", "zeros"])
def test_c_reduction_equals_the_torch_twin(kind):
    _needs_c()
    x = _tensors()[kind]
    big = (torch.rand(4, 70_000, generator=torch.Generator().manual_seed(1)) < 0.2).float()  # split over threads
    for tensor, steps in ((x, 4), (x, 1), (x.permute(0, 2, 3, 1), 4), (big, 4)):
        c, twin = _c_and_twin(tensor, steps)
        exact = kind != "real" or tensor is big
        for field in ("numel", "nnz", "sum", "abs_sum", "lo", "hi", "integer"):
            a, b = _as_float(getattr(c, field)), _as_float(getattr(twin, field))
            assert a == b if exact else a == pytest.approx(b, rel=1e-6), field
        if kind != "real":
            assert c.ones == twin.ones


def test_c_reduction_of_special_values():
    _needs_c()
    for values, integer in (([1.0, float("inf"), 0.0, 2.0], False), ([0.0, -0.0, 3.0, -2.0], True),
                            ([0.5, 1.0, 0.0, 0.0], False)):
        c, twin = _c_and_twin(torch.tensor(values).view(2, 2), 2)
        assert c.integer is integer and twin.integer is integer
        assert (c.nnz, c.lo, c.hi) == (twin.nnz, twin.lo, twin.hi)
    c, _ = _c_and_twin(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), 2)
    assert not c.integer and c.lo != c.lo and c.hi != c.hi and c.nnz == 3  # NaN: extremes NaN, as aminmax


def test_a_dense_view_with_time_outermost_shares_the_reduction():
    _needs_c()
    cache = ReductionCache()
    k = (torch.rand(4, 2, 6, 8, generator=torch.Generator().manual_seed(2)) < 0.3).float()  # [T, B, N, D]
    first = cache.reduce(k, steps=4)
    kt = k.view(4, 2, 6, 2, 4).transpose(2, 3).transpose(-2, -1)  # heads, then K^T: [T, B, h, d, N]
    assert not kt.is_contiguous()
    assert cache.reduce(kt, steps=4) is first and cache.hits == 1  # no second pass over K
    alone = reduce_tensor(kt.contiguous(), 4)  # the same numbers from a copy in the view's order
    assert (alone.nnz, alone.sum, alone.ones, alone.lo, alone.hi) == (first.nnz, first.sum, first.ones, first.lo, first.hi)


@pytest.mark.parametrize("name,v_reset", [("lif", 0.0), ("if", None)])
def test_neuron_kernel_counts_its_spikes_as_a_reduction_would(name, v_reset):
    from step import native
    from step.energy.reduce import binary_reduction
    from step.neurons import kernels
    from step.registry import NEURONS

    if native.load("lif") is None:
        pytest.skip("no C compiler")
    seen = []
    previous = kernels.set_spike_sink(lambda spikes, steps, total, ones: seen.append((spikes, steps, total, ones)))
    try:
        n = NEURONS.build(name, v_reset=v_reset)
        x = torch.randn(4, 3, 40_000, generator=torch.Generator().manual_seed(3)) * 2
        with torch.inference_mode():
            out = n(x)
    finally:
        kernels.set_spike_sink(previous)
    (spikes, steps, total, ones), = seen
    assert spikes.data_ptr() == out.data_ptr() and steps == 4
    mine, twin = binary_reduction(out.numel(), total, ones), _reduce_cpu(out, 4)
    for field in ("numel", "nnz", "sum", "abs_sum", "lo", "hi", "integer", "ones"):
        assert _as_float(getattr(mine, field)) == _as_float(getattr(twin, field)), field


def test_energy_tables_are_the_same_with_c_kernels_and_torch_twins():
    from step import native
    from step.components import default_neuron_factory
    from step.registry import MODELS

    _needs_c()
    torch.manual_seed(0)
    model = MODELS.build("spikformer", num_classes=4, img_size=16, in_chans=3, depth=1, dim=32, heads=2,
                         neuron=default_neuron_factory(T=2)).eval()
    x = torch.rand(2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2
    tables = {}
    for choice in ("c", "torch"):
        native.select(choice)
        try:
            meter = EnergyMeter(model, T=2)
            with meter, torch.inference_mode():
                model(x)
            tables[choice] = meter.report().table.layers
        finally:
            native.select(None)
    assert len(tables["c"]) == len(tables["torch"]) > 20
    for a, b in zip(tables["c"], tables["torch"]):
        assert (a.name, a.binary, a.ternary, a.integer, a.encoder) == (b.name, b.binary, b.ternary, b.integer, b.encoder)
        for field in ("macs", "sops", "input_rate", "input_mean", "bitserial_acs", "spikes", "output_rate",
                      "nonspike_macs"):
            va, vb = getattr(a, field), getattr(b, field)
            assert (va is None and vb is None) or va == pytest.approx(vb, rel=1e-9, abs=1e-9), (a.name, field)
