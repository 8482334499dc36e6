"""The CUDA implementation of the neuron op ``step::lif_forward`` / ``step::lif_backward``: Triton.

One program owns ``BLOCK`` neurons for all T steps, so the membrane stays in registers: the forward
reads X once and writes the spikes once (and the final membrane); the backward reads X and g_S once
and writes g_X once. It keeps no charged membrane H from the forward: it runs the forward
recurrence again on X into registers (T is a compile-time constant, at most :data:`MAX_T`), so a
training step moves 5 tensors of T x N values where SpikingJelly 2.0's Triton kernels move 6 (they
write H forward and read it back). Arithmetic is float32 for every input dtype.

Every expression follows the reference torch loop (``step/neurons/kernels.py``) operation by
operation, as torch evaluates it on the same device, so that results are bit-identical:

* no contraction into FMA (``enable_fp_fusion=False``), IEEE division (``div_rn``; Triton's ``/`` is
  approximate), and the exponential of the CUDA math library (``libdevice.exp``, what torch's
  ``std::exp`` compiles to; ``tl.exp`` is an approximation);
* ``RECIP``: torch on CUDA divides by a Python number as a multiplication by its float32
  reciprocal (``aten/src/ATen/native/cuda/BinaryDivTrueKernel.cu``), on the CPU it divides: both
  are available, chosen by the device the tensors live on;
* stores of bfloat16 values round to nearest even in integer arithmetic before the cast, so the
  cast itself is exact (Triton's interpreter truncates where a GPU rounds).

``TRITON_INTERPRET=1`` semantics are reachable on CPU tensors through ``interpret=True`` (a copy of
this module whose kernels are interpreted): tests/test_triton_lif.py checks every mode there against
the reference loop. The interpreter evaluates ``exp`` with numpy rather than the CUDA math library,
the one difference the tests account for (they swap torch's ``exp`` for numpy's and then compare
bit for bit).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

#: the surrogates the kernels evaluate (registry name -> id); others run the reference loop
SURROGATE_IDS = {"atan": 0, "sigmoid": 1, "rectangle": 2, "triangle": 3, "erf": 4, "piecewise_quadratic": 5,
                 "superspike": 6, "straight_through": 7}
#: the backward keeps H[t] (and V[t-1], X[t] for PLIF) of every step in registers, so T is bounded
MAX_T = 16
#: output dtypes (codes passed to the kernels)
DTYPES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
CHARGE_IF, CHARGE_LIF_DECAY, CHARGE_LIF, CHARGE_PLIF_DECAY, CHARGE_PLIF = 0, 1, 2, 3, 4
FORWARD_BLOCK, NUM_WARPS = 1024, 4


def backward_block(T: int) -> int:
    """Neurons per backward program: the T membranes per neuron live in registers, so fewer
    neurons for a longer T (about 2048 / T: 62 registers a thread at T = 4, 114 at T = 16 on sm_90,
    no spills; checked with ptxas through ``triton.compile`` for sm_90 without a GPU)."""
    per_thread_budget = 2048 // max(T, 1)
    return max(128, min(1024, 1 << (per_thread_budget.bit_length() - 1)))  # a power of two


@triton.jit
def _rounded(v, OUT: tl.constexpr):
    """``v`` (float32) rounded to the output dtype's nearest value (ties to even), still as float32."""
    if OUT == 1:  # bfloat16: round the upper 16 bits in integer arithmetic; NaN stays NaN
        bits = v.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return tl.where(v != v, v, bits.to(tl.float32, bitcast=True))
    elif OUT == 2:  # float16: the conversion rounds to nearest even, on a GPU and in numpy alike
        return v.to(tl.float16).to(tl.float32)
    else:
        return v


@triton.jit
def _scale(a, tau, inv_tau, RECIP: tl.constexpr):
    """``a / tau`` as torch computes a division by a Python number on this device."""
    if RECIP:
        return a * inv_tau
    else:
        return tl.div_rn(a, tau)


