"""Backends: the same model on native, SpikingJelly and BrainCog neurons gives the same numbers."""

import logging

import pytest
import torch

from step.errors import ConfigError
from step.neurons import NeuronFactory, check_nodes, spiking_nodes
from step.registry import BACKENDS, MODELS

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)
pytest.importorskip("spikingjelly")

LIF = dict(tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True, detach_reset=True)


def _spikformer(backend, surrogate, alpha):
    torch.manual_seed(0)
    neuron = NeuronFactory("lif", backend=backend, T=2, surrogate=surrogate, alpha=alpha, **LIF)
    return MODELS.build("spikformer", num_classes=10, img_size=16, in_chans=1, depth=1, dim=32, heads=2,
                        neuron=neuron)


def _out_and_grads(model, x):
    model.train()
    out = model(x)
    out.square().sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _pair(backend, surrogate, alpha):
    native, other = _spikformer("native", surrogate, alpha), _spikformer(backend, surrogate, alpha)
    missing, unexpected = other.load_state_dict(native.state_dict(), strict=False)
    assert not unexpected and all(".node." in k for k in missing)  # only library-held neuron constants
    x = torch.rand(2, 2, 1, 16, 16) * 3  # [T, B, C, H, W]
    return _out_and_grads(native, x), _out_and_grads(other, x), other


def test_spikformer_native_vs_spikingjelly_identical():
    (o1, g1), (o2, g2), model = _pair("spikingjelly", "sigmoid", 4.0)
    assert all(type(n).__name__ == "SpikingJellyNeuron" for _, n in spiking_nodes(model))
    assert torch.equal(o1, o2)
    assert g1.keys() == g2.keys() and len(g1) > 10
    assert all(torch.equal(g1[k], g2[k]) for k in g1), [k for k in g1 if not torch.equal(g1[k], g2[k])]


def test_spikformer_native_vs_braincog_within_1e5():
    pytest.importorskip("braincog")
    (o1, g1), (o2, g2), model = _pair("braincog", "sigmoid", 2.0)  # BrainCog fixes alpha = 2
    assert all(type(n).__name__ == "BrainCogNeuron" for _, n in spiking_nodes(model))
    torch.testing.assert_close(o2, o1, rtol=0, atol=1e-5)
    assert g1.keys() == g2.keys()
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize("backend", ["spikingjelly", "braincog"])
def test_backend_neurons_hold_configured_values(backend):
    pytest.importorskip(backend)
    f = NeuronFactory("lif", backend=backend, T=3, surrogate="atan", alpha=2.0, tau=3.0, v_threshold=0.75)
    n = f()
    assert n.is_spiking_neuron and (n.tau, n.v_threshold, n.T, n.alpha) == (3.0, 0.75, 3, 2.0)
    assert check_nodes(n, f.expected()) == []
    x = torch.rand(3, 2, 4, 5) * 3  # token-shaped input works on BrainCog too
    assert torch.equal(n(x), n(x))  # no state kept between calls


def test_missing_neuron_names_backends_offering_it():
    with pytest.raises(ConfigError, match=r"no neuron 'psn'.*native, spikingjelly"):
        NeuronFactory("psn", backend="braincog", T=4, surrogate="atan", alpha=2.0)
    with pytest.raises(ConfigError, match="Backends offering 'glif': native"):
        NeuronFactory("glif", backend="spikingjelly", T=4)
    with pytest.raises(ConfigError, match="Valid backend names"):
        NeuronFactory("lif", backend="brainco")


def test_braincog_refuses_what_it_cannot_express():
    with pytest.raises(ConfigError, match="alpha=2.0"):
        NeuronFactory("lif", backend="braincog", T=2, surrogate="sigmoid", alpha=4.0)
    with pytest.raises(ConfigError, match="surrogates"):
        NeuronFactory("lif", backend="braincog", T=2, surrogate="erf", alpha=2.0)
    with pytest.raises(ConfigError, match="v_reset=0.0"):
        NeuronFactory("lif", backend="braincog", T=2, surrogate="atan", v_reset=None)


def test_spikingjelly_runs_every_offered_neuron_and_our_surrogates():
    x = torch.rand(4, 2, 8) * 3
    for name in BACKENDS.build("spikingjelly").offers:
        for sur in ("sigmoid", "triangle"):  # triangle is passed to SpikingJelly as our module
            n = NeuronFactory(name, backend="spikingjelly", T=4, surrogate=sur, alpha=1.5)()
            xx = x.clone().requires_grad_()
            n(xx).sum().backward()
            assert xx.grad is not None and type(n.surrogate).__name__.lower() == sur
