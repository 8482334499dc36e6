"""The ``exact`` convention against brute-force loops: random conv geometries and the trained demo.

The reference counts below loop over every output position and every kernel tap and ask torch's
own padding (``F.pad`` of a map of input indices, the padding the conv module itself applies)
which input each tap reads; nothing is shared with :mod:`step.energy.fanout`'s per-dimension split.
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import step  # noqa: F401
from step.energy import EnergyMeter
from step.energy.fanout import geometry_of, taps_per_position
from step.layers import SeqModule

#: torch warns that padding='same' with an even kernel pads a copy of the input: expected here
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TRANSPOSED = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}


def source_map(conv: nn.modules.conv._ConvNd, in_size: tuple[int, ...]) -> torch.Tensor:
    """For every position of the padded input, the flat input index it holds (-1: a zero)."""
    idx = torch.arange(float(torch.tensor(in_size).prod())).view(1, 1, *in_size)
    pads = conv._reversed_padding_repeated_twice
    if conv.padding_mode == "zeros":
        return F.pad(idx, pads, value=-1.0)[0, 0].long()
    return F.pad(idx, pads, mode=conv.padding_mode)[0, 0].long()


def brute_force(conv: nn.modules.conv._ConvNd, x: torch.Tensor) -> dict[str, float]:
    """Exact counts of ``conv`` on ``x`` [N, C, *in] by loops over outputs and taps.

    value: sum |x| over every (input, tap, output channel) synapse inside the output; nonzero: the
    same for non-zero inputs; *_nzw: only synapses with a non-zero weight; dense: every input.
    """
    n = x.dim() - 2
    in_size = tuple(x.shape[2:])
    with torch.no_grad():
        out_size = tuple(conv(x[:1]).shape[2:])
    c_in, groups = conv.in_channels, conv.groups
    reach = conv.out_channels // groups
    w = conv.weight.detach()
    if conv.transposed:  # [C_in, C_out/g, *k]
        nz = (w != 0).sum(1).double()
    else:  # [C_out, C_in/g, *k]: input channel c of group j reaches the group's non-zero weights
        nz = torch.stack([(w[j * reach:(j + 1) * reach, c % (c_in // groups)] != 0).sum(0)
                          for j in range(groups) for c in range(j * (c_in // groups), (j + 1) * (c_in // groups))]).double()
    flat = x.reshape(x.shape[0], c_in, -1).double()
    per_channel = {"value": flat.abs().sum(0), "nonzero": (flat != 0).double().sum(0),
                   "dense": torch.ones_like(flat).sum(0)}  # [C, positions]
    totals = {k: 0.0 for k in ("value", "nonzero", "dense", "value_nzw", "nonzero_nzw")}

    def add(src: int, tap: tuple[int, ...]) -> None:
        for key, m in per_channel.items():
            totals[key] += float(m[:, src].sum()) * reach
            if key != "dense":
                totals[key + "_nzw"] += float((m[:, src] * nz[(slice(None), *tap)]).sum())

    if conv.transposed:
        for i in itertools.product(*map(range, in_size)):
            src = 0
            for d in range(n):
                src = src * in_size[d] + i[d]
            for tap in itertools.product(*map(range, conv.kernel_size)):
                outs = [i[d] * conv.stride[d] - conv.padding[d] + tap[d] * conv.dilation[d] for d in range(n)]
                if all(0 <= outs[d] < out_size[d] for d in range(n)):
                    add(src, tap)
        return totals
    padded = source_map(conv, in_size)
    for o in itertools.product(*map(range, out_size)):
        for tap in itertools.product(*map(range, conv.kernel_size)):
            src = int(padded[tuple(o[d] * conv.stride[d] + tap[d] * conv.dilation[d] for d in range(n))])
            if src >= 0:
                add(src, tap)
    return totals


def random_geometry(seed: int) -> dict:
    """A random conv: 1-D, 2-D (and some 3-D / transposed), odd sizes, strides with padding,
    groups (depthwise too), dilation, padding modes, zero weights, binary to real inputs."""
    r = random.Random(seed)
    n = r.choice([1, 2, 2, 2, 3]) if seed % 9 else 1
    transposed = n < 3 and seed % 11 == 5
    size = tuple(r.choice([3, 5, 7, 9, 11, 6, 8]) for _ in range(n)) if n < 3 else tuple(r.choice([3, 5]) for _ in range(3))
    k = tuple(r.choice([1, 2, 3, 3, 5]) for _ in range(n)) if n < 3 else (3,) * 3
    stride = tuple(r.choice([1, 2, 2, 3]) for _ in range(n))
    dilation = tuple(r.choice([1, 1, 2]) for _ in range(n))
    groups = r.choice([1, 1, 2, "depthwise"])
    c_in = r.choice([2, 4, 6]) if groups != "depthwise" else r.choice([3, 4])
    if groups == "depthwise":
        groups, c_out = c_in, c_in * r.choice([1, 2])
    else:
        c_out = groups * r.choice([1, 3])
    mode = "zeros"
    if not transposed and seed % 7 == 3:
        mode = r.choice(["reflect", "replicate", "circular"])
    padding: object = tuple(r.randint(0, min(dilation[d] * (k[d] - 1), size[d] - 1)) for d in range(n))
    if not transposed and seed % 13 == 4:
        padding, stride = "same", (1,) * n
    kinds = ["binary", "binary", "ternary", "integer", "real"]
    return dict(n=n, transposed=transposed, size=size, kernel=k, stride=stride, dilation=dilation,
                groups=groups, c_in=c_in, c_out=c_out, padding_mode=mode, padding=padding,
                prune=seed % 4 == 1, kind=kinds[seed % len(kinds)], skip=seed % 3 == 0, seed=seed)


def build(geo: dict) -> nn.Module:
    torch.manual_seed(geo["seed"])
    if geo["transposed"]:
        conv = TRANSPOSED[geo["n"]](geo["c_in"], geo["c_out"], geo["kernel"], stride=geo["stride"],
                                    padding=geo["padding"], dilation=geo["dilation"], groups=geo["groups"], bias=False)
    else:
        conv = CONVS[geo["n"]](geo["c_in"], geo["c_out"], geo["kernel"], stride=geo["stride"], padding=geo["padding"],
                               dilation=geo["dilation"], groups=geo["groups"], bias=False, padding_mode=geo["padding_mode"])
    if geo["prune"]:
        with torch.no_grad():
            conv.weight.mul_((torch.rand_like(conv.weight) > 0.4).float())
    return conv


def spikes(kind: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "binary":
        return (torch.rand(shape, generator=g) < 0.3).float()
    if kind == "ternary":
        return torch.randint(-1, 2, shape, generator=g).float() * (torch.rand(shape, generator=g) < 0.5)
    if kind == "integer":
        return torch.randint(0, 4, shape, generator=g).float() * (torch.rand(shape, generator=g) < 0.4)
    return torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < 0.8)


GEOMETRIES = [random_geometry(s) for s in range(64)]


def _valid(geo: dict) -> bool:
    try:
        conv = build(geo)
        with torch.no_grad():
            conv(torch.zeros(1, geo["c_in"], *geo["size"]))
        return True
    except RuntimeError:  # e.g. an output smaller than one position
        return False


VALID = [g for g in GEOMETRIES if _valid(g)]


def test_the_random_geometries_cover_the_awkward_cases():
    assert len(VALID) >= 50
    assert sum(1 for g in VALID if max(g["stride"]) > 1 and g["padding"] != "same" and max(g["padding"]) > 0) >= 10
    assert any(g["groups"] == g["c_in"] > 1 for g in VALID)  # depthwise
    assert any(1 < g["groups"] < g["c_in"] for g in VALID)  # grouped
    assert any(max(g["dilation"]) > 1 for g in VALID)
    assert any(any(s % 2 for s in g["size"]) for g in VALID)  # odd sizes
    assert {1, 2, 3} <= {g["n"] for g in VALID}
    assert any(g["transposed"] for g in VALID) and any(g["padding"] == "same" for g in VALID)
    assert {"reflect", "replicate", "circular"} & {g["padding_mode"] for g in VALID}
    assert {"binary", "ternary", "integer", "real"} == {g["kind"] for g in VALID}
    assert any(g["prune"] and g["skip"] for g in VALID) and any(g["prune"] and not g["skip"] for g in VALID)


@pytest.mark.parametrize("geo", VALID, ids=lambda g: f"s{g['seed']}-{g['n']}d")
def test_exact_and_neurobench_counts_equal_brute_force_loops(geo):
    T, B = 2, 2
    conv = build(geo)
    x = spikes(geo["kind"], (T, B, geo["c_in"], *geo["size"]), geo["seed"])
    model = SeqModule(conv)
    meter = EnergyMeter(model, T=T, skip_zero_weights=geo["skip"])
    with meter, torch.inference_mode():
        model(x)
    row = meter.report().table.layers[0]
    ref = brute_force(conv, x.flatten(0, 1))
    suffix = "_nzw" if geo["skip"] else ""
    if geo["kind"] == "real":
        assert row.encoder and row.exact_ops_executed * B == pytest.approx(ref["nonzero" + suffix], rel=1e-12)
        assert row.exact_ops * B == pytest.approx(ref["nonzero" + suffix] / T, rel=1e-12)  # encoder: once
    else:
        assert row.exact_ops * B == pytest.approx(ref["value" + suffix], rel=1e-12, abs=1e-9)
        assert row.paper_minus_exact * B == pytest.approx(row.sops * B - ref["value"], rel=1e-9, abs=1e-6)
    assert row.exact_nonzero_ops * B == pytest.approx(ref["nonzero" + suffix], rel=1e-12, abs=1e-9)
    if not geo["transposed"]:  # NeuroBench's count: non-zero inputs x non-zero weights, always
        assert row.nb_seen and row.nb_ops * B == pytest.approx(ref["nonzero_nzw"], rel=1e-12, abs=1e-9)
        assert row.nb_dense * B == pytest.approx(ref["dense"], rel=1e-12)
        assert row.nb_spiking == (geo["kind"] in ("binary", "ternary"))
        # the same two numbers the way NeuroBench computes them: a copy of the layer with 0/1 weights
        binary = build(geo)
        with torch.no_grad():
            binary.weight.copy_((conv.weight != 0).float())
            assert float(binary((x.flatten(0, 1) != 0).float()).sum()) == pytest.approx(ref["nonzero_nzw"])
            binary.weight.fill_(1.0)
            assert float(binary(torch.ones_like(x.flatten(0, 1))).sum()) == pytest.approx(ref["dense"])
    else:
        assert not row.nb_seen


def test_fan_out_map_of_a_strided_padded_conv_by_hand():
    # 1-D, k=3, s=2, p=1 on 5 inputs -> 3 outputs reading (-1,0,1), (1,2,3), (3,4,5): taps per input
    conv = nn.Conv1d(1, 1, 3, stride=2, padding=1)
    g = geometry_of(conv, (5,), (3,))
    assert taps_per_position(g).tolist() == [1, 2, 1, 2, 1]
    # the papers' average fan-out: 3 outputs x 3 taps / 5 inputs = 1.8 (padded taps included);
    # the in-bounds total is 7 of the 9 taps
    assert float(taps_per_position(g).sum()) == 7


def test_uniform_layers_need_no_plane_and_stay_exact():
    """A 1x1 conv (the same fan-out everywhere) keeps totals only, and exact equals paper there."""
    conv = nn.Conv2d(4, 8, 1, bias=False)
    model = SeqModule(conv)
    meter = EnergyMeter(model, T=2)
    with meter, torch.inference_mode():
        model(spikes("binary", (2, 3, 4, 5, 5), 0))
    acc = next(iter(meter._accumulators.values()))
    assert all(not t.planes for t in acc.tallies.values())
    row = meter.report().table.layers[0]
    assert row.exact_ops == pytest.approx(row.sops) and row.paper_minus_exact == pytest.approx(0.0)


def test_skip_zero_weights_knob_reaches_the_meter_through_the_runner(monkeypatch):
    """energy.skip_zero_weights=true: the runner's meter discounts zero weights in the exact count."""
    import importlib

    from step.config import compose

    run_module = importlib.import_module("step.engine.run")
    seen = {}
    original = run_module.measure_final

    def pruned(cfg, model, *args, **kw):  # zero every other weight of every conv just before measuring
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.mul_((torch.arange(m.weight.numel()) % 2).view(m.weight.shape).to(m.weight.dtype))
        out = original(cfg, model, *args, **kw)
        seen["record"] = out[1]
        return out

    monkeypatch.setattr(run_module, "measure_final", pruned)
    record = run_module.run(compose([
        "model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.epochs=1", "trainer.max_batches=1",
        "trainer.batch_size=16", "trainer.progress=false", "dataset.test_fraction=0.05", "logger=none",
        "energy.skip_zero_weights=true"]))
    block = seen["record"]
    assert block["by_convention"]["exact"]["skip_zero_weights"] is True
    encoder = next(r for r in block["per_layer"] if r["encoder"])
    assert encoder["zero_weights"] == encoder["params"] // 2
    # non-zero pixels x in-bounds synapses with a non-zero weight: NeuroBench's count of the same layer;
    # counting every weight would give about twice as many
    assert encoder["exact_ops_executed"] == pytest.approx(encoder["nb_ops"], rel=1e-12)
    assert encoder["exact_nonzero_ops"] < 0.6 * encoder["nb_dense"]
    assert record["energy_columns"]["energy_exact_mj"] == pytest.approx(
        block["by_convention"]["exact"]["energy_mj"][block["model"]])
    assert record["leaderboard_row"]["energy_exact_mj"] == record["energy_columns"]["energy_exact_mj"]
    for name in ("paper", "exact", "neurobench"):
        assert block["by_convention"][name]["statement"] and block["by_convention"][name]["source"]
    assert block["by_convention"]["paper"]["energy_mj"][block["model"]] == pytest.approx(
        record["energy_columns"]["energy_mj"])


