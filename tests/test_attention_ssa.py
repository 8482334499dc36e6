"""Spikformer's SSA against outputs worked by hand (Zhou et al., ICLR 2023, Eq. 10-12).

SSA computes Y = SN_{0.5}(Q K^T V * 0.125), out = SN(BN(Linear(Y))). The cases use the native IF
neuron at T=1 (it fires iff its input reaches its threshold), Linear weights set to chosen 0/1
matrices and BN in eval mode at unit statistics (eps 0), so every number below is checked on
paper and no SpikingJelly code is involved. Q, K, V and the output projection are then plain
spike copies of chosen matrices, and the attention neuron is the only thresholding that matters.

The input, 3 tokens x 4 channels::

    X = [[0, 1, 1, 0],      Q = V = X
         [1, 1, 1, 0],      K = X with channels rolled left: k[c] = x[(c + 1) % 4]
         [0, 1, 0, 1]]        = [[1, 1, 0, 0], [1, 1, 0, 1], [1, 0, 1, 0]]

One head:  Q K^T = [[1, 1, 1],          (Q K^T) V = [[1, 3, 2, 1],
                    [2, 2, 2],                       [2, 6, 4, 2],
                    [1, 2, 0]]                       [2, 3, 3, 0]]
x 0.125 -> token 1 holds [0.25, 0.75, 0.5, 0.25]; the rest stay below 0.5, so only token 1's
channels 1 and 2 fire. K Q^T instead gives (K Q^T) V = [[2, 4, 3, 1], [2, 5, 3, 2], [2, 3, 3, 0]]
(token 0 channel 1 would fire); without the scale every non-zero entry fires; at threshold 1
nothing does.

Two heads (channels 0-1 and 2-3 attend separately): head A: Q_A K_A^T = [[1, 1, 0], [2, 2, 1],
[1, 1, 0]], times V_A = [[0, 1], [1, 1], [0, 1]] is [[1, 2], [2, 5], [1, 2]] -> only token 1
channel 1 reaches 5 / 8 >= 0.5; head B: Q_B K_B^T = [[0, 0, 1], [0, 0, 1], [0, 1, 0]], times
V_B = [[1, 0], [1, 0], [0, 1]] is [[0, 1], [0, 1], [1, 0]] -> nothing reaches 4.
"""

import pytest
import torch
from torch import nn

from step.neurons.factory import NeuronFactory
from step.registry import ATTENTIONS

IF = NeuronFactory("if", T=1, v_threshold=1.0, v_reset=0.0, surrogate="atan", alpha=2.0, backend="native")
X = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
ROLL_LEFT = torch.roll(torch.eye(4), 1, dims=1)  # (x @ ROLL_LEFT.T)[c] = x[(c + 1) % 4]
ONE_HEAD = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
TWO_HEADS = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


@torch.no_grad()
def _as_matrix(gen: nn.Module, w: torch.Tensor) -> None:
    """Make a LinearBN compute exactly ``x @ w.T`` (unit BN statistics, eval mode, zero bias)."""
    gen.linear.weight.copy_(w)
    if gen.linear.bias is not None:
        gen.linear.bias.zero_()
    bn = gen.bn
    bn.eps = 0.0
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0)
    bn.weight.fill_(1.0)
    bn.bias.zero_()


def _ssa(heads: int = 1, **kw) -> nn.Module:
    attn = ATTENTIONS.build("ssa", dim=4, heads=heads, neuron=IF, **kw).eval()
    for gen, w in ((attn.q, torch.eye(4)), (attn.k, ROLL_LEFT), (attn.v, torch.eye(4)), (attn.proj, torch.eye(4))):
        _as_matrix(gen, w)
    return attn


