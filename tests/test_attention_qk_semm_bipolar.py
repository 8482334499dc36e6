"""Q-K token/channel, bipolar, SEMM and softmax attention against hand-computed outputs.

Every Linear+BN pair is set by hand (BN in eval with unit statistics and eps 0, so it is the
identity); neurons are IF at T=1 with threshold 1, so a node fires exactly where its input >= 1.
"""

import math

import pytest
import torch

from step.attention.bipolar import shiftmax
from step.layers.linear_bn import LinearBN
from step.neurons import NeuronFactory
from step.registry import ATTENTIONS

IF1 = NeuronFactory("if", T=1, surrogate="atan", alpha=2.0, v_threshold=1.0, v_reset=0.0)
RELU = NeuronFactory("relu", T=1)


def set_linear(layer: LinearBN, weight) -> None:
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        if layer.linear.bias is not None:
            layer.linear.bias.zero_()
    layer.bn.eps = 0.0
    layer.bn.eval()


def tokens(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)[None, None]  # [T=1, B=1, N, C]


def test_qk_token_masks_tokens_of_k_per_head():
    attn = ATTENTIONS.build("qk_token", dim=4, heads=2, neuron=IF1, mask_threshold=1.5).eval()
    eye = torch.eye(4).tolist()
    for layer in (attn.q, attn.k):
        set_linear(layer, eye)
    set_linear(attn.proj, (2 * torch.eye(4)).tolist())  # output spikes = the masked K
    x = tokens([[2, 2, 0, 2], [0, 2, 2, 0]])  # Q = K = [[1,1,0,1],[0,1,1,0]]
    # head sums of Q: token 0 -> (2, 1), token 1 -> (1, 1); threshold 1.5 keeps only (token 0, head 0)
    assert torch.equal(attn(x, (1, 2)), tokens([[1, 1, 0, 0], [0, 0, 0, 0]]))
    attn.mask_lif = IF1(v_threshold=0.5)  # the released threshold: every head with a spike passes
    assert torch.equal(attn(x, (1, 2)), tokens([[1, 1, 0, 1], [0, 1, 1, 0]]))


def test_qk_channel_masks_channels_of_k():
    attn = ATTENTIONS.build("qk_channel", dim=3, heads=1, neuron=IF1, mask_threshold=1.5).eval()
    set_linear(attn.q, torch.eye(3).tolist())
    set_linear(attn.k, [[0, 1, 0], [1, 0, 0], [0, 0, 1]])  # K swaps channels 0 and 1
    set_linear(attn.proj, (2 * torch.eye(3)).tolist())
    x = tokens([[2, 0, 2], [2, 2, 0]])  # Q = [[1,0,1],[1,1,0]], K = [[0,1,1],[1,1,0]]
    # token sums of Q = (2, 1, 1) -> channel mask (1, 0, 0)
    assert torch.equal(attn(x, (1, 2)), tokens([[0, 0, 0], [1, 0, 0]]))


def test_shiftmax_is_a_power_of_two_softmax():
    ln2 = math.log(2.0)  # z * log2(e) = integers: the exponents are exact
    a = shiftmax(torch.tensor([[1.0, 1.0, 1.0], [3.0, 0.0, 1.0]]) * ln2)
    # row 0: 2^0 each, sum 3, 2^round(log2 3) = 4; row 1: exponents (0, -3, -2), sum 1.375 -> 2^0
    assert torch.equal(a, torch.tensor([[0.25, 0.25, 0.25], [1.0, 0.125, 0.25]]))
    z = torch.randn(5, 7, generator=torch.Generator().manual_seed(0)) * 3
    a = shiftmax(z)
    log2a = torch.log2(a)
    assert torch.equal(log2a, torch.round(log2a))  # every entry is a power of two
    rows = a.sum(-1)
    assert ((rows >= 2 ** -0.5 - 1e-6) & (rows <= 2 ** 0.5 + 1e-6)).all()
    top = a.gather(-1, z.argmax(-1, keepdim=True))
    assert torch.equal(top, a.amax(-1, keepdim=True))  # order kept (ties from rounding allowed)


