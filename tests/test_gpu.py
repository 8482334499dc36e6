"""CUDA checks (``make test-gpu``; skipped without a GPU): the Triton neuron kernels against the torch
loop on the same GPU, counting on CUDA, and tiny end-to-end runs under the GPU recipe.

Expectations, from what the CPU could establish (tests/test_triton_lif.py, docs/performance.md):
bit-identical for every surrogate without an exponential; for sigmoid and erf bit-identical as well
if the CUDA math library's expf (libdevice, what Triton calls) is the one torch's kernels were built
with, else within float rounding (the test then warns, saying so).
"""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

from step import native
from step.neurons import lif_op
from step.registry import MODELS, NEURONS

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")]

RATIONAL = ["atan", "rectangle", "triangle", "piecewise_quadratic", "superspike", "straight_through"]
TRANSCENDENTAL = ["sigmoid", "erf"]


def _run(neuron, x0, g, gv, choice, monkeypatch):
    monkeypatch.setenv("STEP_CUDA_KERNELS", choice)
    neuron.zero_grad()
    x = x0.clone().requires_grad_()
    s, v = neuron.run(x)
    ((s * g).sum() + (v * gv).sum()).backward()
    params = [p.grad.clone() for p in neuron.parameters() if p.grad is not None]
    return (s.detach(), v.detach(), x.grad), params


def _compare(kernel, loop, exact: bool, what: str):
    for a, b in zip(kernel, loop):
        assert a.dtype == b.dtype and a.stride() == b.stride(), what
        nan = a.isnan()
        assert torch.equal(nan, b.isnan()), what
        if exact:
            assert torch.equal(a[~nan], b[~nan]), what
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, equal_nan=True, msg=what)
            if not torch.equal(a[~nan], b[~nan]):
                warnings.warn(f"{what}: within float rounding but not bit-identical (the GPU's exp differs)")


def _inputs(shape, dtype, seed=0, channels_last=False):
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(*shape, generator=g, device="cuda") * 1.5
    grad = torch.randn(*shape, generator=g, device="cuda")
    gv = torch.randn(*shape[1:], generator=g, device="cuda")
    if channels_last:  # [T, B, C, H, W] with NHWC steps
        x = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return x.to(dtype), grad.to(dtype), gv.to(dtype)


def _cases():
    """Every reset x detach x charge form per neuron, every surrogate once, every dtype once: about 50
    kernel variants (each compiles once, a second or so: the full product would take 20 minutes)."""
    modes = list(itertools.product([0.0, None, -0.2], [True, False], [True, False]))
    f32 = torch.float32
    cases = [("lif", f32, r, d, det, "atan", 3.0) for r, d, det in modes]
    cases += [("lif", f32, 0.0, True, True, s, 3.0 if s in ("rectangle", "triangle", "erf") else 2.0)
              for s in RATIONAL + TRANSCENDENTAL]
    cases += [("if", f32, r, True, det, "sigmoid", 2.0) for r, _, det in modes[::2]]
    cases += [("plif", f32, r, d, det, "triangle", 3.0) for r, d, det in modes]
    cases += [("ilif", f32, r, True, det, "atan", 2.0) for r, _, det in modes[::2]]
    cases += [(n, dt, 0.0, True, True, s, 2.0) for n in ("lif", "plif", "ilif", "if")
              for dt, s in ((torch.bfloat16, "atan"), (torch.float16, "sigmoid"))]
    return cases


@pytest.mark.parametrize("name,dtype,reset,decay_input,detach,sur,tau", _cases())
def test_triton_kernels_equal_the_torch_loop_on_cuda(name, dtype, reset, decay_input, detach, sur, tau, monkeypatch):
    x, g, gv = _inputs((4, 3, 1029), dtype, seed=1)  # 1029: no multiple of any block
    assert lif_op.implementation(x, surrogate=sur) == "triton"
    n = NEURONS.build(name, tau=tau, v_threshold=0.8, v_reset=reset, decay_input=decay_input, detach_reset=detach,
                      surrogate=sur, alpha=3.0 if tau == 3.0 else 2.0).cuda()
    (k, kp), (t, tp) = _run(n, x, g, gv, "auto", monkeypatch), _run(n, x, g, gv, "torch", monkeypatch)
    what = f"{name} {dtype} reset={reset} decay_input={decay_input} detach={detach} {sur} tau={tau}"
    assert t[0].sum() > 0, what
    _compare(k, t, exact=sur in RATIONAL or name == "ilif", what=what)
    for a, b in zip(kp, tp):  # PLIF's decay: one sum, in another order than autograd's
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("T", [1, 4, 16])
def test_layouts_lengths_and_special_values_on_cuda(T, monkeypatch):
    x, g, gv = _inputs((T, 2, 8, 5, 6), torch.float32, seed=2, channels_last=True)
    x[0, 0, 0, 0, :6] = torch.tensor([float("inf"), float("-inf"), float("nan"), 0.0, -0.0, 0.8])
    n = NEURONS.build("lif", tau=2.0, surrogate="atan").cuda()
    (k, _), (t, _) = _run(n, x, g, gv, "auto", monkeypatch), _run(n, x, g, gv, "torch", monkeypatch)
    _compare(k, t, exact=True, what=f"channels-last T={T}")
    assert k[0].stride() == x.stride()