def _run(attn: nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        return attn(x[None, None])[0, 0]  # T = B = 1


def test_ssa_defaults_are_the_papers_scale_and_attention_threshold():
    attn = ATTENTIONS.build("ssa", dim=4, heads=1, neuron=IF)
    assert attn.scale == 0.125 and attn.attn_threshold == 0.5 and attn.attn_lif.v_threshold == 0.5
    assert attn.q_lif.v_threshold == 1.0  # the other neurons keep the factory's threshold


def test_ssa_one_head_by_hand():
    assert torch.equal(_run(_ssa()), ONE_HEAD)


def test_ssa_two_heads_attend_separately_by_hand():
    assert torch.equal(_run(_ssa(heads=2)), TWO_HEADS)


@pytest.mark.parametrize("scale,threshold,expected", [
    # without the scale (1.0), every non-zero entry of (Q K^T) V reaches 0.5
    (1.0, 0.5, [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]]),
    # scale 0.125 and threshold 0.75 (= 6 / 8): only the 6 of token 1
    (0.125, 0.75, [[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]),
    # threshold 0.25 (= 2 / 8): every entry >= 2
    (0.125, 0.25, [[0, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 0]]),
])
def test_ssa_scale_and_threshold_move_the_firing_set_by_hand(scale, threshold, expected):
    out = _run(_ssa(scale=scale, attn_threshold=threshold))
    assert torch.equal(out, torch.tensor(expected, dtype=torch.float32))


def test_ssa_is_per_sample_and_token_equivariant():
    """Batch of two: the second sample is the first with its tokens in reverse order, so its
    output is the first output's rows reversed (attention without position is equivariant)."""
    attn = _ssa()
    x = torch.stack([X, X.flip(0)])[None]  # [T=1, B=2, N=3, D=4]
    with torch.no_grad():
        out = attn(x)[0]
    assert torch.equal(out[0], ONE_HEAD) and torch.equal(out[1], ONE_HEAD.flip(0))


def test_ssa_products_go_through_counted_modules_in_order():
    """Q K^T is taken first (qk: [N, d] x [d, N]), then (.) V (av: [N, N] x [N, d])."""
    attn = _ssa()
    seen = {}
    for name in ("qk", "av"):
        def keep(module, args, out, name=name):
            seen[name] = (args[0].clone(), args[1].clone())

        getattr(attn, name).register_forward_hook(keep)
    _run(attn)
    q, kt = seen["qk"]
    assert torch.equal(q[0, 0, 0], X) and torch.equal(kt[0, 0, 0], (X @ ROLL_LEFT.T).T)
    scores, v = seen["av"]
    assert torch.equal(scores[0, 0, 0], torch.tensor([[1.0, 1, 1], [2, 2, 2], [1, 2, 0]]) * 0.125)
    assert torch.equal(v[0, 0, 0], X)


def test_frozen_qk_still_computes_the_same_attention():
    attn = _ssa(freeze_qk=True)
    assert not any(p.requires_grad for p in (*attn.q.parameters(), *attn.k.parameters()))
    assert all(p.requires_grad for p in attn.v.parameters())
    assert torch.equal(_run(attn), ONE_HEAD)


def test_ssa_rejects_a_width_its_heads_do_not_divide():
    with pytest.raises(ValueError, match="ssa: dim 6 is not divisible by heads 4"):
        ATTENTIONS.build("ssa", dim=6, heads=4, neuron=IF)


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_qkv_bias_switches_the_q_k_v_biases_only(qkv_bias):
    """Spikformer's ImageNet model has bias-free Q/K/V; the output projection keeps its bias."""
    attn = ATTENTIONS.build("ssa", dim=4, heads=1, neuron=IF, qkv_bias=qkv_bias)
    assert [getattr(attn, n).linear.bias is not None for n in ("q", "k", "v", "proj")] == [qkv_bias] * 3 + [True]
    biased = ATTENTIONS.build("ssa", dim=4, heads=1, neuron=IF, qkv_bias=True)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(biased) - n(attn) == (0 if qkv_bias else 3 * 4)


def _constant_projection(attn, value: float) -> None:
    """proj outputs ``value`` everywhere (zero weight, bias ``value``, BN the identity)."""
    attn.eval()
    with torch.no_grad():
        attn.proj.linear.weight.zero_()
        attn.proj.linear.bias.fill_(value)
        attn.proj.bn.running_mean.zero_()
        attn.proj.bn.running_var.fill_(1.0)
        attn.proj.bn.eps = 0.0


def test_the_output_neuron_runs_over_time_per_sample_by_default_and_over_the_folded_batch_as_released():
    """proj gives 0.6 everywhere, the output IF fires at 1. Per sample (the paper): time steps 0.6, 1.2,
    so every sample fires at t=1 only. QKFormer's released stage 3 (proj_lif_over_batch): one sequence
    (t0,b0), (t0,b1), (t1,b0), (t1,b1) of 0.6, 1.2 (fires, resets), 0.6, 1.2: the second sample fires
    at both steps, the first at none: a sample's output depends on the one before it."""
    if2 = NeuronFactory("if", T=2, v_threshold=1.0, v_reset=0.0, surrogate="atan", alpha=2.0, backend="native")
    x = torch.zeros(2, 2, 3, 4)  # T=2, B=2, N=3, D=4
    paper = ATTENTIONS.build("ssa", dim=4, heads=2, neuron=if2)
    released = ATTENTIONS.build("ssa", dim=4, heads=2, neuron=if2, proj_lif_over_batch=True)
    assert paper.proj_lif_over_batch is False and released.proj_lif_over_batch is True
    assert paper.proj_lif.T == 2 and released.proj_lif.T is None  # the folded sequence has T*B steps
    for attn in (paper, released):
        assert attn.proj.linear.bias is not None
        _constant_projection(attn, 0.6)
    with torch.no_grad():
        per_sample, folded = paper(x), released(x)
    assert per_sample.shape == folded.shape == x.shape
    assert per_sample[:, :, 0, 0].tolist() == [[0.0, 0.0], [1.0, 1.0]]  # [t][b]
    assert folded[:, :, 0, 0].tolist() == [[0.0, 1.0], [0.0, 1.0]]
    assert bool((folded == folded[:, :, :1, :1]).all())  # every token and channel alike


def test_ssa_declares_the_neuron_values_it_sets_on_purpose():
    assert ATTENTIONS.build("ssa", dim=4, heads=2, neuron=IF, attn_threshold=0.75).neuron_overrides() == {
        "attn_lif": {"v_threshold": 0.75}}
    assert ATTENTIONS.build("ssa", dim=4, heads=2, neuron=IF, proj_lif_over_batch=True).neuron_overrides() == {
        "attn_lif": {"v_threshold": 0.5}, "proj_lif": {"T": None}}
