"""SDT v1 and Meta-SpikeFormer: published parameter counts, shortcuts, features, and a forward and
backward of each model with every spike-driven attention (reference/models.md sec. 3-4,
reference/meta-spikeformer-paper.md Tables 1, 5 and 7)."""

import pytest
import torch

from step.attention import AttentionFactory
from step.attention.sdsa import SDSA1, SDSA3
from step.errors import ConfigError
from step.layers.shortcut import Residual
from step.neurons import check_nodes, declared_overrides
from step.neurons.factory import NeuronFactory, spiking_nodes
from step.registry import MODELS


def n_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count(name, **kw):
    with torch.device("meta"):  # no memory, no init cost
        return n_params(MODELS.build(name, **kw))


# ---- parameter counts ---------------------------------------------------------------------------

def test_sdt_2_512_matches_the_published_count():
    # released code: 10,279,716 at 100 classes / 10,233,546 at 10, each holding 2 blocks x 8^2 dead
    # talking_heads weights that its forward never uses; we build only what the forward uses.
    assert count("sdt-2-512", num_classes=100) == 10_279_716 - 2 * 64
    assert count("sdt-2-512", num_classes=10) == 10_233_546 - 2 * 64
    assert round(count("sdt-2-512", num_classes=100) / 1e6, 2) == 10.28  # the paper's 10.28M


@pytest.mark.parametrize("name,released,depth", [("sdt-6-512", 23_373_736, 6), ("sdt-10-512", 36_006_056, 10)])
def test_sdt_imagenet_exact_counts(name, released, depth):
    assert count(name, num_classes=1000) == released - depth * 64


@pytest.mark.parametrize("name,published", [("sdt-8-384", 16.81), ("sdt-6-512", 23.37), ("sdt-8-512", 29.68),
                                            ("sdt-10-512", 36.01), ("sdt-8-768", 66.34)])
def test_sdt_imagenet_counts_within_the_published_rounding(name, published):
    assert abs(count(name, num_classes=1000) / 1e6 - published) <= 0.01  # models.md 2.6: +-0.01M


def test_sdt_dvs_count():
    assert count("sdt-2-256", num_classes=10, in_chans=2) == 2_566_794 - 2 * 64  # CIFAR10-DVS, 64 px


@pytest.mark.parametrize("name,exact,published", [
    ("meta-spikeformer-15m", 15_112_208, 15.1),
    ("meta-spikeformer-31m", 31_333_864, 31.3),
    ("meta-spikeformer-55m", 55_350_248, 55.4),
])
def test_meta_spikeformer_counts(name, exact, published):
    n = count(name, num_classes=1000, img_size=224)
    assert n == exact
    assert round(n / 1e6, 1) == published


@pytest.mark.parametrize("attention,options,published", [
    ("sdsa1", {"qkv": "repconv", "proj": "repconv"}, 31.3),  # SDSA-3 -> SDSA-1
    ("sdsa2", {}, 28.6),  # SDSA-3 -> SDSA-2 (no key)
    ("sdsa4", {}, 31.3),  # SDSA-3 -> SDSA-4
    ("sdsa3", {"qkv": "linear"}, 27.2),  # RepConv-1/2/3 -> Linear
])
def test_table5_ablation_counts(attention, options, published):
    n = count("meta-spikeformer-31m", num_classes=1000, attention=AttentionFactory(attention, **options))
    assert round(n / 1e6, 1) == published


@pytest.mark.parametrize("shortcut", ["sew", "vs"])
def test_shortcut_ablations_keep_the_count(shortcut):
    assert round(count("meta-spikeformer-31m", num_classes=1000, shortcut=shortcut) / 1e6, 1) == 31.3


# ---- structure ----------------------------------------------------------------------------------

def test_default_attentions_are_the_papers():
    sdt = MODELS.build("sdt", num_classes=3, img_size=16, in_chans=1, depth=1, dim=32, heads=2)
    meta = MODELS.build("meta-spikeformer-tiny", num_classes=3, in_chans=1)
    assert isinstance(sdt.blocks[0].attn.branch, SDSA1)
    assert all(isinstance(b.attn.branch, SDSA3) for b in list(meta.stages[3]) + list(meta.stages[4]))
    assert meta.stages[3][0].attn.branch.qkv_kind == "repconv"


