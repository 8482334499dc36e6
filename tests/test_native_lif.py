"""The C neuron kernel (step/native/lif.c) computes what the torch loop computes, bit for bit; the
kernel libraries build into their cache once and are selected, or refused, with a clear reason."""

from __future__ import annotations

import shutil

import pytest
import torch

from step.errors import StepError
from step import native
from step.neurons import kernels
from step.registry import NEURONS

needs_cc = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                              reason="no C compiler: the torch loop runs instead (tested below)")


@pytest.fixture(autouse=True)
def _fresh_selection():
    native.select(None)
    yield
    native.select(None)


def _run(neuron, x, g, gv=None, use_spikes=True):
    x = x.clone().requires_grad_()
    s, v = neuron.run(x)
    loss = (s * g).sum() if use_spikes else 0.0
    if gv is not None:
        loss = loss + (v * gv).sum()
    loss.backward()
    return s.detach(), v.detach(), x.grad


def _both(neuron, x, g, **kw):
    native.select("c")
    assert kernels._c_library(x) is not None
    c = _run(neuron, x, g, **kw)
    native.select("torch")
    assert kernels._c_library(x) is None
    t = _run(neuron, x, g, **kw)
    return c, t


def _same(a, b):
    """Same shapes, layouts and bits (so NaNs compare equal, and so does the sign of zero)."""
    for u, w in zip(a, b):
        assert u.shape == w.shape and u.stride() == w.stride()
        assert torch.equal(u.contiguous().view(torch.int32), w.contiguous().view(torch.int32))


def _data(shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen) * 1.5, torch.randn(*shape, generator=gen)


@needs_cc
@pytest.mark.parametrize("name", ["lif", "if"])
@pytest.mark.parametrize("v_reset", [0.0, None, -0.2])
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("surrogate,alpha", [("atan", 2.0), ("sigmoid", 4.0), ("triangle", 1.0), ("superspike", 10.0)])
def test_c_kernel_equals_torch_loop(name, v_reset, decay_input, surrogate, alpha):
    n = NEURONS.build(name, tau=3.0, v_threshold=0.8, v_reset=v_reset, decay_input=decay_input,
                      detach_reset=True, surrogate=surrogate, alpha=alpha)
    x, g = _data((4, 3, 1000 + 37))  # not a multiple of the kernel's chunk or any vector width
    c, t = _both(n, x, g)
    assert c[0].sum() > 0 and c[2].abs().sum() > 0
    _same(c, t)


@needs_cc
def test_c_kernel_threads_long_inputs_and_edge_cases():
    n = NEURONS.build("lif", tau=2.0, surrogate="atan", alpha=2.0)
    x, g = _data((3, 2, native.PARALLEL_MIN + 4099), seed=1)  # split over threads, ragged last chunk
    _same(*_both(n, x, g))
    x1, g1 = _data((1, 5, 7), seed=2)  # T = 1
    _same(*_both(n, x1, g1))
    # the final membrane's gradient flows too, with or without the spikes' gradient
    x2, g2 = _data((4, 2, 33), seed=3)
    gv = torch.randn(2, 33, generator=torch.Generator().manual_seed(4))
    _same(*_both(n, x2, g2, gv=gv))
    _same(*_both(n, x2, g2, gv=gv, use_spikes=False))
    # exact values at the threshold, zeros, infinities and NaN behave as in torch
    special = torch.tensor([[1.0, 0.0, -0.0, float("inf"), float("-inf"), float("nan"), 2.0, -1.0]] * 4)
    _same(*_both(n, special, torch.ones_like(special)))


@needs_cc
@pytest.mark.parametrize("surrogate", ["atan", "sigmoid", "triangle"])
def test_streaming_stores_and_recomputed_membranes_change_no_bit(surrogate, monkeypatch):
    # every result streamed (ragged, unaligned runs: 1037 positions per step); atan recomputes H
    # from X in the backward, sigmoid reads its argument and the spikes, the others read H: all
    # equal the torch loop
    monkeypatch.setattr(kernels, "_STREAM_MIN_BYTES", 0)
    assert kernels._stream(torch.empty(1)) == 1
    assert kernels._saved_form(NEURONS.build("lif", surrogate=surrogate).surrogate) == {"atan": "x", "sigmoid": "u"}.get(surrogate, "h")
    for name, v_reset in (("lif", 0.0), ("lif", None), ("if", 0.0)):
        n = NEURONS.build(name, tau=2.0, v_reset=v_reset, surrogate=surrogate)
        x, g = _data((5, 1037), seed=7)
        gv = torch.randn(1037, generator=torch.Generator().manual_seed(8))
        _same(*_both(n, x, g, gv=gv))
        xo, go = (t.reshape(-1)[3:3 + 5 * 1030].view(5, 1030) for t in (x, g))  # 12 bytes into the storage
        assert xo.is_contiguous() and xo.data_ptr() % 16 == 12  # not aligned for any vector store
        _same(*_both(n, xo, go))


@needs_cc
def test_what_the_forward_keeps_for_the_backward():
    native.select("c")
    x = torch.randn(4, 3, 50, requires_grad=True)
    s = NEURONS.build("lif", tau=2.0, surrogate="atan")(x)
    saved = s.grad_fn.saved_tensors
    assert len(saved) == 1 and saved[0].data_ptr() == x.data_ptr()  # atan: X itself, no H tensor
    s = NEURONS.build("lif", tau=2.0, v_threshold=0.5, surrogate="sigmoid", alpha=4.0)(x)
    u, spikes = s.grad_fn.saved_tensors
    assert spikes.data_ptr() == s.data_ptr()  # sigmoid: the spikes, and the sigmoid's argument
    h = x.detach()[0] / 2  # the first step's charge from V = 0 (decay_input: H = X / tau)
    assert torch.equal(u[0], (h - 0.5) * 4.0)


