"""The neuron op ``step::lif_forward`` / ``step::lif_backward`` (step/neurons/lif_op.py): registered
with torch.library so that autograd and torch.compile see one node; its backward is the autograd
loop's, bit for bit, for every neuron it serves (IF, LIF, PLIF, integer LIF), reset and detach mode."""

from __future__ import annotations

import itertools

import pytest
import torch

import step  # noqa: F401
from step import native
from step.components import default_neuron_factory
from step.neurons import lif_op
from step.neurons.base import SpikingNeuron
from step.registry import MODELS, NEURONS


@pytest.fixture(autouse=True)
def _fresh_selection():
    native.select(None)
    yield
    native.select(None)


def _data(shape=(4, 3, 257), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * 1.5, torch.randn(*shape, generator=g), torch.randn(*shape[1:], generator=g)


def _run(neuron, fn, x0, g, gv):
    neuron.zero_grad()
    x = x0.clone().requires_grad_()
    s, v = fn(x)
    ((s * g).sum() + (v * gv).sum()).backward()
    return s.detach(), v.detach(), x.grad, [p.grad for p in neuron.parameters() if p.grad is not None]


@pytest.mark.parametrize("name", ["lif", "if", "plif", "ilif"])
@pytest.mark.parametrize("kernel", ["auto", "torch"])
def test_op_equals_the_autograd_loop(name, kernel):
    native.select(kernel)
    x, g, gv = _data(seed=hash(name) % 100)
    for reset, decay_input, detach, sur in itertools.product([0.0, None, -0.2], [True, False], [True, False],
                                                             ["atan", "sigmoid", "triangle"]):
        n = NEURONS.build(name, tau=3.0, v_threshold=0.8, v_reset=reset, decay_input=decay_input,
                          detach_reset=detach, surrogate=sur)
        fused, loop = _run(n, n.run, x, g, gv), _run(n, lambda t: SpikingNeuron.run(n, t), x, g, gv)
        assert fused[0].sum() > 0 and fused[2].abs().sum() > 0
        for a, b in zip(fused[:3], loop[:3]):
            assert torch.equal(a, b), (name, reset, decay_input, detach, sur)
        for a, b in zip(fused[3], loop[3]):  # PLIF's decay: one sum over T x N terms, summed in another order
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_the_op_is_one_registered_node_with_fake_and_autograd():
    assert hasattr(torch.ops.step, "lif_forward") and hasattr(torch.ops.step, "lif_backward")
    x = torch.randn(4, 2, 6, requires_grad=True)
    for args in ((None, 2.0, True, 1.0, 0.0, True, 0, "atan", 2.0, "c:x"),
                 (None, None, True, 1.0, None, False, 0, "sigmoid", 4.0, "torch:h"),
                 (torch.tensor(0.4, requires_grad=True), None, False, 0.9, 0.0, True, 0, "triangle", 1.0, "torch:x"),
                 (None, 2.0, True, 1.0, 0.0, True, 3, "atan", 2.0, "torch:h")):
        torch.library.opcheck(torch.ops.step.lif_forward.default, (x, *args))


def test_what_each_plan_keeps_for_the_backward():
    x = torch.randn(4, 3, 8, requires_grad=True)
    sur = NEURONS.build("lif").surrogate
    assert lif_op.plan(x, None, 0, "atan", 2.0, True, True) == "c:x"  # the C backward reruns H from X
    assert lif_op.plan(x, None, 0, "sigmoid", 4.0, True, True) == "c:u"
    assert lif_op.plan(x, None, 0, "triangle", 1.0, True, True) == "c:h"
    assert lif_op.plan(x, None, 0, "atan", 2.0, False, True) == "c:h"  # undetached reset: the reference backward
    assert lif_op.plan(x, torch.tensor(0.5), 0, "atan", 2.0, True, True) == "torch:x"  # PLIF reads X
    assert lif_op.plan(x, None, 0, "atan", 2.0, True, False) == "c:none"
    native.select("torch")
    assert lif_op.plan(x, None, 0, "atan", 2.0, True, True) == "torch:h"
    with torch.no_grad():
        s, v = lif_op.multistep(x, tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=True,
                                surrogate=sur)
    assert s.grad_fn is None and v.shape == x.shape[1:]


def test_reduced_precision_neurons_run_the_float32_recursion():
    # bf16 in (autocast), float32 membranes inside, bf16 spikes out: equal to the float32 neuron on
    # the same (bf16-representable) inputs
    x = (torch.randn(4, 2, 33) * 2).to(torch.bfloat16)
    for name in ("lif", "plif", "ilif"):
        n = NEURONS.build(name, tau=3.0, surrogate="atan")
        out = n(x)
        assert out.dtype == torch.bfloat16 and torch.equal(out.float(), n(x.float()))


def test_unregistered_surrogates_run_the_autograd_loop():
    from step.surrogates import ATan

    class Steeper(ATan):
        def derivative(self, x):
            return 2 * super().derivative(x)

    n = NEURONS.build("lif", surrogate=Steeper(alpha=2.0))
    assert lif_op.surrogate_spec(n.surrogate) is None
    x = torch.randn(4, 2, 5, requires_grad=True)
    n(x).sum().backward()
    assert x.grad is not None
    with pytest.raises(ValueError, match="not a registered surrogate"):
        lif_op.multistep(x, tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=True,
                         surrogate=n.surrogate)


def _tiny_spikformer():
    torch.manual_seed(0)
    return MODELS.build("spikformer", num_classes=3, img_size=8, in_chans=2, depth=1, dim=16, heads=2,
                        patch_size=2, neuron=default_neuron_factory(T=2))


def _logits_and_grads(model, x, run=None):
    model.zero_grad()
    out = (model if run is None else run)(x)
    out.square().sum().backward()
    return out.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}


