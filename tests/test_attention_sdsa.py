"""SDSA-1..4 against hand-computed outputs, their cost scaling, and RepConv's re-parameterisation.

Hand-computed cases use an IF neuron at T=1 (it fires iff its input reaches the threshold) and
generators set to chosen 0/1 matrices with BN in eval mode at unit statistics (eps 0), so every
value below can be checked on paper. Reference: reference/meta-spikeformer-paper.md, Appendix A.
"""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from step.attention import AttentionFactory
from step.errors import ConfigError
from step.layers.repconv import RepConv
from step.layers.spike_matmul import SpikeMatMul
from step.neurons.factory import NeuronFactory
from step.registry import ATTENTIONS

CONF = Path(__file__).resolve().parents[1] / "conf" / "attention"
IF = NeuronFactory("if", T=1, v_threshold=1.0, v_reset=0.0, surrogate="atan", alpha=2.0)

S = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])  # 2 tokens x 3 channels
ROLL = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # y[c] = x[(c + 1) % 3]


def _unit_bn(bn: nn.modules.batchnorm._BatchNorm) -> None:
    bn.eps = 0.0
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0)
    bn.weight.data.fill_(1.0)
    bn.bias.data.zero_()


@torch.no_grad()
def _set(gen: nn.Module, w: torch.Tensor) -> None:
    """Make a generator compute ``x @ w.T`` exactly (LinearBN or RepConv+BN with a 1x1-like kernel)."""
    for m in gen.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            _unit_bn(m)
    if hasattr(gen, "linear"):
        gen.linear.weight.copy_(w)
        if gen.linear.bias is not None:
            gen.linear.bias.zero_()
    else:  # TokenRepConvBN: conv1 = w, depthwise = centre tap 1, pointwise = identity
        c = gen.conv
        c.conv1.weight.copy_(w[:, :, None, None])
        c.dw.weight.zero_()
        c.dw.weight[:, 0, 1, 1] = 1.0
        c.pw.weight.copy_(torch.eye(w.shape[0])[:, :, None, None])


def _attn(name, heads=1, dim=3, v=ROLL, **kw):
    attn = ATTENTIONS.build(name, dim=dim, heads=heads, neuron=IF, **kw).eval()
    eye = torch.eye(dim)
    _set(attn.q, eye)
    if hasattr(attn, "k"):
        _set(attn.k, eye)
    _set(attn.v, v if v is not None else eye)
    _set(attn.proj, eye)
    return attn


def _run(attn, s=S, hw=(1, 2)):
    with torch.no_grad():
        return attn(s[None, None], hw)[0, 0]  # T = B = 1


# V = S rolled: [[0, 1, 1], [1, 1, 0]]


@pytest.mark.parametrize("th,expected", [
    # K*V = [[0,0,1],[0,1,0]], token sum [0,1,1]; th 0.5 masks channel 0 of Q
    (0.5, [[0, 0, 1], [0, 1, 1]]),
    (1.5, [[0, 0, 0], [0, 0, 0]]),
])
def test_sdsa1_masks_q_with_the_thresholded_kv_sum(th, expected):
    out = _run(_attn("sdsa1", attn_threshold=th))
    assert torch.equal(out, torch.tensor(expected, dtype=torch.float32))


def test_sdsa1_kv_sum_reaching_two_passes_a_higher_threshold():
    s = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])  # V = [[1,1,1],[1,1,0]]; K*V sums to [1,2,1]
    out = _run(_attn("sdsa1", attn_threshold=1.5), s)
    assert torch.equal(out, torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]))


@pytest.mark.parametrize("th,expected", [
    (1.5, [[0, 0, 1], [0, 0, 0]]),  # Q token sum [1,1,2] -> scores [0,0,1] mask V
    (0.5, [[0, 1, 1], [1, 1, 0]]),  # every channel passes: V itself
])
def test_sdsa2_masks_v_with_scores_from_q_alone(th, expected):
    attn = _attn("sdsa2", attn_threshold=th, qkv="linear", proj="linear")
    assert not hasattr(attn, "k") and not hasattr(attn, "k_lif")
    assert torch.equal(_run(attn), torch.tensor(expected, dtype=torch.float32))