@needs_cc
def test_c_kernel_keeps_channels_last_layouts_and_gradient_layouts():
    # a [T, B, C, H, W] input whose steps are channels-last (what a channels-last conv stack gives)
    n = NEURONS.build("lif", tau=2.0, surrogate="sigmoid", alpha=4.0)
    x = torch.randn(2, 3, 5, 6, 4).mul(2).permute(0, 1, 4, 2, 3)  # strides of NHWC steps, time outermost
    assert not x.is_contiguous() and native.dense_outer_first(x)
    g = torch.randn(2, 3, 4, 5, 6)
    c, t = _both(n, x, g)
    assert c[0].stride() == x.stride()  # spikes keep the input's layout (no copy to NCHW)
    _same(c, t)
    # a gradient arriving in another layout (a transpose after the neuron): same values and layout
    gt = torch.randn(2, 3, 5, 6, 4).permute(0, 1, 4, 2, 3)
    xc = torch.randn(2, 3, 4, 5, 6) * 2
    c, t = _both(n, xc, gt)
    _same(c, t)
    # an expanded gradient (a mean's backward)
    ge = torch.randn(1, 3, 4, 1, 1).expand(2, 3, 4, 5, 6)
    _same(*_both(n, xc, ge))


def test_c_kernel_is_skipped_where_it_does_not_apply():
    assert kernels._c_library(torch.randn(4, 3, dtype=torch.float64)) is None  # float64: the torch loop
    assert kernels._c_library(torch.randn(4, 6)[:, ::2]) is None  # not one dense block
    assert kernels._c_library(torch.randn(0, 3)) is None
    kernels.enable_compile(True)
    try:
        assert kernels._c_library(torch.randn(4, 3)) is None  # trainer.compile_neurons: torch.compile
    finally:
        kernels.enable_compile(False)
    # bf16 neurons (autocast) give the same spikes on either path
    n = NEURONS.build("lif", tau=2.0, surrogate="atan")
    x = torch.randn(4, 2, 9, dtype=torch.bfloat16) * 2
    assert n(x).dtype == torch.bfloat16


@needs_cc
def test_kernel_builds_once_into_its_cache_and_replaces_a_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setenv("STEP_CACHE_DIR", str(tmp_path))
    key = native._key(native._compiler(), native.HERE / "lif.c")
    target = tmp_path / "kernels" / f"lif-{key}.so"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a shared library")  # e.g. a copy cut short
    native.reset_for_tests()
    try:
        assert native.implementation("lif") == "c"
        assert target.read_bytes()[:4] == b"\x7fELF" and sorted(target.parent.glob("*.so")) == [target]
        stamp = target.stat().st_mtime_ns
        native.reset_for_tests()
        assert native.implementation("lif") == "c" and target.stat().st_mtime_ns == stamp  # loaded, not rebuilt
    finally:
        native.reset_for_tests()


def test_selection_and_its_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("STEP_KERNELS", "torch")
    native.reset_for_tests()
    try:
        assert native.implementation("lif") == "torch (STEP_KERNELS=torch)"
        assert native.load("lif") is None
        monkeypatch.setenv("STEP_KERNELS", "gpu")
        with pytest.raises(StepError, match="not one of auto, c, torch"):
            native.choice()
        monkeypatch.setenv("STEP_KERNELS", "auto")
        with pytest.raises(StepError, match="no C kernel named 'gemm'; there are lif, reduce"):
            native.load("gemm")
        # no compiler: auto falls back to the torch loop and says why; c refuses with what to do
        monkeypatch.setenv("STEP_CACHE_DIR", str(tmp_path))
        monkeypatch.setattr(native, "_compiler", lambda: None)
        monkeypatch.setenv("STEP_KERNELS", "auto")
        native.reset_for_tests()
        assert native.implementation("lif") == "torch (C kernel unavailable: no C compiler found (looked for $CC, gcc, cc, clang).)"
        n = NEURONS.build("lif", tau=2.0, surrogate="atan")
        assert n(torch.full((2, 3), 1.5)).sum() == 3  # the torch loop serves
        monkeypatch.setenv("STEP_KERNELS", "c")
        native.reset_for_tests()
        with pytest.raises(StepError, match="Install a C compiler"):
            native.load("lif")
    finally:
        native.reset_for_tests()


@pytest.mark.parametrize("tau,expected", [(2.0, 0.5), (4.0, 0.25), (0.5, 2.0), (3.0, 0.0), (2.0000001, 0.5),
                                          (1.7, 0.0), (None, 0.0)])
def test_divisions_by_a_power_of_two_tau_become_exact_multiplications(tau, expected):
    # x / 2^k and x * 2^-k are the same correctly rounded number, so the kernel may multiply; the
    # test is on the float32 value the kernel divides by (2.0000001 rounds to 2.0 in float32)
    assert kernels._inverse_if_power_of_two(tau) == expected


@needs_cc
@pytest.mark.parametrize("tau", [2.0, 4.0, 3.0])
def test_power_of_two_tau_path_is_bit_identical(tau):
    n = NEURONS.build("lif", tau=tau, surrogate="atan", decay_input=False)
    x, g = _data((4, 3, 2000), seed=9)
    x[0, 0, :8] = torch.tensor([1e-40, -1e-40, 3e38, -3e38, 0.0, -0.0, 1.0, 2.0])  # subnormals, huge
    _same(*_both(n, x, g))
