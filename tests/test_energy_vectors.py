"""Energy test vectors of shared/reference/energy.md section 4, measured through the hooks.

Inputs are built with an exact firing rate, so the counted SOPs and every energy figure must equal
the reference's hand arithmetic (relative tolerance 1e-9).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import step  # noqa: F401  (registers the energy models)
from step.energy import EnergyMeter, LayerOps, OpTable
from step.layers import SeqModule
from step.registry import ENERGY_MODELS

REL = 1e-9


def exact_rate_spikes(shape: tuple[int, ...], rate: float, seed: int) -> torch.Tensor:
    """A {0,1} tensor with exactly round(rate x numel) ones at random places."""
    numel = 1
    for s in shape:
        numel *= s
    ones = round(rate * numel)
    assert abs(ones - rate * numel) < 1e-6, "choose shapes where rate x numel is an integer"
    flat = torch.zeros(numel)
    flat[torch.randperm(numel, generator=torch.Generator().manual_seed(seed))[:ones]] = 1.0
    return flat.view(shape)


class FixedSpikes(nn.Module):
    """A stand-in spiking neuron that emits a given spike train (to fix the output rate)."""

    is_spiking_neuron = True
    leaky = True

    def __init__(self, spikes: torch.Tensor):
        super().__init__()
        self.register_buffer("spikes", spikes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spikes.view_as(x)


@pytest.fixture(scope="module")
def conv_vector():
    """Example 4.1-A: conv 3x3 64->64, 32x32, r_in 0.2, r_out 0.1, T=4 (5 samples for exact rates)."""
    T, B = 4, 5
    conv = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
    spikes_out = exact_rate_spikes((T, B, 64, 32, 32), 0.1, seed=1)
    model = nn.Sequential(SeqModule(conv), FixedSpikes(spikes_out))
    meter = EnergyMeter(model, T=T)
    with meter, torch.inference_mode():
        model(exact_rate_spikes((T, B, 64, 32, 32), 0.2, seed=0))
    return meter.report()


def test_conv_counts_match_example_a(conv_vector):
    conv = conv_vector.table.layers[0]
    assert conv.macs == 3 * 3 * 64 * 64 * 32 * 32 == 37_748_736
    assert conv.binary and conv.input_rate == pytest.approx(0.2, rel=REL)
    assert conv.sops == pytest.approx(30_198_988.8, rel=REL)
    assert conv.nonspike_macs == 0 and not conv.encoder
    neuron = conv_vector.table.layers[1]
    assert neuron.neuron_updates == 4 * 64 * 32 * 32
    assert neuron.output_rate == pytest.approx(0.1, rel=REL)


def test_conv_simple45_snn_and_ann_twin(conv_vector):
    e = conv_vector.energy("simple45")
    assert e["snn_pj"] == pytest.approx(27_179_089.92, rel=REL)
    assert e["ann_pj"] == pytest.approx(173_644_185.6, rel=REL)
    assert e["ann_pj"] / e["snn_pj"] == pytest.approx(6.3889, rel=1e-4)


def test_conv_memory_model_step_style(conv_vector):
    e = conv_vector.energy("memory")
    assert e["snn_terms_pj"]["weights"] == pytest.approx(3_015_067_041.8, rel=1e-9)
    assert e["snn_terms_pj"]["membrane"] == pytest.approx(52_344_913.9, rel=1e-8)
    assert e["snn_pj"] == pytest.approx(3_094_591_045.6, rel=1e-9)
    assert e["ann_pj"] == pytest.approx(3_942_477_987.8, rel=1e-9)
    assert e["ann_pj"] / e["snn_pj"] == pytest.approx(1.274, abs=5e-4)
    # with perfect reuse each of the 36,864 weights is read once per timestep
    assert e["weights_pj_by_reuse"]["snn"]["reuse"] == pytest.approx(3.12 * 32 * 36_864 * 4, rel=REL)


def test_conv_lemaire_model(conv_vector):
    e = conv_vector.energy("lemaire")
    snn, ann = e["snn_terms_pj"], e["ann_terms_pj"]
    assert snn["ops"] == pytest.approx(3_887_595.5, rel=1e-7)
    assert snn["addressing"] == pytest.approx(382_730.2, rel=1e-6)
    assert snn["weights"] == pytest.approx(786_930_178.6, rel=1e-9)
    assert snn["potentials"] == pytest.approx(2_196_793_343.4, rel=1e-9)
    assert snn["io"] == pytest.approx(1_065_521.0, rel=1e-6)
    assert e["snn_pj"] == pytest.approx(2_989_059_368.8, rel=1e-9)
    assert ann["ops"] == pytest.approx(120_802_508.8, rel=1e-9)
    assert ann["weights"] == pytest.approx(983_662_723.3, rel=1e-9)
    assert ann["inputs"] == pytest.approx(1_361_180_040.7, rel=1e-9)
    assert ann["outputs"] == pytest.approx(2_363_159.8, rel=1e-7)
    assert ann["addressing"] == pytest.approx(13_164.8, rel=1e-9)
    assert e["ann_pj"] == pytest.approx(2_468_021_597.4, rel=1e-9)


def test_encoder_once_and_per_step():
    """Example 4.1-A as the encoder (real input): 173,644,185.6 pJ once, 694,576,742.4 per step."""
    T, B = 4, 1
    model = SeqModule(nn.Conv2d(64, 64, 3, 1, 1, bias=False))
    meter = EnergyMeter(model, T=T)
    with meter, torch.inference_mode():
        model(torch.rand(1, B, 64, 32, 32).expand(T, B, 64, 32, 32) + 0.1)
    report = meter.report()
    row = report.table.layers[0]
    assert row.encoder and not row.binary
    assert report.energy("simple45")["snn_pj"] == pytest.approx(173_644_185.6, rel=REL)
    per_step = report.energy("simple45", table=report.table.with_encoder_per_step(True))
    assert per_step["snn_pj"] == pytest.approx(694_576_742.4, rel=REL)
    record = report.to_record({"name": "simple45", "enabled": True, "encoder_per_step": False})
    conv = record["encoder_conventions"]
    assert conv["encoder_once"]["energy_mj"]["simple45"] == pytest.approx(0.1736441856, rel=REL)
    assert conv["encoder_per_step"]["energy_mj"]["simple45"] == pytest.approx(0.6945767424, rel=REL)


def test_depthwise_example_b():
    T, B = 4, 5
    model = SeqModule(nn.Conv2d(64, 64, 3, 1, 1, groups=64, bias=False))
    meter = EnergyMeter(model, T=T)
    with meter, torch.inference_mode():
        model(exact_rate_spikes((T, B, 64, 32, 32), 0.2, seed=2))
    report = meter.report()
    assert report.table.layers[0].macs == 589_824
    assert report.energy("simple45")["snn_pj"] == pytest.approx(424_673.28, rel=REL)


def test_conv_bias_counted_apart():
    """With bias: syops' FL is 37,748,736 + 64*32*32; we keep the 65,536 adds per step apart."""
    model = SeqModule(nn.Conv2d(64, 64, 3, 1, 1, bias=True))
    meter = EnergyMeter(model, T=1)
    with meter, torch.inference_mode():
        model(exact_rate_spikes((1, 1, 64, 32, 32), 0.25, seed=3))
    row = meter.report().table.layers[0]
    assert row.macs == 37_748_736 and row.bias_adds == 64 * 32 * 32
    assert row.macs + row.bias_adds == 37_814_272