@triton.jit
def _charge(v, x, k, tau, inv_tau, r, CHARGE: tl.constexpr, RECIP: tl.constexpr, SHIFT: tl.constexpr):
    if SHIFT:
        base = v - r
    else:
        base = v
    if CHARGE == 0:  # IF
        h = v + x
    elif CHARGE == 1:  # LIF, decay_input: V + (X - (V - r)) / tau
        h = _scale(x - base, tau, inv_tau, RECIP) + v
    elif CHARGE == 2:  # LIF: V - (V - r) / tau + X
        h = (v - _scale(base, tau, inv_tau, RECIP)) + x
    elif CHARGE == 3:  # PLIF, decay_input: V + (X - (V - r)) k
        h = (x - base) * k + v
    else:  # PLIF: V - (V - r) k + X
        h = (v - base * k) + x
    return h


@triton.jit
def _round_half_even(c):
    f = tl.floor(c)
    d = c - f  # exact: c >= 0 and f its integer part
    odd = f - 2.0 * tl.floor(f * 0.5)
    return tl.where(d > 0.5, f + 1.0, tl.where(d < 0.5, f, f + odd))


@triton.jit
def _fire(h, th, max_spike, INTEGER: tl.constexpr):
    if INTEGER:  # round(clamp(H / V_th, 0, D)), NaN propagating as torch.clamp does
        u = tl.div_rn(h, th)
        c = tl.where(u < 0.0, 0.0, tl.where(u > max_spike, max_spike, u))
        s = _round_half_even(c)
    else:
        s = tl.where(h >= th, 1.0, 0.0)
    return s


@triton.jit
def _reset(h, s, th, r, SOFT: tl.constexpr, INTEGER: tl.constexpr):
    if SOFT:
        v = h - s * th
    else:
        if INTEGER:
            f = tl.where(s > 0.0, 1.0, 0.0)
        else:
            f = s
        v = f * r + (1.0 - f) * h
    return v


@triton.jit
def _surrogate(x, c1, c2, c3, SURR: tl.constexpr, RECIP: tl.constexpr, EXACT_EXP: tl.constexpr):
    """d spike / d x at ``x = H - V_th`` in the order of operations of ``step/surrogates.py``."""
    if SURR == 0:  # atan: (alpha / 2) * (1 / (1 + (x pi alpha / 2)^2)); c1 = pi alpha / 2, c2 = alpha / 2
        z = x * c1
        sg = tl.div_rn(1.0, z * z + 1.0) * c2
    elif SURR == 1:  # sigmoid: s = 1 / (1 + exp(-alpha x)); (1 - s) s alpha; c1 = alpha
        a = x * c1
        if EXACT_EXP:
            e = libdevice.exp(-a)
        else:
            e = tl.exp(-a)
        s = tl.div_rn(1.0, e + 1.0)
        sg = ((1.0 - s) * s) * c1
    elif SURR == 2:  # rectangle: (|x| < alpha / 2) / alpha; c1 = alpha / 2, c2 = alpha, c3 = 1 / alpha
        m = tl.where(tl.abs(x) < c1, 1.0, 0.0)
        sg = _scale(m, c2, c3, RECIP)
    elif SURR == 3:  # triangle: clamp_min(1 - |x| / alpha, 0) / alpha; c2 = alpha, c3 = 1 / alpha
        w = 1.0 - _scale(tl.abs(x), c2, c3, RECIP)
        w = tl.where(w < 0.0, 0.0, w)
        sg = _scale(w, c2, c3, RECIP)
    elif SURR == 4:  # erf: (alpha / sqrt(pi)) exp(-(alpha x)^2); c1 = alpha, c2 = alpha / sqrt(pi)
        z = x * c1
        if EXACT_EXP:
            e = libdevice.exp((-z) * z)
        else:
            e = tl.exp((-z) * z)
        sg = e * c2
    elif SURR == 5:  # piecewise quadratic: clamp_min(alpha - alpha^2 |x|, 0); c1 = alpha^2, c2 = alpha
        w = c2 - tl.abs(x) * c1
        sg = tl.where(w < 0.0, 0.0, w)
    elif SURR == 6:  # superspike: 1 / (1 + alpha |x|)^2; c1 = alpha
        z = tl.abs(x) * c1 + 1.0
        sg = tl.div_rn(1.0, z * z)
    else:  # straight through: |x| <= alpha; c1 = alpha
        sg = tl.where(tl.abs(x) <= c1, 1.0, 0.0)
    return sg