def test_a_whole_model_traces_in_one_graph_with_the_same_logits_and_gradients():
    # fullgraph=True: the op is one node (no graph break); AOTAutograd runs its fake implementation
    # and its registered backward, and the results equal eager mode bit for bit
    model = _tiny_spikformer()
    x = torch.rand(2, 4, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    eager = _logits_and_grads(model, x)
    traced = _logits_and_grads(model, x, torch.compile(model, backend="aot_eager", fullgraph=True))
    assert torch.equal(eager[0], traced[0])
    assert all(torch.equal(eager[1][k], traced[1][k]) for k in eager[1])


@pytest.mark.slow
def test_inductor_compiled_model_gives_the_same_logits():
    # Inductor fuses the layers around the op (their gradients then round differently); the op's
    # spikes are the same, and so are the logits
    model = _tiny_spikformer()
    x = torch.rand(2, 4, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    eager = _logits_and_grads(model, x)
    compiled = _logits_and_grads(model, x, torch.compile(model, fullgraph=True))
    assert torch.equal(eager[0], compiled[0])
    for k in eager[1]:
        torch.testing.assert_close(compiled[1][k], eager[1][k], rtol=1e-4, atol=1e-6)


def test_the_registered_op_in_eager_mode_equals_the_fast_eager_path(monkeypatch):
    # outside torch.compile calls take a plain autograd.Function over the same implementations;
    # through the registered op (dispatcher, register_autograd) the numbers are the same
    x, g, gv = _data(seed=4)
    for name in ("lif", "plif", "ilif"):
        n = NEURONS.build(name, tau=2.0, detach_reset=False, surrogate="sigmoid")
        fast = _run(n, n.run, x, g, gv)
        monkeypatch.setitem(lif_op._STATE, "registered_op_in_eager", True)
        registered = _run(n, n.run, x, g, gv)
        monkeypatch.setitem(lif_op._STATE, "registered_op_in_eager", False)
        assert all(torch.equal(a, b) for a, b in zip(fast[:3], registered[:3]))
        assert all(torch.equal(a, b) for a, b in zip(fast[3], registered[3]))
