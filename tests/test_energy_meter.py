"""The counting hooks against hand counts, published MAC totals and the real Spikformer."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import step  # noqa: F401
from step.energy import EnergyMeter
from step.energy.reduce import ones_in_counts, popcount
from step.errors import StepError
from step.layers import SeqModule, SpikeMatMul
from step.neurons.base import SpikingNeuron
from step.registry import MODELS, NEURONS


def _if_neuron() -> nn.Module:
    return NEURONS.build("if", v_threshold=1.0, v_reset=0.0, T=2)


class ThreeLayerNet(nn.Module):
    """Linear(4,3) -> IF -> Linear(3,2) -> IF -> Linear(2,1, bias) with fixed weights."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3, bias=False)
        self.sn1 = _if_neuron()
        self.fc2 = nn.Linear(3, 2, bias=False)
        self.sn2 = _if_neuron()
        self.fc3 = nn.Linear(2, 1, bias=True)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]]))
            self.fc2.weight.copy_(torch.tensor([[1.2, 1.0, 0], [0, 0, 0.6]]))
            self.fc3.weight.fill_(1.0)
            self.fc3.bias.fill_(0.0)

    def forward(self, x):
        return self.fc3(self.sn2(self.fc2(self.sn1(self.fc1(x)))))


def test_three_layer_net_hand_count():
    # currents of sn1 are [1.5, 0.6, 2.0] at both steps -> spikes [1,0,1] then [1,1,1] (5 of 6)
    # currents of sn2: [1.2, 0.6] then [2.2, 0.6] -> spikes [1,0] then [1,1] (3 of 4)
    net = ThreeLayerNet()
    x = torch.tensor([1.5, 0.6, 0.0, 2.0]).expand(2, 1, 4).contiguous()  # T=2, B=1
    meter = EnergyMeter(net, T=2)
    with meter, torch.inference_mode():
        net(x)
    rows = {r["name"]: r for r in meter.report().per_layer}
    assert [r for r in rows] == ["fc1", "sn1", "fc2", "sn2", "fc3"]
    assert rows["fc1"]["encoder"] and not rows["fc1"]["binary"]
    assert rows["fc1"]["nonspike_macs"] == 12  # 4 x 3, once per inference
    assert rows["sn1"]["output_rate"] == pytest.approx(5 / 6)
    assert rows["fc2"]["binary"] and rows["fc2"]["input_rate"] == pytest.approx(5 / 6)
    assert rows["fc2"]["sops"] == pytest.approx(10.0)  # 5 input spikes x fan-out 2
    assert rows["sn2"]["output_rate"] == pytest.approx(0.75)
    assert rows["fc3"]["sops"] == pytest.approx(3.0) and rows["fc3"]["bias_adds"] == 2
    totals = meter.report().totals
    assert totals["sops"] == pytest.approx(13.0)
    assert totals["neuron_updates"] == 10 and totals["spikes"] == 8
    assert totals["mean_firing_rate"] == pytest.approx(0.8)
    assert meter.report().energy("simple45")["snn_pj"] == pytest.approx(0.9 * 13 + 4.6 * 12 + 0.9 * 2)


class MatMulNet(nn.Module):
    def __init__(self, mode: str = "matmul", scale_b: float = 1.0):
        super().__init__()
        self.mm = SpikeMatMul(mode)
        self.scale_b = scale_b

    def forward(self, x):
        a, b = x[..., :3], x[..., 3:]
        return self.mm(a, b.transpose(-2, -1) * self.scale_b if self.mm.mode == "matmul" else b * self.scale_b)


def _matmul_input() -> torch.Tensor:
    a = torch.tensor([[[1.0, 0, 1], [0, 1, 1]], [[1.0, 1, 1], [0, 0, 0]]])  # [T=2, m=2, k=3]
    bt = torch.tensor([[[1.0, 0, 1], [1, 1, 0]], [[1.0, 1, 0], [0, 0, 0]]])  # b^T: b is [k=3, n=2]
    return torch.cat([a, bt], -1).unsqueeze(1)  # [T, B=1, 2, 6]


def test_spike_matmul_binary_binary_exact():
    # t0: [[1,0,1],[0,1,1]] @ [[1,1],[0,1],[1,0]] = [[2,1],[1,1]] (5 ANDs); t1: [[2,0],[0,0]] (2)
    net = MatMulNet()
    meter = EnergyMeter(net, T=2)
    with meter, torch.inference_mode():
        net(_matmul_input())
    row = meter.report().table.layers[0]
    assert row.binary and row.binary_b and row.macs == 2 * 3 * 2
    assert row.sops == pytest.approx(7.0)