# Q (K^T V) with Q = K = S, V = S rolled: K^T V = [[0,1,1],[1,1,0],[1,2,1]], product [[1,3,2],[2,3,1]]
@pytest.mark.parametrize("s,u,expected", [
    (2.0, 1.0, [[0, 1, 1], [1, 1, 0]]),  # fires at s * u_th = 2
    (3.0, 1.0, [[0, 1, 0], [0, 1, 0]]),  # fires at 3
    (8.0, 0.25, [[0, 1, 1], [1, 1, 0]]),  # 8 * 0.25 = 2 again
])
@pytest.mark.parametrize("merge", [True, False])
def test_sdsa3_fires_at_s_times_u_th_on_the_unscaled_product(s, u, expected, merge):
    attn = _attn("sdsa3", threshold_scale=s, attn_threshold=u, merge_scale=merge, qkv="linear", proj="linear")
    assert attn.attn_lif.v_threshold == (s * u if merge else u)
    assert torch.equal(_run(attn), torch.tensor(expected, dtype=torch.float32))


def test_sdsa3_with_repconv_generators_on_the_token_grid():
    attn = _attn("sdsa3", threshold_scale=2.0, attn_threshold=1.0)  # yaml default: repconv
    assert attn.qkv_kind == "repconv" and attn.proj_kind == "repconv"
    assert torch.equal(_run(attn, hw=(2, 1)), torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]))
    with pytest.raises(ConfigError, match="token grid"):
        _run(attn, hw=(2, 2))


def test_sdsa3_heads_attend_separately():
    # head 1 (channels 0,1): S_h = I -> Q(K^T V) = I; head 2: S_h = [[1,1],[1,0]] -> [[3,2],[2,1]]
    s = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    attn = _attn("sdsa3", heads=2, dim=4, v=None, threshold_scale=2.0, attn_threshold=1.0, qkv="linear", proj="linear")
    assert torch.equal(_run(attn, s), torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]]))


def test_sdsa4_threshold_is_learnable_and_starts_at_s_u_th():
    attn = _attn("sdsa4", threshold_scale=2.0, attn_threshold=1.0, qkv="linear", proj="linear")
    th = attn.attn_lif.threshold
    assert isinstance(th, nn.Parameter) and float(th.detach()) == 2.0
    assert torch.equal(_run(attn), torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]))  # = SDSA-3 at init
    attn(S[None, None], (1, 2)).sum().backward()  # eval-mode BN keeps the unit statistics
    assert th.grad is not None and torch.isfinite(th.grad)
    ref = ATTENTIONS.build("sdsa3", dim=8, heads=2, neuron=IF, qkv="linear", proj="linear")
    new = ATTENTIONS.build("sdsa4", dim=8, heads=2, neuron=IF, qkv="linear", proj="linear")
    assert sum(p.numel() for p in new.parameters()) == sum(p.numel() for p in ref.parameters()) + 1


def _cost(name, n_tokens, dim=8, heads=2):
    """m k n of every SpikeMatMul call (out.numel() for a Hadamard), summed, via forward hooks."""
    attn = ATTENTIONS.build(name, dim=dim, heads=heads, neuron=IF, **({"qkv": "linear", "proj": "linear"} if name != "ssa" else {}))
    total = []

    def hook(module, inputs, out):
        total.append(out.numel() * (inputs[0].shape[-1] if module.mode == "matmul" else 1))

    for m in attn.modules():
        if isinstance(m, SpikeMatMul):
            m.register_forward_hook(hook)
    attn(torch.ones(1, 1, n_tokens, dim), (1, n_tokens))
    return sum(total)


def test_sdsa3_cost_is_linear_in_tokens_and_ssa_quadratic():
    d, h = 4, 2
    for n in (4, 8, 16):
        assert _cost("sdsa3", n) == 2 * n * d * d * h  # K^T V and Q (K^T V)
        assert _cost("ssa", n) == 2 * n * n * d * h  # Q K^T and (Q K^T) V
    assert _cost("sdsa3", 32) == 2 * _cost("sdsa3", 16)
    assert _cost("ssa", 32) == 4 * _cost("ssa", 16)


@pytest.mark.parametrize("name", ["sdsa1", "sdsa2"])
def test_hadamard_variants_cost_n_d(name):
    # the token sum (N D) plus the mask (N D)
    assert _cost(name, 16) == 2 * 16 * 8
    assert _cost(name, 32) == 2 * _cost(name, 16)