def test_linear_example_c_from_op_table():
    """Example 4.1-C: Linear 512->2048 on 196 tokens, r 0.15, T 4 (energy arithmetic only)."""
    fl = 196 * 512 * 2048
    assert fl == 205_520_896
    row = LayerOps(name="fc", type="Linear", kind="linear", steps=4, macs=fl, macs_executed=4 * fl,
                   binary=True, input_rate=0.15, sops=0.15 * 4 * fl, params=512 * 2048, n_in=196 * 512,
                   n_out=196 * 2048)
    table = OpTable(T=4, n_samples=1, layers=[row])
    e = ENERGY_MODELS.build("simple45", ops=table)
    assert e["snn_pj"] == pytest.approx(110_981_283.84, rel=REL)
    assert e["ann_pj"] == pytest.approx(945_396_121.6, rel=REL)


def test_syops_resnet18_figures_from_counts():
    """syops README: E[mJ] = 0.9 AC[G] + 4.6 MAC[G] (resnet18 8.372 mJ, spiking_resnet18 0.734 mJ)."""
    def table(acs: float, macs: float) -> OpTable:
        rows = [LayerOps(name="ann", type="Conv2d", kind="conv", macs=macs, macs_executed=macs,
                         nonspike_macs=macs, nonspike_macs_once=macs, nonspike_macs_per_step=macs)]
        if acs:
            rows.append(LayerOps(name="snn", type="Conv2d", kind="conv", macs=acs, macs_executed=acs,
                                 binary=True, sops=acs))
        return OpTable(T=1, n_samples=1, layers=rows)

    mj = lambda t: ENERGY_MODELS.build("simple45", ops=t)["snn_pj"] / 1e9  # noqa: E731
    assert mj(table(0.0, 1.82e9)) == pytest.approx(8.372, rel=REL)
    assert mj(table(0.10e9, 0.14e9)) == pytest.approx(0.734, rel=REL)
    assert mj(table(0.50e9, 2.75e9)) == pytest.approx(13.10, rel=REL)