def test_every_neuron_comes_from_the_factory():
    factory = NeuronFactory("lif", T=2, tau=3.0, v_threshold=0.75, surrogate="atan", alpha=2.0)
    for name in ("sdt", "meta-spikeformer-tiny"):
        kw = dict(img_size=16, in_chans=1, depth=1, dim=32, heads=2) if name == "sdt" else {}
        model = MODELS.build(name, num_classes=3, neuron=factory, attention=AttentionFactory("sdsa3"), **kw)
        nodes = dict(spiking_nodes(model))
        assert nodes and all(n.tau == 3.0 for n in nodes.values())
        assert all(n.v_threshold == (4.0 if p.endswith("attn_lif") else 0.75) for p, n in nodes.items())


@pytest.mark.parametrize("attention", ["sdsa1", "sdsa2", "sdsa3", "sdsa4"])
def test_config_values_reach_every_node(attention):
    factory = NeuronFactory("lif", T=3, tau=3.0, v_threshold=0.75, v_reset=-0.1, decay_input=False,
                            detach_reset=False, surrogate="sigmoid", alpha=1.5)
    att = AttentionFactory(attention, attn_threshold=0.4)
    for name, kw in (("sdt", dict(img_size=16, depth=1, dim=32, heads=2)), ("meta-spikeformer-tiny", {})):
        model = MODELS.build(name, num_classes=3, neuron=factory, attention=att, **kw)
        overrides = declared_overrides(model)
        want = 0.4 * 8.0 if attention in ("sdsa3", "sdsa4") else 0.4  # SDSA-3/4 fire at s * u_th
        assert overrides and all(v["v_threshold"] == pytest.approx(want) for v in overrides.values())
        assert check_nodes(model, factory.expected(), overrides=overrides) == []


def test_sdt_shortcuts_build_and_differ():
    x = 3 * torch.rand(2, 2, 1, 8, 8)
    outs = {}
    for kind in ("ms", "sew", "vs"):
        torch.manual_seed(0)
        model = MODELS.build("sdt", num_classes=4, img_size=8, in_chans=1, depth=1, dim=32, heads=2, shortcut=kind)
        attn = model.blocks[0].attn
        assert (attn.in_lif is not None) == (kind == "ms") and (attn.out_lif is not None) == (kind != "ms")
        assert (model.entry_lif is not None) == (kind != "ms")
        outs[kind] = model.forward_features(x)  # the residual stream (training-mode BN)
    assert not torch.allclose(outs["ms"], outs["sew"])
    assert not torch.allclose(outs["ms"], outs["vs"])
    assert not torch.allclose(outs["sew"], outs["vs"])
    assert set(outs["vs"].unique().tolist()) <= {0.0, 1.0}  # vs keeps a binary stream
    assert outs["sew"].max() > 1  # sew sums spikes into integers


@pytest.mark.parametrize("name,kw", [("sdt", dict(img_size=8, depth=1, dim=32, heads=2)),
                                     ("meta-spikeformer-tiny", dict(img_size=16))])
def test_a_vanilla_shortcut_stream_reaches_the_classifier(name, kw):
    # a vs stream is binary; pooled over tokens it gives rates in [0, 1], on which a LIF of
    # threshold 1 never fires: with a head neuron the logits were the bias for every image
    for kind in ("ms", "sew"):
        assert not isinstance(MODELS.build(name, num_classes=4, in_chans=1, shortcut=kind, **kw).head_lif, torch.nn.Identity)
    torch.manual_seed(0)
    # IF neurons (no leak, no input decay) let a lone spike through the vs joins of this tiny net
    model = MODELS.build(name, num_classes=4, in_chans=1, shortcut="vs", neuron=NeuronFactory("if", T=2), **kw)
    assert isinstance(model.head_lif, torch.nn.Identity)
    size = kw["img_size"]
    logits = model(3 * torch.rand(2, 4, 1, size, size))
    assert logits.std(0).abs().sum() > 1e-4  # four images, four different rows of logits
    logits.square().sum().backward()
    first = next(p for p in model.parameters() if p.dim() == 4)
    assert first.grad is not None and first.grad.abs().sum() > 0


