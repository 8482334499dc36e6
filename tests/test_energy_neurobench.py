"""The ``neurobench`` block against the NeuroBench package itself (2.3.0), on a hand case and the demo.

NeuroBench is an optional extra (``pip install 'step-bench[neurobench]'``; it needs snnTorch): without
it these tests skip. Every quantity NeuroBench defines the way we count it must be equal; the ones it
defines otherwise (step.energy.conventions.NEUROBENCH_DIFFERENCES) are checked to differ as stated.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("neurobench", reason="neurobench is not installed: pip install 'step-bench[neurobench]' "
                                         "(NeuroBench 2.3.0 and snnTorch) to compare with the package")

import step  # noqa: F401,E402
from step.energy import EnergyMeter  # noqa: E402
from step.energy.conventions import NEUROBENCH_DIFFERENCES  # noqa: E402
from step.energy.neurobench_check import compare, main  # noqa: E402
from step.layers import SeqModule, SpikeMatMul  # noqa: E402
from step.registry import ENCODERS, NEURONS  # noqa: E402


def assert_same(ours: dict, theirs: dict) -> None:
    ops = theirs["SynapticOperations"]
    assert ours["effective_acs"] == pytest.approx(ops["Effective_ACs"], rel=1e-12)
    assert ours["effective_macs"] == pytest.approx(ops["Effective_MACs"], rel=1e-12)
    assert ours["dense"] == pytest.approx(ops["Dense"], rel=1e-12)
    assert ours["activation_sparsity"] == pytest.approx(theirs["ActivationSparsity"], rel=1e-9)
    assert round(ours["connection_sparsity"], 4) == theirs["ConnectionSparsity"]  # the package rounds
    assert ours["footprint_bytes"] == theirs["Footprint"]
    assert ours["parameter_count"] == theirs["ParameterCount"]
    # defined otherwise (NEUROBENCH_DIFFERENCES): the package reads membranes of snnTorch neurons only
    assert theirs["MembraneUpdates"] == 0 and ours["membrane_updates"] > 0
    assert set(ours["differs_by_design"]) == set(NEUROBENCH_DIFFERENCES)


class HandNet(nn.Module):
    """A strided padded conv on real pixels (MACs), LIF, a grouped conv with pruned weights on
    spikes (ACs), LIF, a weighted spike sum (integers 0..3: MACs for NeuroBench), a linear layer on
    the ternary difference of two spike maps (ACs) and a spike product NeuroBench does not see."""

    def __init__(self, T: int):
        super().__init__()
        self.conv1 = SeqModule(nn.Conv2d(2, 4, 3, stride=2, padding=1))
        self.sn1 = NEURONS.build("lif", T=T, v_threshold=0.5)
        self.conv2 = SeqModule(nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False))
        self.sn2 = NEURONS.build("lif", T=T, v_threshold=0.5)
        self.fc_int = nn.Linear(4 * 4 * 4, 6)
        self.fc_ter = nn.Linear(4 * 4 * 4, 6, bias=False)
        self.mm = SpikeMatMul("hadamard")
        with torch.no_grad():
            self.conv2[0].weight.abs_().mul_(3.0)  # excitatory enough for sn2 to fire
            self.conv2[0].weight[:, :, 0, :] = 0.0  # a third of the synapses gone
            self.fc_ter.weight[::2] = 0.0

    def forward(self, x):
        s1 = self.sn1(self.conv1(x))
        s2 = self.sn2(self.conv2(s1))
        both = (2 * s1 + s2).flatten(2)  # [T, B, 64] integers 0..3
        diff = (s1 - s2).flatten(2)  # {-1, 0, 1}
        y = self.fc_int(both) + self.fc_ter(diff)
        return self.mm(y, y).mean(0)


def test_hand_case_equals_the_package():
    T = 3
    torch.manual_seed(0)
    net = HandNet(T)
    images = torch.rand(24, 2, 8, 8) * 2
    images[:, :, ::3] = 0.0  # some zero pixels: NeuroBench's effective MACs skip them
    encoder = ENCODERS.build("direct", T=T)
    ours, theirs = compare(net, encoder, images, torch.zeros(24, dtype=torch.long), T, batch_size=8)
    assert ours["effective_acs"] > 0 and ours["effective_macs"] > 0
    assert_same(ours, theirs)
    assert ours["not_seen"] == ["mm"]
    # the hand counts of one layer: fc_ter reaches 3 of its 6 outputs per non-zero ternary input
    meter = EnergyMeter(net, T=T)
    with meter, torch.inference_mode():
        net(encoder(images))
    rows = {r.name: r for r in meter.report().table.layers}
    assert rows["sn1"].spikes > 0 and rows["sn2"].spikes > 0
    assert rows["fc_ter"].nb_spiking and rows["fc_ter"].ternary and not rows["fc_int"].nb_spiking
    assert rows["fc_ter"].nb_ops == pytest.approx(rows["fc_ter"].input_rate * rows["fc_ter"].n_in * T * 3, rel=1e-12)


@pytest.mark.slow
def test_trained_demo_equals_the_package(trained_demo):
    d = trained_demo
    images, labels = d.images[:96], d.labels[:96]
    ours, theirs = compare(d.model, d.encoder, images, labels, d.T, batch_size=32)
    assert_same(ours, theirs)
    assert ours["effective_acs"] > 0 and 0 < ours["activation_sparsity"] < 1
    assert ours["not_seen"] == ["blocks.0.attn.qk", "blocks.0.attn.av"]


@pytest.mark.slow
def test_the_comparison_script_prints_both_sides(trained_demo, capsys):
    assert main([trained_demo.record["checkpoint"], "--samples", "32"]) == 0
    out = capsys.readouterr().out
    assert "NeuroBench 2.3.0" in out and "effective_acs" in out and "membrane_updates" in out