@triton.jit
def _block(k_ptr, N, CHARGE: tl.constexpr, BLOCK: tl.constexpr):
    """This program's element offsets and mask, the stride of one time step, and PLIF's decay k."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    if CHARGE >= 3:
        k = tl.load(k_ptr).to(tl.float32)
    else:
        k = 0.0
    return offs, offs < N, N.to(tl.int64), k


@triton.jit(do_not_specialize=["N"])  # N = 1 would become a constant (no .to() on it)
def _lif_forward_kernel(x_ptr, k_ptr, s_ptr, v_ptr, N, tau, inv_tau, th, r, max_spike,
                        T: tl.constexpr, CHARGE: tl.constexpr, SOFT: tl.constexpr, INTEGER: tl.constexpr,
                        RECIP: tl.constexpr, SHIFT: tl.constexpr, OUT: tl.constexpr, BLOCK: tl.constexpr):
    offs, mask, step, k = _block(k_ptr, N, CHARGE, BLOCK)
    v = tl.full([BLOCK], 0.0, tl.float32) + r  # V[-1] = V_r (0 for a soft reset)
    for t in tl.static_range(T):
        x = tl.load(x_ptr + t * step + offs, mask=mask, other=0.0).to(tl.float32)
        h = _charge(v, x, k, tau, inv_tau, r, CHARGE, RECIP, SHIFT)
        s = _fire(h, th, max_spike, INTEGER)
        v = _reset(h, s, th, r, SOFT, INTEGER)
        tl.store(s_ptr + t * step + offs, s.to(s_ptr.dtype.element_ty), mask=mask)
    tl.store(v_ptr + offs, _rounded(v, OUT).to(v_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["N"])
def _lif_backward_kernel(x_ptr, k_ptr, gs_ptr, gv_ptr, gx_ptr, acc_ptr, N, tau, inv_tau, th, r, max_spike,
                         c1, c2, c3,
                         T: tl.constexpr, CHARGE: tl.constexpr, SOFT: tl.constexpr, INTEGER: tl.constexpr,
                         RECIP: tl.constexpr, SHIFT: tl.constexpr, DETACH: tl.constexpr, SURR: tl.constexpr,
                         HAS_GS: tl.constexpr, HAS_GV: tl.constexpr, EXACT_EXP: tl.constexpr, OUT: tl.constexpr,
                         BLOCK: tl.constexpr):
    offs, mask, step, k = _block(k_ptr, N, CHARGE, BLOCK)
    # the forward recurrence again, keeping H[t] (and, for PLIF, X[t] and V[t-1]) in registers
    hs = ()
    xs = ()
    vs = ()
    v = tl.full([BLOCK], 0.0, tl.float32) + r
    for t in tl.static_range(T):
        x = tl.load(x_ptr + t * step + offs, mask=mask, other=0.0).to(tl.float32)
        h = _charge(v, x, k, tau, inv_tau, r, CHARGE, RECIP, SHIFT)
        hs = hs + (h,)
        if CHARGE >= 3:
            xs = xs + (x,)
            vs = vs + (v,)
        v = _reset(h, _fire(h, th, max_spike, INTEGER), th, r, SOFT, INTEGER)
    if HAS_GV:
        c = tl.load(gv_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        c = tl.full([BLOCK], 0.0, tl.float32)
    acc = tl.full([BLOCK], 0.0, tl.float32)
    for t in tl.static_range(T - 1, -1, -1):
        h = hs[t]
        # c (the gradient reaching V[t]) exists for t < T - 1, and at T - 1 when g_V is given
        if HAS_GS:
            g = tl.load(gs_ptr + t * step + offs, mask=mask, other=0.0).to(tl.float32)
        else:
            g = tl.full([BLOCK], 0.0, tl.float32)
        # the reset's contribution to S[t]'s gradient (undetached), in autograd's order
        if (HAS_GV or t < T - 1) and not DETACH:
            if SOFT:
                if HAS_GS:
                    g = g + (-c) * th
                else:
                    g = (-c) * th
            elif not INTEGER:
                if HAS_GS:
                    g = (g + (-(c * h))) + c * r
                else:
                    g = (-(c * h)) + c * r
        if INTEGER:  # straight-through: 1 inside [0, D], divided by V_th
            u = tl.div_rn(h, th)
            inside = tl.where((u >= 0.0) & (u <= max_spike), 1.0, 0.0)
            through = tl.div_rn(g * inside, th)
        else:
            through = g * _surrogate(h - th, c1, c2, c3, SURR, RECIP, EXACT_EXP)
        # does S[t] get a gradient at all (from g_S, or from the undetached reset)?
        if HAS_GV or t < T - 1:
            if SOFT:
                via = c
            else:
                if INTEGER:
                    fired = tl.where(_fire(h, th, max_spike, INTEGER) > 0.0, 1.0, 0.0)
                else:
                    fired = tl.where(h >= th, 1.0, 0.0)
                via = c * (1.0 - fired)
            if HAS_GS or (not DETACH and (SOFT or not INTEGER)):
                gh = through + via
            else:
                gh = via
        else:
            if HAS_GS:
                gh = through
            else:
                gh = tl.full([BLOCK], 0.0, tl.float32)
        if CHARGE == 0:
            gx = gh
            c = gh
        else:
            if CHARGE >= 3:
                scaled = gh * k
                base = vs[t] - r
                if CHARGE == 3:
                    acc = acc + gh * (xs[t] - base)
                else:
                    acc = acc + (-gh) * base
            else:
                scaled = _scale(gh, tau, inv_tau, RECIP)
            if CHARGE == 1 or CHARGE == 3:
                gx = scaled
            else:
                gx = gh
            c = gh - scaled
        tl.store(gx_ptr + t * step + offs, _rounded(gx, OUT).to(gx_ptr.dtype.element_ty), mask=mask)
    if CHARGE >= 3:
        tl.store(acc_ptr + offs, acc, mask=mask)


# ---- launchers ------------------------------------------------------------------------------
def _f32(value: float) -> float:
    """``value`` rounded to float32 (what torch turns a Python number into for float32 arithmetic)."""
    return float(np.float32(value))


def _reciprocal(value: float) -> float:
    """float32(1 / float32(value)): torch's CUDA divisor for ``t / value``."""
    return float(np.float32(1.0) / np.float32(value))


