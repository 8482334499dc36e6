"""Neurons: hand-computed dynamics, bit parity with SpikingJelly 2.0, and the shared interface."""

import logging

import pytest
import torch

from step.neurons import NeuronFactory, SpikingNeuron, kernels
from step.registry import NEURONS

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)
sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
from spikingjelly.activation_based import functional, surrogate as sj_surrogate  # noqa: E402

SJ_SUR = {"sigmoid": sj_surrogate.Sigmoid, "atan": sj_surrogate.ATan}
#: spiking neurons only (NEURONS also holds the ANN twins' non-spiking activations)
SPIKING = sorted(n for n in NEURONS.names() if issubclass(NEURONS.get(n), SpikingNeuron))


def _inputs(seed=0, shape=(5, 3, 16)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * 1.5, torch.randn(*shape, generator=g)


def _run_sj(node, x, g):
    x = x.clone().requires_grad_()
    s = node(x)
    v = node.v.detach().clone()
    (s * g).sum().backward()
    functional.reset_net(node)
    return s.detach(), v, x.grad


def _run_ours(neuron, x, g):
    x = x.clone().requires_grad_()
    s, v = neuron.run(x)
    (s * g).sum().backward()
    return s.detach(), v.detach(), x.grad


# ---- hand-computed dynamics -----------------------------------------------------------------
def test_lif_constant_input_by_hand():
    """tau=2, V_th=1, hard reset to 0, X=1.5: H0=0.75, H1=1.125 (spike, V=0), H2=0.75, H3=1.125."""
    lif = NEURONS.build("lif", tau=2.0, v_threshold=1.0, v_reset=0.0)
    s, v = lif.run(torch.full((4, 1), 1.5))
    assert s.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    assert v.item() == 0.0
    soft = NEURONS.build("lif", tau=2.0, v_threshold=1.0, v_reset=None)
    s, v = soft.run(torch.full((3, 1), 1.5))  # H: 0.75, 1.125 -> V 0.125, H2 = 0.125 + (1.5-0.125)/2 = 0.8125
    assert s.flatten().tolist() == [0.0, 1.0, 0.0]
    assert v.item() == pytest.approx(0.8125)


def test_no_state_between_calls_and_shape():
    x, _ = _inputs()
    for name in SPIKING:
        n = NEURONS.build(name, T=5)
        a, b = n(x), n(x)
        assert a.shape == x.shape and torch.equal(a, b), name


def test_eif_one_step_by_hand():
    n = NEURONS.build("eif", tau=2.0, v_threshold=1.0, v_reset=0.0, delta_T=0.5, theta_rh=0.8)
    x = torch.tensor([[0.4, 2.6]])
    s, v = n.run(x)  # V0=0: H = (X + 0.5 exp(-1.6)) / 2
    h = (x + 0.5 * torch.exp(torch.tensor(-1.6))) / 2
    assert s.tolist() == [[0.0, 1.0]]
    assert v[0].item() == pytest.approx(h[0, 0].item()) and v[1].item() == 0.0


def test_glif_first_step_by_hand():
    """Gates start at 0.5, tau_m at 1 - 1/tau, conductance sigmoid(0)=0.5, d = V_th/(2T):
    U0 = X (1 - 0.5 * 0.5) - 0.5 d."""
    n = NEURONS.build("glif", T=2, tau=2.0, v_threshold=1.0)
    x = torch.tensor([[0.8, 1.6], [0.0, 0.0]])
    s, _ = n.run(x)
    u0 = x[0] * 0.75 - 0.5 * (1.0 / 4)
    assert s[0].tolist() == (u0 >= 1.0).float().tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="T=2"):
        n(torch.zeros(3, 2))


def test_integer_lif_counts_and_straight_through():
    n = NEURONS.build("ilif", tau=2.0, v_threshold=1.0, v_reset=None, max_spike=4)
    assert n.max_spike == 4
    x = torch.tensor([[5.2], [5.2]], requires_grad=True)
    s, v = n.run(x)  # H0 = 2.6 -> S=3, V=-0.4; H1 = -0.4 + (5.2+0.4)/2 = 2.4 -> S=2, V=0.4
    assert s.flatten().tolist() == [3.0, 2.0]
    assert v.item() == pytest.approx(0.4, abs=1e-6)
    s.sum().backward()  # detached reset: dS1/dX1 = 1/2; dS0/dX0 = 1/2 + dS1/dH1 * dH1/dV0 * dV0/dH0 = 1/2 + 1/2*1/2
    assert x.grad.flatten().tolist() == pytest.approx([0.75, 0.5])
    big = NEURONS.build("ilif", tau=2.0, v_threshold=1.0, max_spike=2)(torch.full((1, 1), 20.0))
    assert big.item() == 2.0
    norm = NEURONS.build("nilif", tau=2.0, v_threshold=1.0, v_reset=None, max_spike=4)
    assert torch.equal(norm(x.detach()), s.detach() / 4)


def test_binary_neurons_emit_only_zero_one():
    x, _ = _inputs(shape=(4, 2, 32))
    for name in SPIKING:
        n = NEURONS.build(name, T=4)
        vals = set(n(x * 3).unique().tolist())
        if name in ("ilif", "nilif"):
            assert n.max_spike == 4
        else:
            assert n.max_spike == 1 and vals <= {0.0, 1.0}, (name, vals)


@pytest.mark.parametrize("name", SPIKING)
def test_learnable_threshold_gets_gradient(name):
    n = NEURONS.build(name, T=4, v_threshold=0.8, learnable_threshold=True)
    assert isinstance(n.threshold, torch.nn.Parameter) and n.v_threshold == pytest.approx(0.8)
    x, _ = _inputs(shape=(4, 2, 8))
    n(x * 2).sum().backward()
    assert n.threshold.grad is not None and n.threshold.grad.abs().item() > 0