def test_bipolar_ternary_scores_and_shiftmax():
    attn = ATTENTIONS.build("bipolar", dim=2, heads=1, neuron=IF1, scale=math.log(2.0)).eval()
    set_linear(attn.q, [[1, 0], [0, 1]])
    set_linear(attn.k, [[1, 0], [0, 1]])
    set_linear(attn.v, [[1, 0], [0, -1]])
    set_linear(attn.proj, [[2, 0], [0, 2]])
    seen = {}
    attn.qk.register_forward_hook(lambda m, i, o: seen.update(q=i[0], scores=o))
    attn.av.register_forward_hook(lambda m, i, o: seen.update(a=i[0], y=o))
    x = tokens([[2, -2], [-2, 0]])
    out = attn(x, (1, 2))
    assert torch.equal(seen["q"][0, 0, 0], torch.tensor([[1.0, -1.0], [-1.0, 0.0]]))  # ternary spikes
    assert torch.equal(seen["scores"][0, 0, 0], torch.tensor([[2.0, -1.0], [-1.0, 1.0]]))  # ternary Q K^T
    # exponents (0, -3) and (-2, 0); row sums 1.125 and 1.25 round to 2^0
    assert torch.equal(seen["a"][0, 0, 0], torch.tensor([[1.0, 0.125], [0.25, 1.0]]))
    # V = [[1, 1], [0, 0]] -> Y = [[1, 1], [0.25, 0.25]] -> attention neuron (0.5) -> [[1, 1], [0, 0]]
    assert torch.allclose(seen["y"][0, 0, 0], torch.tensor([[1.0, 1.0], [0.25, 0.25]]))
    assert torch.equal(out, tokens([[1, 1], [0, 0]]))


def test_semm_router_gates_expert_attentions():
    attn = ATTENTIONS.build("semm", dim=2, heads=1, neuron=IF1, expert_dim=2, num_expert=2, scale=2.0).eval()
    set_linear(attn.k, [[1, 0], [0, 1]])
    set_linear(attn.v, [[1, 0], [0, 1]])
    set_linear(attn.router, [[1, 0], [1, 1]])  # R = [[1, 1], [0, 1]]
    set_linear(attn.expert_q[0], [[1, 0], [0, 1]])  # Q_0 = I
    set_linear(attn.expert_q[1], [[0, 1], [1, 0]])  # Q_1 = swap
    set_linear(attn.proj, [[2, 0], [0, 2]])
    x = tokens([[2, 0], [0, 2]])  # K = V = I
    # O_0 = SN(2 I) = I, O_1 = SN(2 swap) = swap; Y = R0 O_0 + R1 O_1 = [[1, 1], [1, 0]]
    assert torch.equal(attn(x, (1, 2)), tokens([[1, 1], [1, 0]]))


def test_softmax_attention_is_real_valued_sdpa():
    attn = ATTENTIONS.build("softmax", dim=2, heads=1, neuron=RELU, scale=1.0).eval()
    for layer in (attn.q, attn.k, attn.v, attn.proj):
        set_linear(layer, [[1, 0], [0, 1]])
    e = math.e
    out = attn(tokens([[1, 0], [0, 1]]), (1, 2))
    want = tokens([[e / (e + 1), 1 / (e + 1)], [1 / (e + 1), e / (e + 1)]])
    assert torch.allclose(out, want, atol=1e-6)
    assert ATTENTIONS.build("softmax", dim=8, heads=2, neuron=RELU).scale == pytest.approx(0.5)  # d_h^-1/2


@pytest.mark.parametrize("name", ["qk_token", "qk_channel", "bipolar", "semm", "softmax"])
def test_output_shape_and_spikes(name):
    f = NeuronFactory("lif", T=2, surrogate="atan", alpha=2.0)
    kwargs = {"expert_dim": 4} if name == "semm" else {}
    attn = ATTENTIONS.build(name, dim=8, heads=2, neuron=f, **kwargs)
    out = attn(torch.rand(2, 3, 6, 8) * 3, (2, 3))
    assert out.shape == (2, 3, 6, 8)
    assert set(out.unique().tolist()) <= {0.0, 1.0}  # every variant ends in the run's neuron


@pytest.mark.parametrize(("name", "kw", "message"), [
    ("qk_token", {"dim": 10, "heads": 3}, "QKTokenAttention: dim 10 is not divisible by heads 3"),
    ("qk_channel", {"dim": 9, "heads": 2}, "QKChannelAttention: dim 9 is not divisible by heads 2"),
    ("bipolar", {"dim": 10, "heads": 4}, "bipolar: dim 10 is not divisible by heads 4"),
    ("semm", {"expert_dim": 0}, "semm: expert_dim and num_expert must be >= 1, got 0, 4"),
    ("semm", {"num_expert": 0}, "semm: expert_dim and num_expert must be >= 1, got 96, 0"),
])
def test_each_refusal_names_the_attention_and_the_values(name, kw, message):
    with pytest.raises(ValueError) as err:
        ATTENTIONS.build(name, **{"dim": 8, "heads": 2, "neuron": IF1, **kw})
    assert str(err.value) == message


