"""The Triton kernels of the neuron op (step/neurons/triton_lif.py) compute what the reference torch
loop computes, bit for bit, checked on CPU tensors in Triton's interpreter; and they compile for the
H200 (sm_90) with the arithmetic the bit-identity rests on (no FMA contraction, IEEE division).

What the interpreter cannot show, and how the tests account for it:

* ``exp``: the interpreter evaluates it with numpy, a GPU with the CUDA math library (what torch's
  CUDA kernels call), the CPU torch loop with SLEEF / glibc. The sigmoid and erf surrogates are
  therefore compared with torch's ``exp`` swapped for numpy's: bit for bit then, and within a few
  ulp without the swap (tests below say how far).
* CUDA's torch divides a tensor by a Python number as a multiplication by the float32 reciprocal
  (aten/src/ATen/native/cuda/BinaryDivTrueKernel.cu), the CPU divides. The kernels' CUDA mode
  (``recip=True``) is compared with the CPU torch loop run under :class:`CudaDivision`, a torch
  function mode that applies CUDA's rule.
* a float32 -> bfloat16 cast truncates in the interpreter and rounds to nearest even on a GPU; the
  kernels round in integer arithmetic before casting, so both give torch's rounding (tested in bf16).

tests/test_gpu.py repeats the comparisons on a GPU against the torch loop on CUDA.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

triton = pytest.importorskip("triton")

from step.neurons import kernels, lif_op, triton_lif  # noqa: E402
from step.registry import NEURONS, SURROGATES  # noqa: E402

RATIONAL = ["atan", "rectangle", "triangle", "piecewise_quadratic", "superspike", "straight_through"]
TRANSCENDENTAL = ["sigmoid", "erf"]


class CudaDivision(TorchFunctionMode):
    """CUDA's rule for ``tensor / python_number``: ``tensor * float32(1 / float32(number))``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        divisions = (torch.div, torch.Tensor.div, torch.Tensor.div_, torch.Tensor.__truediv__)
        if func in divisions and len(args) == 2 and isinstance(args[1], (int, float)) and not kwargs.get("rounding_mode"):
            inverse = float(np.float32(1.0) / np.float32(args[1]))
            return args[0].mul_(inverse) if func is torch.Tensor.div_ else torch.mul(args[0], inverse, **kwargs)
        return func(*args, **kwargs)


@pytest.fixture
def numpy_exp(monkeypatch):
    """torch's exp and sigmoid evaluated by numpy, as Triton's interpreter evaluates tl.exp."""

    def exp(t, *args, **kwargs):
        return torch.from_numpy(np.exp(t.detach().numpy()))

    def sigmoid(t, *args, **kwargs):
        a = t.detach().numpy()
        return torch.from_numpy(np.float32(1.0) / (np.exp(-a) + np.float32(1.0)))

    monkeypatch.setattr(torch, "exp", exp)
    monkeypatch.setattr(torch, "sigmoid", sigmoid)


