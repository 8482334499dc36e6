"""The attention/host contract and the spike-driven audit (docs/ablations.md).

Every registered attention is built in every host model at tiny size and run under the energy
meter with neurons made to fire; the audit must then find every weight layer reading spikes
(softmax attention excepted: its Q, K, V are real by design), and a membrane-emitting attention in
a spike-add host must carry the closing neuron the rule gives it. A negative control removes the
rule and shows the audit catching the membrane on the spike stream.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch
from torch import nn

from step.attention import AttentionFactory
from step.config import compose
from step.energy import EnergyMeter
from step.energy.audit import REASONS, audit, audit_model, chain_members
from step.engine import run
from step.engine.report import format_summary
from step.errors import ConfigError
from step.layers.shortcut import EMITS, Residual, branch_emits, closing_neuron
from step.models.sdt import SDTBlock
from step.neurons import SpikingNeuron
from step.neurons.factory import NeuronFactory
from step.registry import ATTENTIONS, MODELS

IF = NeuronFactory("if", T=2, v_threshold=1.0, surrogate="atan", alpha=2.0)

# host name -> (model name, keyword arguments, shortcut of the blocks that take the run's attention)
HOSTS = {
    "spikformer": ("spikformer", dict(depth=1, dim=32, heads=2, patch_size=4), "sew"),
    "qkformer": ("qkformer", dict(depth=3, dim=32, heads=2, mlp_ratio=2.0), "sew"),
    "semm-spikformer": ("semm-spikformer", dict(depth=1, dim=32, heads=2, patch_size=4), "sew"),
    "sdt-ms": ("sdt", dict(depth=1, dim=32, heads=2, shortcut="ms"), "ms"),
    "sdt-sew": ("sdt", dict(depth=1, dim=32, heads=2, shortcut="sew"), "sew"),
    "sdt-vs": ("sdt", dict(depth=1, dim=32, heads=2, shortcut="vs"), "vs"),
    "meta-spikeformer-tiny": ("meta-spikeformer-tiny", dict(img_size=8), "ms"),  # 8 px: a 2 x 2 token grid
}
#: small settings for attentions whose defaults are CIFAR-sized
ATTN_KW = {"semm": dict(expert_dim=8, num_expert=2)}


def build(host: str, attention: str, neuron=IF) -> nn.Module:
    name, kw, _ = HOSTS[host]
    torch.manual_seed(0)
    kw = {"img_size": 16, **kw}
    return MODELS.build(name, num_classes=4, in_chans=1, neuron=neuron,
                        attention=AttentionFactory(attention, **ATTN_KW.get(attention, {})), **kw)


def attention_sites(model: nn.Module) -> list[tuple[nn.Module, nn.Module | None, str]]:
    """(attention, the neuron joined after it or None, host shortcut) for every block built with
    the run's attention (QKFormer's Q-K stages use the model's own qk_attention and are skipped)."""
    sites = []
    for module in model.modules():
        if isinstance(module, SDTBlock):  # SDT and Meta-SpikeFormer: the attention sits in a Residual
            sites.append((module.attn.branch, module.attn.out_lif, module.shortcut))
        elif hasattr(module, "attn_out_lif"):
            sites.append((module.attn, module.attn_out_lif, module.shortcut))
    return sites


