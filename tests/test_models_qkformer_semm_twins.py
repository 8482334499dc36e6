"""QKFormer, SEMM-Spikformer and the ANN / INT8 twins: published counts, every attention, twins."""

import pytest
import torch
from torch.nn.utils import parametrize

from step.attention import AttentionFactory
from step.neurons import NeuronFactory, spiking_nodes
from step.neurons.activations import Int8Activation, is_activation
from step.registry import MODELS


def n_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_big(name, **kw):
    """Build without allocating (meta tensors): counts and structure only, never run."""
    with torch.device("meta"):
        return MODELS.build(name, **kw)


@pytest.mark.parametrize("name,K,count", [
    ("qkformer-4-384", 10, 6_706_234),      # QKFormer CIFAR-10 log
    ("qkformer-4-384", 100, 6_740_884),     # CIFAR-100 log; the paper's 6.74M
    ("qkformer-10-768", 1000, 64_962_760),  # ImageNet log "n_parameters": 64962760
    ("qkformer-2-256", 10, 1_504_138),      # CIFAR10-DVS log (mlp ratio 1)
    ("semm-spikformer-4-384", 10, 7_739_242),   # STEP spikf_semm_cifar (reference sec. 6.4)
    ("semm-spikformer-4-384", 100, 7_773_892),
])
def test_published_parameter_counts(name, K, count):
    assert n_params(build_big(name, num_classes=K)) == count


def test_qkformer_imagenet_counts_at_published_rounding():
    assert round(n_params(build_big("qkformer-10-384", num_classes=1000)) / 1e6, 2) == 16.47
    assert round(n_params(build_big("qkformer-10-512", num_classes=1000)) / 1e6, 2) == 29.08


TINY = {
    "qkformer-cifar": ("qkformer", dict(layout="cifar", depth=3, dim=32, heads=2, img_size=8, in_chans=3)),
    "qkformer-imagenet": ("qkformer", dict(layout="imagenet", depth=4, dim=32, heads=2, img_size=16, in_chans=3)),
    "qkformer-dvs": ("qkformer", dict(layout="dvs", depth=2, dim=32, heads=2, img_size=16, in_chans=2, mlp_ratio=1.0)),
    "semm-spikformer": ("semm-spikformer", dict(depth=1, dim=32, heads=2, img_size=8, in_chans=3)),
}
ATTN = {"ssa": {}, "qk_token": {}, "qk_channel": {}, "bipolar": {}, "semm": {"expert_dim": 8}, "softmax": {}}


def _backward_reaches_every_parameter(model, x):
    model(x).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert missing == [] and bad == []


@pytest.mark.parametrize("attn", sorted(ATTN))
@pytest.mark.parametrize("tiny", sorted(TINY))
def test_forward_backward_every_model_every_attention(tiny, attn):
    torch.manual_seed(0)
    name, kw = TINY[tiny]
    f = NeuronFactory("lif", T=2, surrogate="atan", alpha=2.0)
    model = MODELS.build(name, num_classes=5, neuron=f, attention=AttentionFactory(attn, **ATTN[attn]), **kw)
    x = torch.rand(2, 2, kw["in_chans"], kw["img_size"], kw["img_size"]) * 4
    assert model(x).shape == (2, 5)
    _backward_reaches_every_parameter(model, x)


def test_qkformer_multiscale_features_and_stage_attentions():
    kw = {**TINY["qkformer-imagenet"][1], "img_size": 32}
    model = MODELS.build("qkformer", num_classes=3, **kw)
    feats = model.forward_features(torch.rand(2, 1, 3, 32, 32))
    shapes = [tuple(f.shape) for f in feats]
    assert shapes == [(2, 1, 8, 8, 8), (2, 1, 16, 4, 4), (2, 1, 32, 2, 2)]
    assert [(i["num_chs"], i["reduction"]) for i in model.feature_info] == [(8, 4), (16, 8), (32, 16)]
    kinds = [[type(b.attn).__name__ for b in stage] for stage in model.stages]
    assert kinds == [["QKTokenAttention"], ["QKTokenAttention"] * 2, ["SpikingSelfAttention"]]
    swapped = MODELS.build("qkformer", num_classes=3, attention=AttentionFactory("bipolar"), qk_attention="qk_channel", **kw)
    assert [type(s[-1].attn).__name__ for s in swapped.stages] == ["QKChannelAttention"] * 2 + ["BipolarSelfAttention"]