def test_options_reach_the_layers_they_name():
    for name in ("qk_token", "qk_channel"):
        plain = ATTENTIONS.build(name, dim=8, heads=2, neuron=IF1)
        assert plain.q.linear.bias is None and plain.k.linear.bias is None and plain.proj.linear.bias is not None
        assert plain.mask_lif.v_threshold == 0.5 and plain.heads == 2  # the released attn_lif threshold
        biased = ATTENTIONS.build(name, dim=8, heads=2, neuron=IF1, qk_bias=True, mask_threshold=0.25)
        assert biased.q.linear.bias is not None and biased.k.linear.bias is not None
        assert biased.mask_lif.v_threshold == 0.25 and biased.mask_threshold == 0.25
    bsa = ATTENTIONS.build("bipolar", dim=8, heads=2, neuron=IF1, scale=0.25, attn_threshold=0.75, qkv_bias=False)
    assert (bsa.scale, bsa.attn_threshold, bsa.attn_lif.v_threshold) == (0.25, 0.75, 0.75)
    assert all(getattr(bsa, n).linear.bias is None for n in ("q", "k", "v")) and bsa.proj.linear.bias is not None
    semm = ATTENTIONS.build("semm", dim=8, heads=2, neuron=IF1, expert_dim=6, num_expert=3, scale=0.5, qkv_bias=False)
    assert (semm.expert_dim, semm.num_expert, semm.scale) == (6, 3, 0.5)
    assert len(semm.expert_q) == len(semm.expert_q_lif) == len(semm.expert_lif) == 3
    assert semm.k.linear.out_features == 6 and semm.router.linear.out_features == 3
    assert semm.k.linear.bias is None and semm.router.linear.bias is not None
    assert semm.v.linear.bias is None and all(q.linear.bias is None for q in semm.expert_q)


def test_emsp_routes_one_half_by_a_depthwise_3x3_of_the_other_worked_by_hand():
    """EMSP on a 1 x 4 token grid: fc1 copies x into the first half and fires the second half
    everywhere (bias 1); the depth-wise 3x3 of ones sums each channel over a token and its grid
    neighbours; its BN subtracts 0.5 (running mean), so the routing neuron fires where that sum >= 2;
    the gate keeps those places of the all-ones half; fc2 is the identity."""
    from step.attention.semm import ExpertsMixtureMLP

    mlp = ExpertsMixtureMLP(dim=2, hidden=4, neuron=IF1).eval()
    set_linear(mlp.fc1, [[1, 0], [0, 1], [0, 0], [0, 0]])
    set_linear(mlp.fc2, [[1, 0], [0, 1]])
    with torch.no_grad():
        mlp.fc1.linear.bias.copy_(torch.tensor([0.0, 0.0, 1.0, 1.0]))
        conv, bn = mlp.dw.body if hasattr(mlp.dw, "body") else (mlp.dw[0], mlp.dw[1])
        conv.weight.fill_(1.0)
        bn.eps, bn.running_mean[:], bn.running_var[:] = 0.0, 0.5, 1.0
    assert conv.groups == 2 and conv.bias is None and conv.padding == (1, 1)
    x = torch.tensor([[[1, 0], [0, 0], [1, 0], [0, 1]],
                      [[1, 1], [1, 1], [0, 0], [0, 1]]], dtype=torch.float32)[None]  # T=1, B=2, N=4, C=2
    expected = torch.zeros(1, 2, 4, 2)
    for b in range(2):
        for j in range(4):
            for c in range(2):
                around = sum(x[0, b, i, c].item() for i in (j - 1, j, j + 1) if 0 <= i < 4)
                expected[0, b, j, c] = float(around - 0.5 >= 1.0)
    with torch.no_grad():
        out = mlp(x, (1, 4))
    assert torch.equal(out, expected)
    assert expected.sum() > 0 and not torch.equal(expected, x)  # the case exercises the routing


def test_emsp_refusals_name_the_value():
    from step.attention.semm import ExpertsMixtureMLP

    with pytest.raises(ValueError) as err:
        ExpertsMixtureMLP(dim=2, hidden=5, neuron=IF1)
    assert str(err.value) == "EMSP needs an even hidden width, got 5"
    with pytest.raises(ValueError) as err:
        ExpertsMixtureMLP(dim=2, hidden=4, neuron=IF1)(torch.zeros(1, 1, 4, 2), (3, 3))
    assert str(err.value) == "EMSP: token grid (3, 3) does not hold 4 tokens"