def firing_forward(model: nn.Module) -> list[dict]:
    """Per-layer rows of one metered forward after BN statistics are set so that neurons fire."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative: one pass sets the running statistics to its own
            with torch.no_grad():
                m.weight.fill_(1.0)
                m.bias.fill_(1.0)  # BN outputs ~ N(1, 1): about half of the IF neurons fire
    size = getattr(model, "img_size", 16)
    x = torch.rand(2, 3, 1, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.train()(x)
        model.eval()
        meter = EnergyMeter(model, T=2)
        with meter:
            model(x)
    return meter.report().to_record()["per_layer"]


def test_every_attention_declares_what_it_emits():
    for name in ATTENTIONS.names():
        attn = AttentionFactory(name, **ATTN_KW.get(name, {}))(dim=16, heads=2, neuron=IF)
        assert branch_emits(attn) in EMITS, name
    assert branch_emits(AttentionFactory("sdsa3")(dim=16, heads=2, neuron=IF)) == "membrane"
    assert branch_emits(AttentionFactory("ssa")(dim=16, heads=2, neuron=IF)) == "spikes"
    assert branch_emits(AttentionFactory("softmax", proj_neuron=False)(dim=16, heads=2, neuron=IF)) == "membrane"


@pytest.mark.parametrize("host", list(HOSTS))
def test_every_attention_in_every_host_follows_the_rule_and_passes_the_audit(host):
    for attention in ATTENTIONS.names():
        model = build(host, attention)
        sites = attention_sites(model)
        assert sites, (host, attention)
        for attn, closer, kind in sites:
            assert kind == HOSTS[host][2]
            membrane = branch_emits(attn) == "membrane"
            # the rule: a neuron after the branch for vs, and for sew when the branch emits a membrane
            assert (closer is not None) == (kind == "vs" or (kind == "sew" and membrane)), (host, attention)
            if closer is not None:
                assert isinstance(closer, SpikingNeuron) and closer.v_threshold == 1.0  # from the run's factory
        rows = firing_forward(model)
        fc = [r for r in rows if r["kind"] in ("conv", "linear") and not r["encoder"]]
        assert any(r["input_rate"] and r["input_rate"] > 0.05 for r in fc)  # the neurons fired
        result = audit_model(rows, model)
        if attention == "softmax":  # real-valued Q, K, V: its products and projection read real values
            assert result["verdict"] == "no"
            flagged = {r["name"].rsplit(".", 1)[-1] for r in result["non_spike_layers"]}
            assert {"qk", "av"} <= flagged and all(".attn." in r["name"] for r in result["non_spike_layers"])
        else:
            assert result["verdict"] == "yes", (host, attention, result["non_spike_layers"])


def test_without_the_rule_a_membrane_attention_breaks_the_spike_stream(monkeypatch):
    """Negative control: the audit flags the MLP of a Spikformer block whose SDSA-1 output is added
    to the spike stream unclosed (what the shipped suite ran before this contract)."""
    monkeypatch.setattr("step.models.spikformer.closing_neuron", lambda *a, **k: None)
    model = build("spikformer", "sdsa1")
    assert model.blocks[0].attn_out_lif is None
    result = audit_model(firing_forward(model), model)
    assert result["verdict"] == "no"
    assert [r["name"] for r in result["non_spike_layers"]] == ["blocks.0.mlp.fc1.linear"]


def test_the_closing_neuron_makes_the_stream_integer():
    """SDSA-3 in a Spikformer block: the residual stream after the attention holds spike counts."""
    model = build("spikformer", "sdsa3")
    block = model.blocks[0]
    seen = {}
    block.attn_out_lif.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    firing_forward(model)
    out = seen["out"]
    assert out.sum() > 0 and torch.equal(out, out.round()) and out.max() <= 1


def test_a_branch_without_a_declaration_is_refused():
    class Undeclared(nn.Module):
        def forward(self, x, hw=None):
            return x

    with pytest.raises(ConfigError, match="emits = 'spikes'"):
        closing_neuron(Undeclared(), "sew", IF)
    bad = Undeclared()
    bad.emits = "current"
    with pytest.raises(ConfigError, match="emits='current'"):
        Residual(bad, "ms", IF)
    old = Undeclared()
    old.emits_spikes = False  # the older spelling still reads
    assert branch_emits(old) == "membrane" and closing_neuron(old, "sew", IF) is not None


# ---- the audit on hand-made rows -----------------------------------------------------------------

def _row(name, kind="linear", order=0, nonspike=0.0, encoder=False, shape=(8,)):
    return {"name": name, "type": "Linear", "kind": kind, "order": order, "encoder": encoder,
            "nonspike_macs_per_step": nonspike, "output_shape": list(shape), "input_mean": 0.3, "input_rate": 0.9}


def test_audit_exclusions_on_hand_made_rows():
    neuron = {"name": "lif", "kind": "neuron", "order": 1}
    rows = [
        _row("embed.conv", "conv", 0, 100.0, encoder=True, shape=(4, 8, 8)),  # the meter's encoder
        neuron,
        _row("block.fc1", order=2),  # spikes: fine
        _row("block.rep.dw", "conv", 3, 50.0, shape=(4, 8, 8)),  # chain member
        _row("block.mlp.fc2", order=4, nonspike=30.0),  # real input, not excused
        _row("block.qk", "matmul", 5, nonspike=20.0, shape=(2, 4, 4)),  # a real x real product
        _row("head", order=6, nonspike=10.0, shape=(10,)),  # last, linear, one vector: the head
    ]
    result = audit(rows, chain={"block.rep.dw"})
    assert result["verdict"] == "no"
    assert [r["name"] for r in result["non_spike_layers"]] == ["block.mlp.fc2", "block.qk"]
    assert {r["name"]: r["reason"] for r in result["excluded"]} == {
        "embed.conv": REASONS["encoder"], "block.rep.dw": REASONS["chain"], "head": REASONS["head"]}
    # a pooled layer that is not the last weight layer is no head; a last layer with a map output neither
    assert audit([neuron, _row("pool.fc", order=2, nonspike=5.0), _row("last", order=3)])["verdict"] == "no"
    assert audit([neuron, _row("last", "conv", 3, 5.0, shape=(4, 2, 2))])["verdict"] == "no"
    assert audit([neuron, _row("fc", order=2), rows[-1]])["verdict"] == "yes"
    # no spiking neuron at all: an ANN twin, not audited
    twin = audit([_row("fc", nonspike=5.0)])
    assert twin["verdict"] == "ann" and twin["non_spike_layers"] == [] and "ANN twin" in twin["why_not_audited"]


def test_chain_members_are_the_later_layers_of_declared_chains():
    model = build("meta-spikeformer-tiny", "sdsa3")
    members = chain_members(model)
    assert "stages.3.0.attn.branch.q.conv.dw" in members and "stages.3.0.attn.branch.q.conv.pw" in members
    assert "stages.3.0.attn.branch.q.conv.conv1" not in members  # a chain's first layer must read spikes
    assert "stages.0.0.sepconv.branch.dw_pw2.1" in members and "stages.0.0.sepconv.branch.dw_pw2.0" not in members
    assert not any("mlp" in m or "head" in m for m in members)


# ---- through the runner ---------------------------------------------------------------------------

TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.epochs=1", "trainer.max_batches=2",
        "trainer.batch_size=16", "trainer.eval_batch_size=128", "trainer.progress=false"]


@pytest.mark.parametrize("overrides,verdict", [
    (["attention=sdsa1", "dataset=digits-hard", "dataset.train_copies=1"], "yes"),
    (["attention=softmax"], "no"),
    (["attention=softmax", "neuron=relu", "T=1"], "ann"),
])
def test_the_record_and_the_row_carry_the_audit(isolated_roots, overrides, verdict):
    record = run(compose([*TINY, *overrides]))
    saved = json.loads(open(record["record_path"]).read())
    block = saved["energy"]["spike_driven"]
    assert block["verdict"] == verdict and block["rule"]
    names = [r["name"] for r in block["non_spike_layers"]]
    if verdict == "no":
        assert "blocks.0.attn.qk" in names
    else:
        assert names == []
    if verdict == "yes":
        assert any(e["reason"] == REASONS["encoder"] for e in block["excluded"])
    summary = format_summary(saved)  # what the run prints at its end
    assert re.search(rf"spike-driven +\| {verdict}", summary) and (verdict != "no" or "blocks.0.attn.qk" in summary)
    row = pd.read_csv(isolated_roots / "results" / "leaderboard.csv", keep_default_na=False).iloc[0]
    assert row["spike_driven"] == verdict
    if "dataset=digits-hard" in overrides:  # the CPU suites' data, its knobs reaching the builder
        assert (saved["data"]["n_train"], saved["data"]["n_test"]) == (1437, 1080) and row["dataset"] == "digits-hard"