def test_repconv_fused_conv_equals_the_chain_in_eval_mode():
    torch.manual_seed(0)
    conv = RepConv(4, 6)
    with torch.no_grad():
        for m in conv.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_()
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
    conv.eval()
    x = torch.randn(3, 4, 5, 7)
    chain = conv(x)
    fused = conv.fused_conv()
    assert fused.kernel_size == (3, 3) and fused.padding == (1, 1)
    assert torch.allclose(fused(x), chain, atol=1e-4, rtol=1e-5)
    conv.reparameterize()
    assert torch.allclose(conv(x), chain, atol=1e-4, rtol=1e-5)
    assert sum(p.numel() for p in conv.parameters()) == 6 * 4 * 9 + 6


def test_repconv_parameter_count():
    # C_in^2 + 2 C_in (BN) + 9 C_in (depthwise) + C_in C_out + 2 C_out (BN), reference/models.md 4.3
    assert sum(p.numel() for p in RepConv(8, 5).parameters()) == 64 + 16 + 72 + 40 + 10


@pytest.mark.parametrize("name", ["sdsa1", "sdsa2", "sdsa3", "sdsa4"])
def test_config_files_build_through_the_factory(name):
    node = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    assert node.pop("name") == name
    attn = AttentionFactory(name, **node)(dim=16, heads=2, neuron=IF)
    assert attn.attn_threshold == node["attn_threshold"] and attn.emits == "membrane"
    x = (torch.rand(1, 2, 4, 16) > 0.5).float()
    assert attn(x, (2, 2)).shape == x.shape


def test_unknown_generator_is_a_config_error():
    with pytest.raises(ConfigError, match="linear, repconv"):
        ATTENTIONS.build("sdsa3", dim=8, heads=2, neuron=IF, qkv="conv5")


@pytest.mark.parametrize(("name", "kw", "message"), [
    ("sdsa1", {"dim": 10, "heads": 3}, "sdsa1: dim 10 is not divisible by heads 3."),
    ("sdsa2", {"dim": 8, "heads": 3}, "sdsa2: dim 8 is not divisible by heads 3."),
    ("sdsa1", {"pooling": "max"}, "sdsa1: pooling must be one of none, erode, got 'max'."),
    ("sdsa3", {"threshold_scale": 0.0}, "sdsa3: threshold_scale must be > 0, got 0.0."),
    ("sdsa4", {"threshold_scale": -1.0}, "sdsa4: threshold_scale must be > 0, got -1.0."),
    ("sdsa4", {"proj": "conv5"}, "sdsa4: generator 'conv5' is not one of linear, repconv."),
    ("sdsa2", {"qkv": "conv3"}, "sdsa2: generator 'conv3' is not one of linear, repconv."),
])
def test_each_refusal_names_the_variant_and_the_valid_values(name, kw, message):
    with pytest.raises(ConfigError) as err:
        ATTENTIONS.build(name, **{"dim": 8, "heads": 2, "neuron": IF, **kw})
    assert str(err.value) == message


def test_generators_and_neurons_each_variant_builds():
    for name, has_key in (("sdsa1", True), ("sdsa2", False), ("sdsa3", True), ("sdsa4", True)):
        attn = ATTENTIONS.build(name, dim=8, heads=2, neuron=IF, qkv="linear", proj="linear")
        assert hasattr(attn, "k") == hasattr(attn, "k_lif") == has_key == attn.uses_key
        assert attn.q.linear.bias is None and attn.v.linear.bias is None and attn.proj.linear.bias is not None
        assert attn.heads == 2 and (attn.qkv_kind, attn.proj_kind) == ("linear", "linear")
    rep = ATTENTIONS.build("sdsa3", dim=8, heads=2, neuron=IF)
    assert type(rep.q).__name__ == type(rep.proj).__name__ == "TokenRepConvBN"  # the paper's default


def test_extra_repr_shows_the_generators_and_a_pooling_other_than_none():
    assert ATTENTIONS.build("sdsa3", dim=8, heads=2, neuron=IF).extra_repr() == \
        "heads=2, qkv='repconv', proj='repconv'"
    assert ATTENTIONS.build("sdsa1", dim=8, heads=2, neuron=IF).extra_repr() == "heads=2, qkv='linear', proj='linear'"
    assert ATTENTIONS.build("sdsa1", dim=8, heads=2, neuron=IF, pooling="erode").extra_repr() == \
        "heads=2, qkv='linear', proj='linear', pooling='erode'"