@pytest.mark.parametrize("name", ["qk_token", "qk_channel"])
def test_qk_masks_run_in_the_inputs_dtype(name):
    attn = ATTENTIONS.build(name, dim=4, heads=2, neuron=IF1).double().eval()
    out = attn(torch.ones(1, 2, 3, 4, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (1, 2, 3, 4)


def test_shiftmax_is_finite_far_from_zero_and_normalises_each_row_by_its_own_maximum():
    z = torch.tensor([[200.0, 199.0, 190.0], [0.0, -1.0, -10.0]])
    out = shiftmax(z)
    assert torch.isfinite(out).all()  # 2^(z log2 e) alone would overflow float32 in the first row
    assert torch.equal(out[0], shiftmax(z[:1])[0]) and torch.equal(out[1], shiftmax(z[1:])[0])  # row by row
    assert out[0, 0] > out[0, 1] > out[0, 2] > 0 and out[1, 0] > out[1, 1] > out[1, 2] > 0


def test_bipolar_heads_attend_separately_and_are_merged_back_in_channel_order():
    torch.manual_seed(0)
    attn = ATTENTIONS.build("bipolar", dim=4, heads=2, neuron=IF1).eval()
    set_linear(attn.v, torch.eye(4).tolist())  # V = the input's spikes, so tokens and heads differ
    x = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.float32)[None, None] * 2.0
    seen = []
    attn.attn_lif.register_forward_hook(lambda mod, args, out: seen.append(args[0].clone()))
    with torch.no_grad():
        out = attn(x)
        q = attn.ternary(attn.q_pos_lif, attn.q_neg_lif, attn.q(x))
        k = attn.ternary(attn.k_pos_lif, attn.k_neg_lif, attn.k(x))
        v = attn.v_lif(attn.v(x))
        y = torch.cat([shiftmax(q[..., h * 2:(h + 1) * 2] @ k[..., h * 2:(h + 1) * 2].transpose(-2, -1) * attn.scale)
                       @ v[..., h * 2:(h + 1) * 2] for h in range(2)], dim=-1)
        expected = attn.proj_lif(attn.proj(attn.attn_lif(y)))
    heads_first = torch.stack([y[..., h * 2:(h + 1) * 2] for h in range(2)], dim=2)  # [T, B, h, N, d]
    assert not torch.equal(heads_first.reshape(y.shape), y)  # merging without moving heads back would differ
    assert torch.equal(seen[0], y) and torch.equal(out, expected)  # what the attention neuron reads, then the output


def test_semm_released_router_reads_the_folded_layout_as_tokens_by_experts():
    """STEP's released SEMM reshapes the router's [T*B, m, N] output as [T, B, N, m]: the router
    neuron sees that reordering, not the router output itself."""
    torch.manual_seed(0)
    attn = ATTENTIONS.build("semm", dim=4, heads=2, neuron=IF1, expert_dim=4, num_expert=2,
                            released_router_reshape=True).eval()
    seen = []
    attn.router_lif.register_forward_hook(lambda mod, args, out: seen.append(args[0].clone()))
    x = (torch.rand(1, 2, 3, 4) > 0.5).float()
    with torch.no_grad():
        attn(x)
        route = attn.router(x)
    assert torch.equal(seen[0], route.transpose(-1, -2).reshape(1, 2, 3, 2))
    assert not torch.equal(seen[0], route)


def test_defaults_are_the_published_scale_biased_qkv_and_single_width_experts_are_allowed():
    bsa = ATTENTIONS.build("bipolar", dim=4, heads=2, neuron=IF1)
    assert bsa.scale == 0.125 and bsa.attn_threshold == 0.5
    assert all(getattr(bsa, n).linear.bias is not None for n in ("q", "k", "v"))
    semm = ATTENTIONS.build("semm", dim=4, heads=2, neuron=IF1)
    assert (semm.scale, semm.expert_dim, semm.num_expert, semm.released_router_reshape) == (0.125, 96, 4, False)
    assert semm.k.linear.bias is not None and semm.v.linear.bias is not None
    assert all(q.linear.bias is not None for q in semm.expert_q) and semm.proj.linear.bias is not None
    assert ATTENTIONS.build("semm", dim=4, heads=2, neuron=IF1, expert_dim=1, num_expert=1).expert_dim == 1


def test_emsp_pads_any_odd_kernel_to_keep_the_grid():
    from step.attention.semm import ExpertsMixtureMLP

    mlp = ExpertsMixtureMLP(dim=2, hidden=4, neuron=IF1, kernel_size=5).eval()
    conv = mlp.dw.body[0] if hasattr(mlp.dw, "body") else mlp.dw[0]
    assert conv.kernel_size == (5, 5) and conv.padding == (2, 2)
    assert mlp(torch.ones(1, 2, 6, 2), (2, 3)).shape == (1, 2, 6, 2)