@pytest.fixture(scope="module")
def demo_conv_inputs(trained_demo):
    """The meter's table of the trained demo on 64 test images, and every conv layer's real inputs."""
    d = trained_demo
    model, T = d.model, d.T
    inputs: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            handles.append(m.register_forward_hook(
                lambda mod, args, out, name=name: inputs.setdefault(name, []).append(args[0].detach().clone())))
    meter = EnergyMeter(model, T=T)
    try:
        with meter, torch.inference_mode():
            for batch in d.images[:64].split(32):
                model(d.encoder(batch))
    finally:
        for h in handles:
            h.remove()
    return meter.report().table, inputs, dict(model.named_modules())


@pytest.mark.slow
def test_exact_equals_brute_force_on_every_conv_layer_of_the_trained_demo(demo_conv_inputs):
    table, inputs, modules = demo_conv_inputs
    rows = {r.name: r for r in table.layers}
    assert len(inputs) >= 4  # the patch splitting's convs and the relative position embedding
    n = table.n_samples
    paper = exact = 0.0
    for name, xs in inputs.items():
        conv, row = modules[name], rows[name]
        ref = {k: sum(brute_force(conv, x)[k] for x in xs) for k in ("value", "nonzero", "dense", "nonzero_nzw")}
        if row.encoder:
            assert row.exact_ops_executed * n == pytest.approx(ref["nonzero"], rel=1e-12)
        else:
            assert row.integer and row.exact_ops * n == pytest.approx(ref["value"], rel=1e-12), name
            paper, exact = paper + row.sops, exact + row.exact_ops
        assert row.nb_ops * n == pytest.approx(ref["nonzero_nzw"], rel=1e-12), name
        assert row.nb_dense * n == pytest.approx(ref["dense"], rel=1e-12), name
    assert paper > exact > 0.5 * paper  # 3x3 convs with padding on small maps: spikes on the border reach less