def surrogate_constants(name: str, alpha: float) -> tuple[float, float, float]:
    """(c1, c2, c3) of :func:`_surrogate` for the registered surrogate ``name`` at ``alpha``."""
    import math

    a = float(alpha)
    table = {
        "atan": (math.pi / 2 * a, a / 2, 0.0),
        "sigmoid": (a, 0.0, 0.0),
        "rectangle": (a / 2, a, _reciprocal(a)),
        "triangle": (0.0, a, _reciprocal(a)),
        "erf": (a, a / math.sqrt(math.pi), 0.0),
        "piecewise_quadratic": (a * a, a, 0.0),
        "superspike": (a, 0.0, 0.0),
        "straight_through": (a, 0.0, 0.0),
    }
    return tuple(_f32(c) for c in table[name])


def _charge_mode(tau: float | None, k, decay_input: bool) -> int:
    if k is not None:
        return CHARGE_PLIF_DECAY if decay_input else CHARGE_PLIF
    if tau is None:
        return CHARGE_IF
    return CHARGE_LIF_DECAY if decay_input else CHARGE_LIF


_INTERPRETED: dict = {}


def _interpreted():
    """A copy of this module whose kernels run in Triton's interpreter (on CPU tensors)."""
    if "module" not in _INTERPRETED:
        spec = importlib.util.spec_from_file_location(__name__ + "_interpreted", __file__)
        module = importlib.util.module_from_spec(spec)
        previous = os.environ.get("TRITON_INTERPRET")
        os.environ["TRITON_INTERPRET"] = "1"
        try:
            spec.loader.exec_module(module)
        finally:
            if previous is None:
                os.environ.pop("TRITON_INTERPRET", None)
            else:
                os.environ["TRITON_INTERPRET"] = previous
        _INTERPRETED["module"] = module
    return _INTERPRETED["module"]