def _data(T=3, shape=(2, 37), seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x, gs, gv = torch.randn(T, *shape, generator=g) * 1.5, torch.randn(T, *shape, generator=g), torch.randn(*shape, generator=g)
    return x.to(dtype), gs.to(dtype), gv.to(dtype)


def reference(x, gs, gv, *, tau, k, decay_input, th, reset, detach_reset, max_spike, surrogate, alpha):
    """The op's reference: the torch loops on float32, results in x's dtype."""
    xf = x.float()
    v0 = torch.full_like(xf[0], 0.0 if reset is None else reset)
    s, v, h = kernels._forward_loop(xf, v0, tau, decay_input, th, reset, True, k=k, max_spike=max_spike,
                                    out_dtype=x.dtype)
    derivative = SURROGATES.build(surrogate, alpha=alpha).derivative
    gx, acc = kernels._backward_loop(None if gs is None else gs.float(), None if gv is None else gv.float(), h,
                                     derivative, tau, decay_input, th, reset, detach_reset, k=k,
                                     max_spike=max_spike, x=xf)
    return s, v.to(x.dtype), gx.to(x.dtype), acc


def triton_interpreted(x, gs, gv, *, tau, k, decay_input, th, reset, detach_reset, max_spike, surrogate, alpha,
                       recip=False):
    s, v = triton_lif.forward(x, k, tau, decay_input, th, reset, max_spike, recip=recip, interpret=True)
    gx, acc = triton_lif.backward(gs, gv, x, k, tau, decay_input, th, reset, detach_reset, max_spike, surrogate,
                                  alpha, recip=recip, interpret=True)
    return s, v, gx, acc


def _bits(t):
    return t.contiguous().view({4: torch.int32, 2: torch.int16}[t.element_size()])


def _same(a, b):
    """Same bits for every returned tensor, signed zeros included; NaN where the other has NaN (IEEE
    leaves a NaN's sign and payload to the hardware: x86, numpy and GPUs make different ones)."""
    for u, w in zip(a, b):
        assert (u is None) == (w is None)
        if u is not None:
            assert u.dtype == w.dtype and u.shape == w.shape
            nan = u.isnan()
            assert torch.equal(nan, w.isnan()) and torch.equal(_bits(u)[~nan], _bits(w)[~nan])


CHARGES = {"if": dict(tau=None, k=None), "lif": dict(tau=3.0, k=None), "plif": dict(tau=None, k=torch.tensor(0.3))}


@pytest.mark.parametrize("charge", ["if", "lif", "plif"])
@pytest.mark.parametrize("reset", [0.0, None, -0.2])
@pytest.mark.parametrize("detach_reset", [True, False])
def test_interpreted_kernels_equal_the_torch_loop(charge, reset, detach_reset, numpy_exp):
    x, gs, gv = _data(seed=hash((charge, reset, detach_reset)) % 1000)
    cases = [(sur, 1.5, 0, i % 2 == 0, True, True) for i, sur in enumerate(RATIONAL + TRANSCENDENTAL)]
    cases += [("atan", 2.0, 0, True, True, False), ("sigmoid", 4.0, 0, False, False, True),  # one output unused
              ("atan", 2.0, 3, True, True, True), ("atan", 2.0, 2, False, True, False)]  # the integer spike
    for sur, alpha, max_spike, decay_input, use_gs, use_gv in cases:
        kw = dict(CHARGES[charge], decay_input=decay_input, th=0.8, reset=reset, detach_reset=detach_reset,
                  max_spike=max_spike, surrogate=sur, alpha=alpha)
        ref = reference(x, gs if use_gs else None, gv if use_gv else None, **kw)
        assert ref[0].sum() > 0 and ref[2].abs().sum() > 0
        _same(triton_interpreted(x, gs if use_gs else None, gv if use_gv else None, **kw), ref)


def test_reduced_precision_inputs_compute_in_float32_and_round_to_nearest_even():
    # bfloat16 / float16 in, float32 arithmetic, results rounded once: the kernels' integer rounding
    # gives torch's round-to-nearest-even (the interpreter's own cast would truncate)
    for dtype in (torch.bfloat16, torch.float16):
        x, gs, gv = _data(T=4, seed=3, dtype=dtype)
        for charge, sur in (("lif", "atan"), ("plif", "triangle"), ("if", "superspike")):
            kw = dict(CHARGES[charge], decay_input=True, th=1.0, reset=0.0, detach_reset=True, max_spike=0,
                      surrogate=sur, alpha=2.0)
            ref = reference(x, gs, gv, **kw)
            out = triton_interpreted(x, gs, gv, **kw)
            _same(out, ref)
            assert out[2].dtype == dtype
    # the check has teeth: truncating these float32 gradients (the interpreter's own bf16 cast) would
    # change some of them
    kw = dict(CHARGES["lif"], decay_input=True, th=1.0, reset=0.0, detach_reset=True, max_spike=0,
              surrogate="atan", alpha=2.0)
    x, gs, gv = _data(T=4, seed=3, dtype=torch.bfloat16)
    gx32 = reference(x.float(), gs.float(), gv.float(), **kw)[2]
    truncated = (gx32.view(torch.int32) & -65536).view(torch.float32).to(torch.bfloat16)
    assert not torch.equal(truncated, gx32.to(torch.bfloat16))


def test_exp_is_the_one_interpreter_difference(monkeypatch):
    # numpy's float32 exp (the interpreter's tl.exp) and torch's CPU exp (SLEEF / glibc) disagree by
    # up to 2 ulp on a large share of arguments; that alone separates the sigmoid / erf gradients:
    # with numpy's exp in the reference they are bit-identical, with torch's they are not
    a = torch.randn(4096, generator=torch.Generator().manual_seed(4)) * 4
    ulps = (torch.exp(a).view(torch.int32).long() - torch.from_numpy(np.exp(a.numpy())).view(torch.int32).long()).abs()
    assert ulps.max() <= 2 and (ulps > 0).any()
    x, gs, _ = _data(T=2, shape=(512,), seed=5)
    for sur in TRANSCENDENTAL:
        kw = dict(tau=2.0, k=None, decay_input=True, th=1.0, reset=0.0, detach_reset=True, max_spike=0,
                  surrogate=sur, alpha=2.0)
        out, with_torch_exp = triton_interpreted(x, gs, None, **kw), reference(x, gs, None, **kw)
        _same(out[:2], with_torch_exp[:2])  # the forward has no exp
        assert not torch.equal(out[2], with_torch_exp[2])
        torch.testing.assert_close(out[2], with_torch_exp[2], rtol=1e-5, atol=1e-7)
        with monkeypatch.context() as m:
            m.setattr(torch, "exp", lambda t, *args, **kwargs: torch.from_numpy(np.exp(t.detach().numpy())))
            m.setattr(torch, "sigmoid", lambda t, *args, **kwargs: torch.from_numpy(
                np.float32(1.0) / (np.exp(-t.detach().numpy()) + np.float32(1.0))))
            _same(out, reference(x, gs, None, **kw))


def test_cuda_mode_equals_the_torch_loop_under_cudas_division_rule(numpy_exp):
    # tau = 3 and alpha = 3 are not powers of two: x / 3 and x * float32(1 / 3) differ
    x, gs, gv = _data(T=4, seed=7)
    for charge, sur, decay_input in (("lif", "triangle", True), ("lif", "rectangle", False), ("if", "sigmoid", True),
                                     ("lif", "erf", False), ("plif", "atan", True)):
        kw = dict(CHARGES[charge], decay_input=decay_input, th=0.8, reset=0.0, detach_reset=False, max_spike=0,
                  surrogate=sur, alpha=3.0)
        with CudaDivision():
            ref = reference(x, gs, gv, **kw)
        _same(triton_interpreted(x, gs, gv, recip=True, **kw), ref)
        if charge == "lif" or sur in ("triangle", "rectangle"):  # the rule changes bits: the check has teeth
            plain = reference(x, gs, gv, **kw)
            assert not all(torch.equal(a, b) for a, b in zip(plain[1:3], ref[1:3]))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf, 0 * inf: IEEE NaN
def test_special_values_and_ragged_sizes():
    # a single step, sizes that are no multiple of the block, and inf / nan / signed zeros
    special = torch.tensor([1.0, 0.0, -0.0, float("inf"), float("-inf"), float("nan"), 2.0, -1.0, 0.8, 1e-40])
    x = special.repeat(4, 3, 1)
    g = torch.ones_like(x)
    for reset, detach in ((0.0, True), (None, False), (-0.2, False)):
        kw = dict(tau=2.0, k=None, decay_input=True, th=0.8, reset=reset, detach_reset=detach, max_spike=0,
                  surrogate="atan", alpha=2.0)
        _same(triton_interpreted(x, g, None, **kw), reference(x, g, None, **kw))
    x1, g1, v1 = _data(T=1, shape=(1029,), seed=9)
    kw = dict(tau=2.0, k=None, decay_input=False, th=1.0, reset=0.0, detach_reset=True, max_spike=0,
              surrogate="triangle", alpha=1.0)
    _same(triton_interpreted(x1, g1, v1, **kw), reference(x1, g1, v1, **kw))


@pytest.mark.parametrize("name", ["lif", "if", "plif", "ilif"])
def test_the_op_runs_the_interpreted_kernels_like_its_cpu_path(name, monkeypatch):
    # channels-last steps (what a channels-last conv stack hands a neuron), through the neuron module
    x0 = (torch.randn(4, 2, 3, 5, 6, generator=torch.Generator().manual_seed(11)) * 2).permute(0, 1, 3, 4, 2)
    g = torch.randn(4, 2, 5, 6, 3, generator=torch.Generator().manual_seed(12))
    n = NEURONS.build(name, tau=2.0, detach_reset=False, surrogate="atan")
    results = []
    for on_cpu in (False, True):
        monkeypatch.setitem(lif_op._STATE, "triton_on_cpu", on_cpu)
        assert lif_op.implementation(x0, surrogate="atan") == ("triton" if on_cpu else "c")
        n.zero_grad()
        x = x0.clone().requires_grad_()
        s, v = n.run(x)
        ((s * g).sum() + v.sum()).backward()
        results.append((s.detach(), v.detach(), x.grad, *(p.grad for p in n.parameters() if p.grad is not None)))
    for a, b in zip(*results):
        assert torch.equal(a, b) and a.stride() == b.stride()


def test_what_the_kernels_do_not_take_runs_the_reference(monkeypatch):
    monkeypatch.setitem(lif_op._STATE, "triton_on_cpu", True)
    dense = torch.randn(4, 3, 8)
    assert lif_op.implementation(dense) == "triton"
    assert lif_op.implementation(torch.randn(17, 3, 8)) == "torch"  # T > MAX_T: registers would not hold T steps
    assert lif_op.implementation(torch.randn(4, 3, 8)[:, :, ::2]) == "torch"  # not one dense block
    assert lif_op.implementation(dense.double()) == "torch"
    monkeypatch.setitem(lif_op._WHY, "triton", "triton cannot be imported (ImportError: stub)")
    assert lif_op.implementation(dense) == "torch"  # no triton on this machine: the reference serves
    assert lif_op.device_implementation("cuda") == "torch (triton cannot be imported (ImportError: stub))"
    monkeypatch.setenv("STEP_CUDA_KERNELS", "triton")  # asked for explicitly: a clear error instead
    with pytest.raises(Exception, match="STEP_CUDA_KERNELS=triton but the Triton kernels are unavailable"):
        lif_op.implementation(dense)
    monkeypatch.setenv("STEP_CUDA_KERNELS", "auto")
    monkeypatch.setitem(lif_op._WHY, "triton", None)
    assert lif_op.device_implementation("cuda") == "triton"
    monkeypatch.setenv("STEP_CUDA_KERNELS", "torch")
    assert lif_op.implementation(dense) == "torch"
    assert lif_op.device_implementation("cuda") == "torch (STEP_CUDA_KERNELS=torch)"
    monkeypatch.setenv("STEP_CUDA_KERNELS", "cuda")
    with pytest.raises(Exception, match="not one of auto, triton, torch"):
        lif_op.implementation(dense)


def _ptxas() -> str | None:
    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    return str(path) if path.exists() else shutil.which("ptxas")


@pytest.mark.skipif(_ptxas() is None, reason="no ptxas: cannot compile for sm_90 here")
def test_kernels_compile_for_sm90_without_contraction_or_approximate_division():
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    def compile_ptx(fn, constexprs, pointer="*fp32"):
        signature = {n: "constexpr" if n in constexprs else pointer if n.endswith("_ptr") else "i32" if n == "N"
                     else "fp32" for n in fn.arg_names}
        compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                                  target=GPUTarget("cuda", 90, 32),
                                  options={"enable_fp_fusion": False, "num_warps": triton_lif.NUM_WARPS})
        return compiled.asm["ptx"]

    forward = compile_ptx(triton_lif._lif_forward_kernel, dict(T=4, CHARGE=1, SOFT=False, INTEGER=False, RECIP=True,
                                                               SHIFT=False, OUT=1, BLOCK=triton_lif.FORWARD_BLOCK),
                          pointer="*bf16")
    backward = compile_ptx(triton_lif._lif_backward_kernel,
                           dict(T=16, CHARGE=3, SOFT=False, INTEGER=False, RECIP=True, SHIFT=True, DETACH=False,
                                SURR=triton_lif.SURROGATE_IDS["atan"], HAS_GS=True, HAS_GV=True, EXACT_EXP=True,
                                OUT=0, BLOCK=triton_lif.backward_block(16)))
    sigmoid = compile_ptx(triton_lif._lif_backward_kernel,
                          dict(T=4, CHARGE=1, SOFT=True, INTEGER=True, RECIP=True, SHIFT=False, DETACH=True,
                               SURR=triton_lif.SURROGATE_IDS["sigmoid"], HAS_GS=True, HAS_GV=False,
                               EXACT_EXP=True, OUT=0, BLOCK=triton_lif.backward_block(4)))
    for ptx in (forward, backward):
        assert not re.search(r"\bfma\.", ptx)  # no contraction anywhere (atan: no library call)
        assert not re.search(r"\bdiv\.(full|approx)", ptx) and not re.search(r"\brcp\.approx", ptx)
    assert "div.rn.f32" in backward
    assert "cvt.rn.bf16.f32" in forward  # the cast of an already rounded value
    assert not re.search(r"\bdiv\.(full|approx)", sigmoid)