@pytest.mark.slow
def test_the_trained_demo_records_paper_minus_exact_as_the_whole_difference(trained_demo):
    record = trained_demo.record
    block = record["energy"]["by_convention"]
    # every exact row is at most its paper row (only padded taps differ for spike inputs) ...
    for r in record["energy"]["per_layer"]:
        if r["kind"] in ("conv", "linear") and not r["encoder"] and (r["binary"] or r["integer"]):
            assert r["exact_ops"] <= r["sops"] * (1 + 1e-12)
    # ... and the padded taps are the whole difference of the spike-driven part
    assert block["paper"]["sops"] - block["exact"]["sops"] == pytest.approx(block["exact"]["paper_minus_exact"], rel=1e-9)
    assert block["neurobench"]["not_seen"] == [r["name"] for r in record["energy"]["per_layer"] if r["kind"] == "matmul"]


def test_an_unfused_repconv_is_one_fused_3x3_conv_under_exact():
    """Meta-SpikeFormer's RepConv chain (1x1 -> BN -> pad BN(0) -> dw 3x3 -> 1x1 -> BN) folds into one
    3x3 conv: ``exact`` charges the chain as that conv (the same numbers as the reparameterized
    model, under every energy model), ``paper`` keeps the chain's layers as executed."""
    from step.energy import EnergyReport
    from step.layers.repconv import RepConv
    from step.registry import ENERGY_MODELS

    torch.manual_seed(0)
    rep = RepConv(6, 8)
    for bn in (rep.bn1, rep.bn2):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    rep.eval()
    x = spikes("binary", (2, 3, 6, 5, 7), 1)
    tables = {}
    for fused in (False, True):
        model = SeqModule(rep.fused_conv()) if fused else SeqModule(rep)
        meter = EnergyMeter(model.eval(), T=2)
        with meter, torch.inference_mode():
            model(x)
        tables[fused] = meter.report().table
    chain, folded = tables[False], tables[True]
    row = next(r for r in chain.layers if r.type == "RepConv(fused)")
    one = next(r for r in folded.layers if r.kind == "conv")
    assert row.exact_ops == pytest.approx(one.exact_ops, rel=1e-12) and row.exact_ops > 0
    assert row.sops == row.macs == row.params == 0  # nothing added to the paper counts
    inner = [r for r in chain.layers if r.exact_in == "0"]
    assert {r.name for r in inner} == {"0.conv1", "0.dw", "0.pw"} and all(r.exact_ops == 0 for r in inner)
    assert chain.totals()["macs"] == pytest.approx(sum(r.macs for r in inner))
    for name in ENERGY_MODELS.names():
        a = ENERGY_MODELS.build(name, ops=chain.under("exact"))["snn_pj"]
        b = ENERGY_MODELS.build(name, ops=folded.under("exact"))["snn_pj"]
        assert a == pytest.approx(b, rel=1e-9), name
    assert EnergyReport(chain).to_record()["by_convention"]["neurobench"]["not_seen"] == []  # NeuroBench sees the chain