def is_interpreted() -> bool:
    """True in a module whose kernels run in Triton's interpreter (``TRITON_INTERPRET=1``)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_lif_forward_kernel, InterpretedFunction)


def _launch(kernel, grid, x: torch.Tensor, *args, **meta) -> None:
    if x.device.type == "cuda":
        with torch.cuda.device(x.device):
            kernel[grid](*args, **meta, num_warps=NUM_WARPS, enable_fp_fusion=False)
    else:
        kernel[grid](*args, **meta)


def forward(x: torch.Tensor, k: torch.Tensor | None, tau: float | None, decay_input: bool, threshold: float,
            v_reset: float | None, max_spike: int, *, recip: bool | None = None,
            interpret: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes (x's dtype and layout) and the final membrane V[T-1] of one multi-step neuron call.

    ``x`` is [T, ...], one dense block with T outermost (``step.native.dense_outer_first``).
    ``recip`` (default: on CUDA) divides by tau as torch does on CUDA; ``interpret`` runs the
    kernel in Triton's interpreter (CPU tensors).
    """
    if interpret and not is_interpreted():
        return _interpreted().forward(x, k, tau, decay_input, threshold, v_reset, max_spike, recip=recip)
    T = x.shape[0]
    N = x.numel() // T
    spikes = torch.empty_like(x)
    v = torch.empty_like(x[0])
    recip = x.device.type == "cuda" if recip is None else recip
    r = 0.0 if v_reset is None else _f32(v_reset)
    grid = (triton.cdiv(N, FORWARD_BLOCK),)
    _launch(_lif_forward_kernel, grid, x, x, k if k is not None else x, spikes, v, N,
            _f32(tau or 1.0), _reciprocal(tau or 1.0), _f32(threshold), r, float(max_spike or 1),
            T=T, CHARGE=_charge_mode(tau, k, decay_input), SOFT=v_reset is None, INTEGER=bool(max_spike),
            RECIP=bool(recip), SHIFT=r != 0.0, OUT=DTYPES[x.dtype], BLOCK=FORWARD_BLOCK)
    return spikes, v


def backward(gs: torch.Tensor | None, gv: torch.Tensor | None, x: torch.Tensor, k: torch.Tensor | None,
             tau: float | None, decay_input: bool, threshold: float, v_reset: float | None, detach_reset: bool,
             max_spike: int, surrogate: str, alpha: float, *, recip: bool | None = None,
             interpret: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """g_X (x's dtype and layout) and, for PLIF, the per-neuron sums of the decay's gradient
    (float32, x[0]'s layout). ``gs`` / ``gv`` (None: an unused output) must have x's layout."""
    if interpret and not is_interpreted():
        return _interpreted().backward(gs, gv, x, k, tau, decay_input, threshold, v_reset, detach_reset,
                                       max_spike, surrogate, alpha, recip=recip)
    T = x.shape[0]
    N = x.numel() // T
    gx = torch.empty_like(x)
    acc = torch.empty_like(x[0], dtype=torch.float32) if k is not None else None
    recip = x.device.type == "cuda" if recip is None else recip
    r = 0.0 if v_reset is None else _f32(v_reset)
    c1, c2, c3 = surrogate_constants(surrogate, alpha) if not max_spike else (0.0, 0.0, 0.0)
    block = backward_block(T)
    grid = (triton.cdiv(N, block),)
    _launch(_lif_backward_kernel, grid, x, x, k if k is not None else x, gs if gs is not None else x,
            gv if gv is not None else x, gx, acc if acc is not None else x, N,
            _f32(tau or 1.0), _reciprocal(tau or 1.0), _f32(threshold), r, float(max_spike or 1), c1, c2, c3,
            T=T, CHARGE=_charge_mode(tau, k, decay_input), SOFT=v_reset is None, INTEGER=bool(max_spike),
            RECIP=bool(recip), SHIFT=r != 0.0, DETACH=bool(detach_reset),
            SURR=SURROGATE_IDS[surrogate] if not max_spike else 0, HAS_GS=gs is not None, HAS_GV=gv is not None,
            EXACT_EXP=not is_interpreted(), OUT=DTYPES[x.dtype], BLOCK=block)
    return gx, acc
