"""Every configured value reaches every spiking node of every model (and the encoder).

Values are deliberately different from every default (tau 3, V_th 0.75, V_reset -0.1, no input
decay, attached reset, alpha 1.5, T 3, attention threshold 0.4), so a constructor that drops a
keyword and falls back to a default is caught; the toy models at the end prove the checker does.
"""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from step.attention import AttentionFactory
from step.neurons import NeuronFactory, SpikingNeuron, check_nodes, declared_overrides, expected_from_factory
from step.registry import ENCODERS, MODELS, NEURONS, SURROGATES

CONF = Path(__file__).resolve().parents[1] / "conf"
KNOBS = dict(tau=3.0, v_threshold=0.75, v_reset=-0.1, decay_input=False, detach_reset=False, alpha=1.5)
T = 3
ATTN_TH = 0.4
#: spiking neurons only (NEURONS also holds the ANN twins' non-spiking activations)
SPIKING = sorted(n for n in NEURONS.names() if issubclass(NEURONS.get(n), SpikingNeuron))
SMALL = dict(img_size=16, in_chans=1, depth=1, dim=32, heads=2)


def _build(model_name, factory):
    """Spikformer small with SSA at a non-default attention threshold; other models as registered."""
    if model_name == "spikformer":
        attention = AttentionFactory("ssa", attn_threshold=ATTN_TH)
        model = MODELS.build(model_name, num_classes=10, neuron=factory, attention=attention, **SMALL)
        model._knob_small = True
        return model
    with torch.device("meta"):  # structure only: no memory, no initialisation cost
        return MODELS.build(model_name, num_classes=10, neuron=factory)


def _check(model, factory):
    """Mismatches of every node against the factory, except the values modules declare on purpose
    (attention thresholds), which are checked against the module's own config attribute; the
    small Spikformer's SSA threshold must also be the configured ATTN_TH."""
    overrides = declared_overrides(model)
    for path, m in model.named_modules():
        if type(m).__name__ == "SpikingSelfAttention" and model_is_small(model):
            assert m.attn_threshold == ATTN_TH and overrides[path + ".attn_lif"] == {"v_threshold": ATTN_TH}
    return check_nodes(model, factory.expected(), overrides=overrides)


def model_is_small(model):
    return getattr(model, "_knob_small", False)


@pytest.mark.parametrize("neuron", SPIKING)
@pytest.mark.parametrize("surrogate", sorted(SURROGATES.names()))
def test_every_neuron_and_surrogate_reaches_every_node(neuron, surrogate):
    f = NeuronFactory(neuron, T=T, surrogate=surrogate, **KNOBS)
    assert _check(_build("spikformer", f), f) == []


@pytest.mark.parametrize("model_name", sorted(MODELS.names()))
def test_every_model_passes_its_neuron_config_through(model_name):
    f = NeuronFactory("plif", T=T, surrogate="sigmoid", **KNOBS)
    assert _check(_build(model_name, f), f) == []


@pytest.mark.slow
@pytest.mark.parametrize("model_name", sorted(MODELS.names()))
@pytest.mark.parametrize("neuron", SPIKING)
def test_every_model_every_neuron(model_name, neuron):
    for surrogate in SURROGATES.names():
        f = NeuronFactory(neuron, T=T, surrogate=surrogate, **KNOBS)
        assert _check(_build(model_name, f), f) == []


@pytest.mark.parametrize("backend", ["spikingjelly", "braincog"])
def test_knobs_reach_backend_nodes(backend):
    pytest.importorskip(backend)
    knobs = dict(tau=3.0, v_threshold=0.75, v_reset=0.0, decay_input=True, detach_reset=True)
    f = NeuronFactory("lif", backend=backend, T=T, surrogate="atan", alpha=2.0, **knobs)
    assert _check(_build("spikformer", f), f) == []