def test_spike_matmul_binary_times_real_uses_the_binary_rate():
    net = MatMulNet(scale_b=0.5)
    meter = EnergyMeter(net, T=2)
    with meter, torch.inference_mode():
        net(_matmul_input())
    row = meter.report().table.layers[0]
    assert row.binary and not row.binary_b
    assert row.input_rate == pytest.approx(7 / 12)
    assert row.sops == pytest.approx(7 / 12 * 12 * 2)  # rate x m k n x T = 7 spikes x n=2


def test_spike_matmul_hadamard_counts_and_operations():
    net = MatMulNet(mode="hadamard")
    meter = EnergyMeter(net, T=2)
    with meter, torch.inference_mode():
        net(_matmul_input())
    row = meter.report().table.layers[0]
    assert row.macs == 6  # one product per element per step
    # a * b elementwise: t0 [[1,0,1],[0,1,0]] -> 3 ones; t1 [[1,1,0],[0,0,0]] -> 2 ones
    assert row.sops == pytest.approx(5.0)


def test_integer_spikes_are_value_weighted():
    T, B = 2, 1
    conv = nn.Conv2d(1, 2, 1, bias=False)
    model = SeqModule(conv)
    x = torch.tensor([0.0, 1.0, 2.0, 0.0]).view(1, 1, 1, 2, 2).expand(T, B, 1, 2, 2).contiguous()
    meter = EnergyMeter(model, T=T)
    with meter, torch.inference_mode():
        model(x)
    row = meter.report().table.layers[0]
    assert row.integer and not row.binary and not row.encoder
    assert row.input_rate == pytest.approx(0.5) and row.input_mean == pytest.approx(0.75)
    assert row.sops == pytest.approx(2 * 3 * 2)  # T x (1 + 2 spikes) x fan-out 2
    # spike counts over T are 0, 2, 4, 0 -> 1-bits 0, 1, 1, 0; twin bits ceil(log2(2*2+1)) = 3
    assert row.bitserial_acs == pytest.approx(2 * 2) and row.twin_bits == 3


def test_popcount():
    values = torch.tensor([0, 1, 2, 3, 4, 7, 8, 255, 1023, 2**31 - 1])
    assert popcount(values).tolist() == [bin(int(v)).count("1") for v in values]
    counts = torch.tensor([0.0, 1, 2, 3, 4, 7, 255, 3])
    assert ones_in_counts(counts).item() == 0 + 1 + 1 + 2 + 1 + 3 + 8 + 2


def test_spikingformer_mac_decomposition():
    """Spikingformer-8-512's MAC log: T x (3*64*9*224*224) + (512*1000 + 1000) = 347,329,512."""

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = SeqModule(nn.Conv2d(3, 64, 3, 1, 1, bias=False))
            self.head = nn.Linear(512, 1000)

        def forward(self, x):
            feat = self.conv(x).mean((0, 3, 4))  # real-valued [B, 64]
            return self.head(feat.repeat(1, 8))

    model = Tiny()
    meter = EnergyMeter(model, T=4, encoder_per_step=True)
    with meter, torch.inference_mode():
        model(torch.rand(1, 1, 3, 224, 224).expand(4, 1, 3, 224, 224))
    totals = meter.report().totals
    assert totals["encoder_macs"] == 86_704_128
    assert totals["nonspike_macs"] + totals["bias_adds"] == 347_329_512
    assert totals["nonspike_macs_encoder_once"] == 86_704_128 + 512_000


def test_resnet18_macs_match_published_1_82_g():
    from torchvision.models import resnet18

    model = resnet18(weights=None).eval()
    meter = EnergyMeter(model, T=1, time_major=False)
    with meter, torch.inference_mode():
        model(torch.rand(1, 3, 224, 224))
    totals = meter.report().totals
    assert totals["macs"] == pytest.approx(1.82e9, rel=0.01)
    assert totals["sops"] == 0  # ReLU activations are not spikes (non-binary inputs)