def test_a_model_on_the_interpreted_kernels_equals_the_model_on_the_c_kernel(monkeypatch):
    # every neuron of a small Spikformer through the Triton kernels (which keep X for the backward,
    # whatever the surrogate): same logits and parameter gradients as on the CPU path
    from step.components import default_neuron_factory
    from step.registry import MODELS

    torch.manual_seed(0)
    model = MODELS.build("spikformer", num_classes=3, img_size=8, in_chans=2, depth=1, dim=16, heads=2,
                         patch_size=2, neuron=default_neuron_factory(T=2))
    x = torch.rand(2, 2, 2, 8, 8, generator=torch.Generator().manual_seed(1)) * 2
    results = []
    for on_cpu in (False, True):
        monkeypatch.setitem(lif_op._STATE, "triton_on_cpu", on_cpu)
        model.zero_grad()
        out = model(x)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def test_with_triton_interpret_set_for_the_whole_process():
    # what a user gets with TRITON_INTERPRET=1 in the environment: the module's own kernels are the
    # interpreted ones, and the neuron op run through them equals the reference loop
    import os
    import subprocess
    import sys

    code = """
import torch
from step.neurons import kernels, lif_op, triton_lif
assert triton_lif.is_interpreted()
lif_op._STATE["triton_on_cpu"] = True
from step.registry import NEURONS
x0 = torch.randn(4, 3, 50, generator=torch.Generator().manual_seed(0)) * 1.5
out = []
for on in (True, False):
    lif_op._STATE["triton_on_cpu"] = on
    n = NEURONS.build("lif", tau=3.0, surrogate="triangle", detach_reset=False)
    x = x0.clone().requires_grad_()
    s, v = n.run(x)
    (s.sum() + v.sum()).backward()
    out.append((s, v, x.grad))
assert all(torch.equal(a, b) for a, b in zip(*out))
print("interpreted ok")
"""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and "interpreted ok" in done.stdout, done.stderr[-2000:]


def test_one_neuron_per_step_is_not_a_compile_time_constant():
    # Triton turns an integer argument equal to 1 into a constant unless told not to; N = 1 (one
    # neuron per step) must still run, in the interpreter and in the launcher's specialisation
    assert "N" in {p.name for p in triton_lif._lif_forward_kernel.params if p.do_not_specialize}
    assert "N" in {p.name for p in triton_lif._lif_backward_kernel.params if p.do_not_specialize}
    x, gs, gv = _data(T=3, shape=(1,), seed=13)
    kw = dict(tau=2.0, k=None, decay_input=True, th=0.5, reset=0.0, detach_reset=True, max_spike=0,
              surrogate="atan", alpha=2.0)
    _same(triton_interpreted(x, gs, gv, **kw), reference(x, gs, gv, **kw))