def test_neuron_built_from_config_files_like_the_runner():
    """conf/neuron x conf/surrogate x conf/backend merged as the runner does reach the nodes."""
    for neuron_yaml in sorted(CONF / "neuron" / f"{n}.yaml" for n in SPIKING):
        neuron = OmegaConf.to_container(OmegaConf.load(neuron_yaml))
        name = neuron.pop("name")
        assert "surrogate" not in neuron and "alpha" not in neuron and "T" not in neuron
        for sur_yaml in sorted((CONF / "surrogate").glob("*.yaml")):
            sur = OmegaConf.load(sur_yaml)
            assert isinstance(sur.alpha, float)
            f = NeuronFactory(name, backend="native", T=T, **neuron, surrogate=sur.name, alpha=sur.alpha)
            node = f()
            want = expected_from_factory(f)
            assert check_nodes(node, want) == [], (neuron_yaml.name, sur_yaml.name)
            assert type(node.surrogate) is SURROGATES.get(sur.name) and node.alpha == sur.alpha


def test_every_registry_entry_has_a_config_file():
    for group, names in (("neuron", SPIKING), ("surrogate", SURROGATES.names()), ("encoder", ENCODERS.names())):
        assert set(names) <= {p.stem for p in (CONF / group).glob("*.yaml")}, group
    assert {p.stem for p in (CONF / "backend").glob("*.yaml")} == {"native", "spikingjelly", "braincog"}


@pytest.mark.parametrize("encoder_yaml", sorted((CONF / "encoder").glob("*.yaml")), ids=lambda p: p.stem)
def test_encoder_and_T_reach_the_encoder(encoder_yaml):
    cfg = OmegaConf.to_container(OmegaConf.load(encoder_yaml))
    name = cfg.pop("name")
    enc = ENCODERS.build(name, T=T, **cfg)
    assert type(enc) is ENCODERS.get(name) and enc.T == T
    out = enc(torch.rand(2, 1, 4, 4))
    assert out.shape == (T, 2, 1, 4, 4)


# ---- the checker itself catches dropped keywords ---------------------------------------------
class _DefaultNeuronModel(nn.Module):
    """Broken on purpose: one neuron ignores the factory and uses library defaults."""

    def __init__(self, neuron):
        super().__init__()
        self.good = neuron()
        self.bad = NEURONS.build("lif")


class _DroppingModel(nn.Module):
    """Broken on purpose: passes the factory's values on but drops tau and the surrogate alpha."""

    def __init__(self, neuron: NeuronFactory):
        super().__init__()
        kept = {k: v for k, v in neuron.params.items() if k not in ("tau", "alpha")}
        self.node = NEURONS.build(neuron.name, T=neuron.T, **kept)


def test_checker_flags_a_neuron_built_with_defaults():
    f = NeuronFactory("lif", T=T, surrogate="sigmoid", **KNOBS)
    problems = check_nodes(_DefaultNeuronModel(f), f.expected())
    assert problems and all(p.startswith("bad:") for p in problems)
    flagged = " ".join(problems)
    for key in ("tau=", "v_threshold=", "v_reset=", "alpha=", "T=", "surrogate ATan"):
        assert key in flagged, key


def test_checker_flags_a_dropped_keyword():
    f = NeuronFactory("lif", T=T, surrogate="sigmoid", **KNOBS)
    problems = check_nodes(_DroppingModel(f), f.expected())
    assert any("tau=2.0, expected 3.0" in p for p in problems)
    assert any("alpha=4.0, expected 1.5" in p for p in problems)


def test_checker_flags_wrong_class_missing_override_and_no_nodes():
    f = NeuronFactory("plif", T=T, surrogate="atan", **KNOBS)
    model = _build("spikformer", NeuronFactory("lif", T=T, surrogate="atan", **KNOBS))
    problems = check_nodes(model, f.expected(), overrides={"attn_lif": {"v_threshold": ATTN_TH}})
    assert any("class LIF, expected PLIF" in p for p in problems)
    assert declared_overrides(model) == {"blocks.0.attn.attn_lif": {"v_threshold": ATTN_TH}}
    assert check_nodes(nn.Linear(2, 2), f.expected()) == ["found 0 spiking nodes, expected at least 1"]
    assert any("no node named 'nope'" in p for p in check_nodes(model, expected_from_factory(f), {"nope": {}}))