def test_what_triton_does_not_take_falls_back_to_the_loop_on_cuda(monkeypatch):
    x, g, gv = _inputs((17, 2, 33), torch.float32)
    assert lif_op.implementation(x, surrogate="atan") == "torch"  # T > 16
    n = NEURONS.build("lif", tau=2.0, surrogate="atan").cuda()
    out, _ = _run(n, x, g, gv, "auto", monkeypatch)
    assert out[2].isfinite().all()


def test_tiny_model_same_logits_on_both_cuda_paths_and_compiled(monkeypatch):
    from step.components import default_neuron_factory

    torch.manual_seed(0)
    model = MODELS.build("spikformer", num_classes=3, img_size=16, in_chans=3, depth=1, dim=32, heads=2,
                         neuron=default_neuron_factory(T=4)).cuda().eval()
    x = torch.rand(4, 2, 3, 16, 16, device="cuda")
    with torch.no_grad():
        monkeypatch.setenv("STEP_CUDA_KERNELS", "auto")
        kernel = model(x)
        monkeypatch.setenv("STEP_CUDA_KERNELS", "torch")
        loop = model(x)
        monkeypatch.setenv("STEP_CUDA_KERNELS", "auto")
        compiled = torch.compile(model, fullgraph=True)(x)
    assert torch.equal(kernel, loop)
    torch.testing.assert_close(compiled, kernel, rtol=1e-4, atol=1e-5)


def test_counting_on_cuda_agrees_with_the_cpu(monkeypatch):
    # the same model and batch counted on the CPU and on CUDA: shape-only counts are equal, counts
    # that depend on the spikes agree closely (float rounding of the layers may flip a few spikes)
    from step.components import default_neuron_factory
    from step.energy import EnergyMeter

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    model = MODELS.build("spikformer", num_classes=3, img_size=16, in_chans=1, depth=1, dim=32, heads=2,
                         neuron=default_neuron_factory(T=2))
    x = torch.rand(2, 8, 1, 16, 16, generator=torch.Generator().manual_seed(3)) * 8
    with torch.no_grad():
        model.train()(x)  # batch-norm statistics of the data, so that the neurons fire
    reports = {}
    for device in ("cpu", "cuda"):
        m = model.to(device).eval()
        meter = EnergyMeter(m, T=2)
        with meter, torch.inference_mode():
            m(x.to(device))
        reports[device] = meter.report()
    cpu, cuda = reports["cpu"].totals, reports["cuda"].totals
    for key in ("macs", "macs_executed", "nonspike_macs", "encoder_macs", "bias_adds", "params", "neurons",
                "neuron_updates", "norm_ops", "pool_ops"):
        assert cpu[key] == cuda[key], key
    assert cpu["spikes"] > 0
    for key in ("sops", "spikes", "mean_firing_rate"):
        assert cuda[key] == pytest.approx(cpu[key], rel=0.05), key
    assert all(math.isfinite(v) for v in reports["cuda"].columns({}).values())


def test_tiny_end_to_end_run_under_the_gpu_recipe(isolated_roots, monkeypatch):
    import importlib

    from step.config import compose
    from step.engine import run

    run_module = importlib.import_module("step.engine.run")
    real, built = run_module.builders.build_loaders, []
    monkeypatch.setattr(run_module.builders, "build_loaders", lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    record = run(compose(["trainer=gpu", "trainer.num_workers=2", "model.depth=1", "model.dim=32", "model.heads=2",
                          "T=4", "trainer.max_batches=3", "trainer.batch_size=32", "trainer.epochs=2",
                          "trainer.progress=false", "dataset.test_fraction=0.1", "logger=none"]))
    assert record["status"] == "ok" and record["device"].startswith("cuda") and record["precision"] == "bf16"
    assert record["neuron_kernel"] == "triton"
    assert record["loader"] == {"num_workers": 2, "pin_memory": True, "persistent_workers": True}
    assert math.isfinite(record["test_loss"]) and record["energy"]
    x, _ = next(iter(built[0][0]))
    assert x.is_pinned()
    native.select(None)