@pytest.fixture(scope="module")
def spikformer_report():
    torch.manual_seed(0)
    model = MODELS.build("spikformer", num_classes=10, img_size=16, in_chans=1, depth=1, dim=32, heads=2)
    meter = EnergyMeter(model, T=2)
    with meter, torch.no_grad():  # train-mode BN so that the untrained model spikes
        for _ in range(2):
            model(torch.rand(1, 3, 1, 16, 16).expand(2, 3, 1, 16, 16) * 4)
    return model, meter.report()


def test_spikformer_every_counted_module_has_a_row(spikformer_report):
    model, report = spikformer_report
    names = {r["name"] for r in report.per_layer}
    for name, module in model.named_modules():
        counted = isinstance(module, (nn.Conv2d, nn.Linear, SpikeMatMul, SpikingNeuron))
        if counted:
            assert name in names, name
    assert report.totals["n_samples"] == 6


def test_spikformer_binary_structure(spikformer_report):
    _, report = spikformer_report
    rows = [r for r in report.per_layer if r["kind"] in ("conv", "linear", "matmul")]
    by_name = {r["name"]: r for r in rows}
    assert rows[0]["name"] == "patch_embed.stages.0.conv.0" and rows[0]["encoder"] and not rows[0]["binary"]
    for r in rows[1:]:
        assert not r["encoder"]
    for i in (1, 2, 3):  # SPS convs after a neuron (and max-pool) see binary spikes
        assert by_name[f"patch_embed.stages.{i}.conv.0"]["binary"]
    # block inputs carry the RPE's spike-add shortcut: integer spikes {0, 1, 2}
    assert by_name["blocks.0.attn.q.linear"]["integer"]
    assert by_name["blocks.0.mlp.fc2.linear"]["binary"]
    assert by_name["blocks.0.attn.qk"]["binary"] and by_name["blocks.0.attn.qk"]["binary_b"]
    assert by_name["blocks.0.attn.av"]["binary_b"] and not by_name["blocks.0.attn.av"]["binary"]
    assert not by_name["head"]["binary"] and by_name["head"]["nonspike_macs"] == 32 * 10


def test_spikformer_totals_are_sums_of_layers(spikformer_report):
    _, report = spikformer_report
    rows, totals = report.per_layer, report.totals
    syn = [r for r in rows if r["kind"] in ("conv", "linear", "matmul")]
    for key in ("macs", "sops", "nonspike_macs", "bias_adds"):
        assert totals[key] == pytest.approx(sum(r[key] for r in syn))
    neurons = [r for r in rows if r["kind"] == "neuron"]
    assert totals["neuron_updates"] == pytest.approx(sum(r["neuron_updates"] for r in neurons))
    assert totals["sops"] > 0 and 0 < totals["mean_firing_rate"] < 1
    e = report.energy("simple45")
    assert e["snn_pj"] == pytest.approx(sum(r["energy_pj"] for r in rows))


def test_record_and_columns_are_json_and_consistent(spikformer_report):
    _, report = spikformer_report
    cfg = {"name": "simple45", "enabled": True, "encoder_per_step": False, "precision": "fp32",
           "e_mac": None, "e_ac": None, "e_bit": 3.12, "weight_bits": 32, "membrane_bits": 32,
           "weight_reuse": False, "fifo_words": 1000, "charge_bias": True}
    record = json.loads(json.dumps(report.to_record(cfg)))
    assert set(record["energy"]) == {"simple45", "memory", "lemaire"}
    assert record["version"] and record["constants"]["e_mac"] == 4.6
    cols = report.columns(cfg)
    assert cols["energy_mj"] == pytest.approx(record["energy"]["simple45"]["snn_mj"])
    assert cols["energy_mem_mj"] == pytest.approx(record["energy"]["memory"]["snn_mj"])
    assert cols["energy_ann_mj"] == pytest.approx(record["energy"]["simple45"]["ann_mj"])
    assert cols["sops"] == record["totals"]["sops"]
    assert cols["energy_mem_mj"] > cols["energy_mj"]  # memory terms only add


def test_meter_errors_and_hook_removal():
    net = ThreeLayerNet()
    meter = EnergyMeter(net, T=2)
    with pytest.raises(StepError, match="no forward"):
        meter.report()
    with meter, torch.inference_mode():
        with pytest.raises(StepError, match="T=2"):
            net(torch.rand(3, 1, 4))
    with torch.inference_mode():
        net(torch.rand(2, 1, 4))  # outside the block: not counted
    assert meter.n_samples == 0
    assert not any(m._forward_hooks for m in net.modules())