def test_the_attention_neurons_thresholds_and_what_they_declare():
    """check_nodes reads neuron_overrides to tell a deliberate threshold from a config that did not arrive."""
    s3 = ATTENTIONS.build("sdsa3", dim=8, heads=2, neuron=IF, threshold_scale=4.0, attn_threshold=0.25)
    assert s3.attn_lif.v_threshold == 1.0 and s3.neuron_overrides() == {"attn_lif": {"v_threshold": 1.0}}
    literal = ATTENTIONS.build("sdsa3", dim=8, heads=2, neuron=IF, threshold_scale=4.0, attn_threshold=0.25,
                               merge_scale=False)
    assert literal.attn_lif.v_threshold == 0.25 and literal.neuron_overrides() == {"attn_lif": {"v_threshold": 0.25}}
    s4 = ATTENTIONS.build("sdsa4", dim=8, heads=2, neuron=IF, threshold_scale=4.0, attn_threshold=0.25)
    assert s4.neuron_overrides() == {"attn_lif": {"v_threshold": 1.0, "learnable_threshold": True}}
    for name, th in (("sdsa1", 0.75), ("sdsa2", 0.75)):
        attn = ATTENTIONS.build(name, dim=8, heads=2, neuron=IF, attn_threshold=th)
        assert attn.attn_lif.v_threshold == th and attn.attn_threshold == th


@pytest.mark.parametrize("pooling", ["none", "erode"])
def test_sdsa1_hands_the_token_grid_to_repconv_generators(pooling):
    """With RepConv generators SDSA-1 must pass the grid on to every generator (without it RepConv
    refuses: it cannot lay tokens out as maps)."""
    torch.manual_seed(0)
    attn = ATTENTIONS.build("sdsa1", dim=4, heads=2, neuron=IF, qkv="repconv", proj="repconv", pooling=pooling).eval()
    x = (torch.rand(1, 2, 6, 4) > 0.5).float()
    y = attn(x, (2, 3))
    assert y.shape == x.shape


def test_sdsa2_token_sum_is_counted_per_step_and_sample():
    from step.energy import EnergyMeter

    if2 = NeuronFactory("if", T=2, v_threshold=1.0, v_reset=0.0, surrogate="atan", alpha=2.0)
    attn = ATTENTIONS.build("sdsa2", dim=4, heads=2, neuron=if2, qkv="linear", proj="linear").eval()
    meter = EnergyMeter(attn, T=2)
    with meter, torch.inference_mode():
        attn((torch.rand(2, 3, 5, 4) > 0.5).float(), (1, 5))
    row = next(r for r in meter.report().table.layers if r.name == "q_sum")
    assert row.macs == 2 * 5 * 2 and row.steps == 2  # per sample and step: heads x N x d


def test_defaults_thresholds_and_an_accepted_small_scale():
    for name in ("sdsa1", "sdsa2", "sdsa4"):
        attn = ATTENTIONS.build(name, dim=8, heads=2, neuron=IF)
        assert attn.attn_threshold == 0.5  # SDT v1's talking-heads threshold; the paper's u_th
    assert ATTENTIONS.build("sdsa4", dim=8, heads=2, neuron=IF).attn_lif.v_threshold == 4.0  # s 8 x u_th 0.5
    for s in (1.0, 0.5):  # any positive scale
        assert ATTENTIONS.build("sdsa3", dim=8, heads=2, neuron=IF, threshold_scale=s).threshold_scale == s


def test_sdsa1_erode_token_sum_is_counted_per_step_and_sample():
    from step.energy import EnergyMeter

    if2 = NeuronFactory("if", T=2, v_threshold=1.0, v_reset=0.0, surrogate="atan", alpha=2.0)
    attn = ATTENTIONS.build("sdsa1", dim=4, heads=2, neuron=if2, pooling="erode").eval()
    meter = EnergyMeter(attn, T=2)
    with meter, torch.inference_mode():
        attn((torch.rand(2, 3, 6, 4) > 0.5).float(), (2, 3))
    row = next(r for r in meter.report().table.layers if r.name == "kv_sum")
    assert row.macs == 2 * 6 * 2 and row.steps == 2  # per sample and step: heads x N x d