class _Affine(torch.nn.Module):
    """F(s) = 2 s - 1.5, a branch ending in a membrane (or, with emits_spikes, claiming spikes)."""

    def __init__(self, emits_spikes=False):
        super().__init__()
        self.emits_spikes = emits_spikes

    def forward(self, s):
        return 2 * s - 1.5


def test_residual_joins_by_hand():
    # IF at T=1 fires iff its input >= 1
    neuron = NeuronFactory("if", T=1, v_threshold=1.0, v_reset=0.0, surrogate="atan", alpha=2.0)
    x = torch.tensor([[[0.5, 1.0, 2.0]]])  # [T=1, B=1, 3]
    ms = Residual(_Affine(), "ms", neuron)(x)  # x + F(SN(x)) = x + 2*[0,1,1] - 1.5
    assert torch.equal(ms, torch.tensor([[[-1.0, 1.5, 2.5]]]))
    sew = Residual(_Affine(), "sew", neuron)(x)  # x + SN(F(x)) = x + SN([-0.5, 0.5, 2.5])
    assert torch.equal(sew, torch.tensor([[[0.5, 1.0, 3.0]]]))
    sew_spiking = Residual(_Affine(emits_spikes=True), "sew", neuron)  # no second neuron
    assert sew_spiking.out_lif is None and torch.equal(sew_spiking(x), torch.tensor([[[0.0, 1.5, 4.5]]]))  # x + F(x)
    vs = Residual(_Affine(), "vs", neuron)(x)  # SN(x + F(x)) = SN([0, 1.5, 4.5])
    assert torch.equal(vs, torch.tensor([[[0.0, 1.0, 1.0]]]))
    with pytest.raises(ConfigError, match="ms, sew, vs"):
        Residual(_Affine(), "skip", neuron)


def test_invalid_options_are_config_errors():
    with pytest.raises(ConfigError, match="pooling_stat"):
        MODELS.build("sdt", num_classes=3, depth=1, dim=32, heads=2, pooling_stat="001")
    with pytest.raises(ConfigError, match="depths"):
        MODELS.build("meta-spikeformer-tiny", num_classes=3, depths=[1, 1, 1])


def test_feature_formats():
    sdt = MODELS.build("sdt", num_classes=3, img_size=16, in_chans=1, depth=1, dim=32, heads=2, pooling_stat="0011")
    assert sdt.forward_features(torch.rand(2, 1, 1, 16, 16)).shape == (2, 1, 16, 32)  # [T, B, N, D]
    assert sdt.feature_grid(16) == (4, 4)
    meta = MODELS.build("meta-spikeformer-tiny", num_classes=3, in_chans=2, strides=[2, 2, 2, 2, 1])
    feats = meta.forward_features(torch.rand(1, 2, 2, 16, 16))  # ImageNet strides: 4, 8, 16, 16
    assert [tuple(f.shape) for f in feats] == [(1, 2, 16, 4, 4), (1, 2, 32, 2, 2), (1, 2, 64, 1, 1), (1, 2, 64, 1, 1)]


# ---- forward and backward of every model x attention -------------------------------------------

ATTENTIONS_UNDER_TEST = ["ssa", "sdsa1", "sdsa2", "sdsa3", "sdsa4"]
TINY = {"sdt": dict(img_size=16, depth=1, dim=32, heads=2), "meta-spikeformer-tiny": dict(img_size=8)}


@pytest.mark.parametrize("attention", ATTENTIONS_UNDER_TEST)
@pytest.mark.parametrize("model_name", sorted(TINY))
def test_forward_backward_reaches_every_parameter(model_name, attention):
    torch.manual_seed(0)
    neuron = NeuronFactory("lif", T=2, tau=2.0, v_threshold=1.0, surrogate="atan", alpha=2.0)
    model = MODELS.build(model_name, num_classes=5, in_chans=1, neuron=neuron,
                         attention=AttentionFactory(attention), **TINY[model_name])
    size = TINY[model_name]["img_size"]  # meta-spikeformer-tiny: 8 px -> a 2 x 2 token grid
    out = model(3 * torch.rand(2, 2, 1, size, size))
    assert out.shape == (2, 5)
    torch.nn.functional.cross_entropy(out, torch.tensor([1, 3])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0