# ---- parity with SpikingJelly 2.0 -----------------------------------------------------------
@pytest.mark.parametrize("sur,alpha", [("sigmoid", 4.0), ("atan", 2.0)])
@pytest.mark.parametrize("v_reset", [0.0, None, -0.2])
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("detach_reset", [True, False])
def test_lif_bit_identical_to_spikingjelly(sur, alpha, v_reset, decay_input, detach_reset):
    x, g = _inputs()
    sj = sj_neuron.LIFNode(tau=3.0, decay_input=decay_input, v_threshold=1.0, v_reset=v_reset,
                           surrogate_function=SJ_SUR[sur](alpha=alpha), detach_reset=detach_reset, step_mode="m")
    ours = NEURONS.build("lif", tau=3.0, decay_input=decay_input, v_threshold=1.0, v_reset=v_reset,
                         surrogate=sur, alpha=alpha, detach_reset=detach_reset)
    (s1, v1, g1), (s2, v2, g2) = _run_sj(sj, x, g), _run_ours(ours, x, g)
    assert s1.sum() > 0
    assert torch.equal(s1, s2) and torch.equal(v1, v2) and torch.equal(g1, g2)


@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("detach_reset", [True, False])
def test_if_bit_identical_to_spikingjelly(v_reset, detach_reset):
    x, g = _inputs(1)
    sj = sj_neuron.IFNode(v_threshold=1.0, v_reset=v_reset, surrogate_function=sj_surrogate.Sigmoid(alpha=4.0),
                          detach_reset=detach_reset, step_mode="m")
    ours = NEURONS.build("if", v_threshold=1.0, v_reset=v_reset, surrogate="sigmoid", alpha=4.0,
                         detach_reset=detach_reset)
    (s1, v1, g1), (s2, v2, g2) = _run_sj(sj, x, g), _run_ours(ours, x, g)
    assert torch.equal(s1, s2) and torch.equal(v1, v2) and torch.equal(g1, g2)


@pytest.mark.parametrize("decay_input", [True, False])
def test_plif_matches_spikingjelly(decay_input):
    x, g = _inputs(2)
    sj = sj_neuron.ParametricLIFNode(init_tau=2.0, decay_input=decay_input, surrogate_function=sj_surrogate.ATan(),
                                     detach_reset=True, step_mode="m")
    ours = NEURONS.build("plif", tau=2.0, decay_input=decay_input, surrogate="atan", alpha=2.0, detach_reset=True)
    assert ours.w.item() == sj.w.item() == 0.0
    (s1, v1, g1), (s2, v2, g2) = _run_sj(sj, x, g), _run_ours(ours, x, g)
    assert torch.equal(s1, s2) and torch.equal(v1, v2)
    torch.testing.assert_close(g1, g2, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(sj.w.grad, ours.w.grad, rtol=1e-5, atol=1e-6)


def test_klif_clif_psn_forward_match_spikingjelly():
    x, _ = _inputs(3, shape=(4, 2, 16))
    klif = sj_neuron.KLIFNode(tau=2.0, surrogate_function=sj_surrogate.ATan(), detach_reset=True, step_mode="m")
    assert torch.equal(klif(x), NEURONS.build("klif", tau=2.0, surrogate="atan")(x))
    clif = sj_neuron.ComplementaryLIFNode(tau=2.0, surrogate_function=sj_surrogate.ATan(), step_mode="m")
    assert torch.equal(clif(x), NEURONS.build("clif", tau=2.0, surrogate="atan")(x))
    psn = sj_neuron.PSN(T=4, surrogate_function=sj_surrogate.ATan())
    ours = NEURONS.build("psn", T=4, surrogate="atan", v_threshold=1.0)
    with torch.no_grad():
        ours.weight.copy_(psn.weight)
    assert torch.equal(psn(x), ours(x))


# ---- the fused kernel -----------------------------------------------------------------------
@pytest.mark.parametrize("v_reset", [0.0, None])
def test_fused_lif_equals_autograd_loop(v_reset):
    x, g = _inputs(4)
    n = NEURONS.build("lif", tau=2.0, v_reset=v_reset, surrogate="sigmoid", alpha=4.0, detach_reset=True)
    fused = _run_ours(n, x, g)
    xl = x.clone().requires_grad_()
    s, v = SpikingNeuron.run(n, xl)
    (s * g).sum().backward()
    assert torch.equal(fused[0], s) and torch.equal(fused[1], v) and torch.equal(fused[2], xl.grad)


@pytest.mark.slow
def test_compiled_lif_is_bit_identical():
    x, g = _inputs(5, shape=(4, 8, 64))
    n = NEURONS.build("lif", tau=2.0, surrogate="sigmoid", alpha=4.0, detach_reset=True)
    eager = _run_ours(n, x, g)
    kernels.enable_compile(True)
    try:
        compiled = _run_ours(n, x, g)
    finally:
        kernels.enable_compile(False)
    assert all(torch.equal(a, b) for a, b in zip(eager, compiled))


def test_factory_builds_configured_neurons_and_overrides():
    f = NeuronFactory("plif", T=4, tau=3.0, v_threshold=0.7, surrogate="sigmoid", alpha=3.0)
    a, b = f(), f(v_threshold=0.5)
    assert (a.tau, a.v_threshold, a.T, a.alpha, type(a.surrogate).__name__) == (3.0, 0.7, 4, 3.0, "Sigmoid")
    assert b.v_threshold == 0.5