def test_semm_spikformer_uses_emsa_by_default():
    model = build_big("semm-spikformer-4-384", num_classes=10)
    attn = model.blocks[0].attn
    assert type(attn).__name__ == "ExpertsMixtureAttention" and (attn.expert_dim, attn.num_expert) == (96, 4)


def test_ann_twin_has_no_spiking_nodes_and_real_activations():
    torch.manual_seed(0)
    relu = NeuronFactory("relu", T=1)
    model = MODELS.build("spikformer", num_classes=4, img_size=16, in_chans=1, depth=1, dim=32, heads=2,
                         neuron=relu, attention=AttentionFactory("softmax"))
    assert list(spiking_nodes(model)) == []
    acts = [m for m in model.modules() if is_activation(m)]
    assert len(acts) >= 8 and is_activation("relu") and is_activation("gelu") and not is_activation("lif")
    outs = []
    for m in acts:
        m.register_forward_hook(lambda mod, i, o: outs.append(o))
    x = torch.rand(1, 3, 1, 16, 16)
    model(x)
    values = torch.cat([o.flatten() for o in outs])
    positive = values[values > 0]
    assert (values >= 0).all() and (positive != positive.round()).float().mean() > 0.9  # real, not spikes
    _backward_reaches_every_parameter(model, x)


def test_int8_twin_weights_and_activations_lie_on_the_int8_grid():
    torch.manual_seed(0)
    model = MODELS.build("int8-twin", base="spikformer", num_classes=4, img_size=16, in_chans=1, depth=1, dim=32,
                         heads=2, neuron=NeuronFactory("int8", T=1), attention=AttentionFactory("softmax"))
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert n_params(model) == n_params(MODELS.build("spikformer", num_classes=4, img_size=16, in_chans=1, depth=1,
                                                     dim=32, heads=2, attention=AttentionFactory("softmax")))
    for m in layers:
        w = m.weight.detach()
        s = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / 127
        codes = w / s
        assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.abs().max() <= 127 + 1e-4
        assert not torch.equal(w, m.parametrizations.weight.original.detach())  # really quantised
    x = torch.rand(1, 4, 1, 16, 16)
    model.train()
    model(x)  # calibrates the activation scales
    model.eval()
    acts = [m for m in model.modules() if isinstance(m, Int8Activation)]
    seen = []
    for m in acts:
        m.register_forward_hook(lambda mod, i, o: seen.append((o, mod.scale.clone())))
    model(x)
    assert len(seen) == len(acts) >= 8
    for out, scale in seen:
        codes = out / scale
        assert torch.allclose(codes, codes.round(), atol=1e-3) and codes.min() >= 0 and codes.max() <= 127 + 1e-3
    _backward_reaches_every_parameter(model.train(), x)


def test_int8_twin_rejects_a_twin_as_base():
    from step.errors import ConfigError

    with pytest.raises(ConfigError, match="base must be a model"):
        MODELS.build("int8-twin", base="int8-twin", num_classes=2)


def test_activations_take_the_neuron_keywords_from_config_files():
    from pathlib import Path

    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf" / "neuron"
    for name in ("relu", "gelu", "int8"):
        cfg = OmegaConf.to_container(OmegaConf.load(conf / f"{name}.yaml"))
        assert cfg.pop("name") == name
        node = NeuronFactory(name, T=3, surrogate="sigmoid", alpha=4.0, **cfg)(v_threshold=0.5)
        assert is_activation(node) and node.T == 3 and node.v_threshold == 0.5 and node.tau == cfg["tau"]