def test_bitserial_twin_example_4_3():
    """B = ceil(log2(T+1)) = 3 at T = 4; bit density 0.2 gives 22,649,241.6 ACs (x 0.9 pJ = 20,384,317.44)."""
    T, B = 4, 5
    # 60 % of positions spike exactly once over the 4 steps: count 1 = one 1-bit of three
    once = exact_rate_spikes((B, 64, 32, 32), 0.6, seed=4)
    step_of_spike = torch.randint(0, T, once.shape, generator=torch.Generator().manual_seed(5))
    x = torch.stack([once * (step_of_spike == t) for t in range(T)])
    model = SeqModule(nn.Conv2d(64, 64, 3, 1, 1, bias=False))
    meter = EnergyMeter(model, T=T)
    with meter, torch.inference_mode():
        model(x)
    row = meter.report().table.layers[0]
    assert row.twin_bits == 3
    assert row.bit_density == pytest.approx(0.2, rel=REL)
    assert row.bitserial_acs == pytest.approx(22_649_241.6, rel=REL)
    assert 0.9 * row.bitserial_acs == pytest.approx(20_384_317.44, rel=REL)
    e = ENERGY_MODELS.build("simple45", ops=meter.report().table)
    assert e["int8_pj"] == pytest.approx(0.03 * 22_649_241.6, rel=REL)
    assert e["int8_dense_pj"] == pytest.approx(0.23 * 37_748_736, rel=REL)


def test_precision_presets_and_bad_precision():
    row = LayerOps(name="fc", type="Linear", kind="linear", steps=1, macs=100.0, macs_executed=100.0,
                   binary=True, sops=10.0)
    table = OpTable(T=1, n_samples=1, layers=[row])
    assert ENERGY_MODELS.build("simple45", ops=table, precision="fp16")["snn_pj"] == pytest.approx(4.0)
    assert ENERGY_MODELS.build("simple45", ops=table, precision="int8")["ann_pj"] == pytest.approx(23.0)
    from step.errors import ConfigError

    with pytest.raises(ConfigError, match="fp32"):
        ENERGY_MODELS.build("simple45", ops=table, precision="fp64")
