"""Fused multi-step IF/LIF: a custom autograd function with three implementations of one recursion.

Forward runs the charge-fire-reset loop without building a graph; backward runs the exact adjoint
recursion, in SpikingJelly 2.0's order of operations (``spikingjelly/_ops/lif/cpu.py``), so spikes,
final membrane and input gradients agree with ``LIFNode(step_mode='m')`` / ``IFNode`` bit for bit:

    g_H[t] = g_S[t] * sg(H[t] - V_th) + (g_V[t] + c[t+1]) * dV[t]/dH[t]
    g_X[t] = g_H[t] / tau (decay_input) else g_H[t];   c[t] = g_H[t] - g_H[t] / tau  (IF: c = g_H)

``dV/dH`` is ``1 - S`` (hard, detached), ``1 - S + (V_reset - H) sg`` (hard), ``1`` (soft,
detached) or ``1 - V_th sg`` (soft).

* On the CPU for dense float32 tensors: the C kernel ``step/native/lif.c`` (one pass each way; see
  :func:`_saved_form` for what it keeps for backward). ``STEP_KERNELS=torch`` turns it off.
* Elsewhere (accelerators, other dtypes, no C compiler): the torch loop, which keeps ``H`` and
  writes every step into buffers made once.
* ``enable_compile(True)`` (``trainer.compile_neurons``, env ``STEP_COMPILE_NEURONS=1``) runs the
  torch loop through ``torch.compile``; inside a model being compiled (``trainer.compile``) the
  torch loop is traced into the model's graph. tests/test_neurons.py and tests/test_native_lif.py
  check that every path stays bit-identical.
"""

from __future__ import annotations

import ctypes
import math
import os
from typing import Callable

import torch

from step.native import dense_outer_first, load, threads_for

_COMPILE = {"on": os.environ.get("STEP_COMPILE_NEURONS", "0") == "1", "fns": {}}


def enable_compile(on: bool = True) -> None:
    """Route the fused IF/LIF loops through ``torch.compile`` (compiled lazily, on first use)."""
    _COMPILE["on"] = bool(on)


def _maybe_compiled(eager: Callable, pure: Callable) -> Callable:
    """``eager`` (fastest uncompiled form) or the compiled ``pure`` twin (the form Inductor fuses);
    inside a model being compiled (``trainer.compile``) the ``pure`` form, traced into its graph."""
    if torch.compiler.is_compiling():
        return pure
    if not _COMPILE["on"]:
        return eager
    if pure not in _COMPILE["fns"]:
        _COMPILE["fns"][pure] = torch.compile(pure, dynamic=False)
    return _COMPILE["fns"][pure]


def _forward_loop(x_seq, v, tau: float | None, decay_input: bool, th: float, reset: float | None,
                  keep_h: bool):
    """Charge-fire-reset over T in SpikingJelly's rounding, with no allocation inside the loop.

    Every step writes into buffers made once (``out=``): on the CPU a fresh multi-megabyte tensor
    per operation costs page faults that can exceed the arithmetic. Reset to 0 is ``V = H - H S``
    (one ``addcmul``), equal to ``S ? 0 : H`` bit for bit for finite H (``H - H = +0``, ``H - 0 = H``).
    """
    r = 0.0 if reset is None else reset
    spikes = torch.empty_like(x_seq)
    hs = torch.empty_like(x_seq) if keep_h else None
    h_buf = None if keep_h else torch.empty_like(x_seq[0])
    v_bufs = (torch.empty_like(x_seq[0]), torch.empty_like(x_seq[0]))
    shifted = torch.empty_like(x_seq[0]) if r != 0.0 and tau is not None else None
    for t in range(x_seq.shape[0]):
        x = x_seq[t]
        h = hs[t] if keep_h else h_buf
        base = v if r == 0.0 or tau is None else torch.sub(v, r, out=shifted)
        if tau is None:  # IF: H = V + X
            torch.add(v, x, out=h)
        elif decay_input:  # H = V + (X - (V - r)) / tau
            torch.sub(x, base, out=h)
            h.div_(tau).add_(v)
        else:  # H = V - (V - r) / tau + X
            torch.div(base, tau, out=h)
            torch.sub(v, h, out=h)
            h.add_(x)
        s = spikes[t]
        torch.ge(h, th, out=s)
        v_next = v_bufs[t % 2]
        if reset is None:  # soft: H - S th
            torch.sub(h, s, alpha=th, out=v_next)
        elif reset == 0.0:
            torch.addcmul(h, h, s, value=-1, out=v_next)
        else:  # a reset value other than 0 (rare): the selection on S = H >= V_th, allocated
            v_next = torch.where(s.bool(), r, h)
        v = v_next
    return spikes, v, hs  # v is one of the two local buffers: nothing else holds it


def _forward_loop_pure(x_seq, v, tau: float | None, decay_input: bool, th: float, reset: float | None,
                       keep_h: bool):
    """The same loop without out=/in-place ops: the form Inductor fuses best (compiled path)."""
    r = 0.0 if reset is None else reset
    spikes, hs = [], []
    for x in x_seq:
        if tau is None:
            h = v + x
        elif decay_input:
            h = v + (x - (v - r)) / tau
        else:
            h = v - (v - r) / tau + x
        spike = (h >= th).to(h.dtype)
        v = h - spike * th if reset is None else spike * reset + (1 - spike) * h
        spikes.append(spike)
        if keep_h:
            hs.append(h)
    return torch.stack(spikes), v, (torch.stack(hs) if keep_h else None)


def _backward_loop(gs, gv, h, derivative: Callable, tau: float | None, decay_input: bool, th: float,
                   reset: float | None, detach_reset: bool):
    """The adjoint recursion (module docstring) in SpikingJelly's order of operations.

    The surrogate slope is evaluated step by step on ``H[t]`` as SpikingJelly does: a transcendental
    surrogate (sigmoid) rounds differently in a vector tail than inside a vector, so evaluating it
    once over all T steps is not bit-identical when a step's size is not a multiple of the vector
    width. Intermediate results go into three buffers made once (``out=``) in the memory layout of
    the first ``g_S[t] * sg`` (what an allocating version produces), and the per-step input
    gradients are stacked as before: the returned gradient keeps the layout autograd would give,
    which decides the kernels (and the rounding) of the layers before the neuron
    (tests/test_backends.py)."""
    gx = []
    bufs = fired = not_fired = None
    carry = None  # gradient reaching H[t] through V[t]; None stands for zeros (nothing is built)
    last = h.shape[0] - 1
    for t in range(last, -1, -1):
        sg = derivative(h[t] - th)
        if reset is None:
            reset_grad = None if detach_reset else 1 - th * sg  # None stands for the factor 1
        else:  # 1 - S[t], written as not(H >= V_th) into a float buffer: the same 0 / 1 values
            if fired is None:
                fired, not_fired = torch.empty_like(h[t], dtype=torch.bool), torch.empty_like(h[t])
            reset_grad = torch.logical_not(torch.ge(h[t], th, out=fired), out=not_fired)
            if not detach_reset:
                reset_grad = reset_grad + (reset - h[t]) * sg
        through = None if gs is None else gs[t] * sg
        incoming = gv if t == last else carry
        if bufs is None:
            like = through if through is not None else (incoming if incoming is not None else h[t])
            bufs = tuple(torch.empty_like(like) for _ in range(3))
        step_in, gh_buf, carry_buf = bufs
        if incoming is not None and reset_grad is not None:
            incoming = torch.mul(incoming, reset_grad, out=step_in)
        if incoming is None:
            gh = through if through is not None else torch.zeros_like(h[t])
        elif through is None:
            gh = incoming
        else:
            gh = torch.add(through, incoming, out=gh_buf)
        if tau is None:
            gx.append(gh.clone())
            carry = gx[-1]
        else:
            scaled = gh / tau
            gx.append(scaled if decay_input else gh.clone())
            carry = torch.sub(gh, scaled, out=carry_buf)
    gx.reverse()
    return torch.stack(gx)


# ---- the C kernel (step/native/lif.c) ---------------------------------------------------
_CHARGE_IF, _CHARGE_LIF_DECAY_INPUT, _CHARGE_LIF = 0, 1, 2
_RESET_HARD, _RESET_SOFT = 0, 1
_SG_POINTERS, _SG_ATAN, _SG_SIGMOID = 0, 1, 2
#: results of at least this many bytes (a core's L2 here) are written with streaming stores: they
#: would not stay in the caches anyway, and a normal store first reads every destination line
_STREAM_MIN_BYTES = 2 << 20


def _c_library(x_seq: torch.Tensor):
    """The C kernel if it serves this call: float32 on the CPU, dense, not under torch.compile
    (``trainer.compile_neurons``, or a whole model being compiled: Inductor fuses the torch loop)."""
    if _COMPILE["on"] or x_seq.device.type != "cpu" or x_seq.dtype != torch.float32 or x_seq.dim() < 2:
        return None
    if torch.compiler.is_compiling():
        return None
    if x_seq.numel() == 0 or not dense_outer_first(x_seq):
        return None
    return load("lif")


def _inverse_if_power_of_two(tau: float | None) -> float:
    """1 / tau when tau (as float32) is a power of two, so that x / tau == x * (1 / tau) exactly;
    else 0 (the kernel then divides)."""
    if tau is None:
        return 0.0
    t32 = ctypes.c_float(tau).value  # the value the kernel divides by
    if not 2.0**-60 <= t32 <= 2.0**60:
        return 0.0
    return 1.0 / t32 if math.frexp(t32)[0] == 0.5 else 0.0


def _charge_mode(tau: float | None, decay_input: bool) -> int:
    return _CHARGE_IF if tau is None else (_CHARGE_LIF_DECAY_INPUT if decay_input else _CHARGE_LIF)


def _like(t: torch.Tensor | None, ref: torch.Tensor) -> torch.Tensor | None:
    """``t`` with exactly the memory layout of ``ref`` (a copy only when the strides differ)."""
    if t is None or t.stride() == ref.stride():
        return t
    return torch.empty_like(ref).copy_(t)


#: where the C forward reports the statistics of the spikes it writes (set by the energy meter)
_SPIKE_SINK: list = [None]


def set_spike_sink(sink: Callable | None) -> Callable | None:
    """Route the spike statistics of every C forward to ``sink(spikes, steps, total, ones)``
    (``total``: spikes emitted, ``ones``: 1-bits of the per-position spike counts), so that the energy
    meter need not read the spikes back (:class:`step.energy.meter.EnergyMeter`); returns the
    previous sink. None switches it off."""
    previous, _SPIKE_SINK[0] = _SPIKE_SINK[0], sink
    return previous


def _stream(t: torch.Tensor) -> int:
    return int(t.numel() * t.element_size() >= _STREAM_MIN_BYTES)


def _saved_form(surrogate) -> str:
    """What the forward keeps for a C backward, by how the surrogate is evaluated:

    * ``"x"`` (atan, computed in the kernel): the input X; the backward reruns the recurrence for H,
      so the forward writes no H (X is the same size and would otherwise be freed);
    * ``"u"`` (sigmoid: torch evaluates the sigmoid step by step): its argument ``(H - th) alpha``,
      written by the forward in place of H, and the spikes (for the reset's 1 - S);
    * ``"h"`` (any other surrogate: torch evaluates the whole derivative on H): H.
    """
    form = surrogate.kernel_form()
    return {"atan": "x", "sigmoid": "u"}.get(form[0], "h") if form is not None else "h"


def _c_forward(lib, x_seq, tau, decay_input, th, reset, keep, u_scale=0.0):
    """Spikes, final membrane and (``keep``) H, or (``u_scale`` not 0) ``(H - th) u_scale``."""
    T = x_seq.shape[0]
    N = x_seq.numel() // T
    spikes = torch.empty_like(x_seq)
    hs = torch.empty_like(x_seq) if keep else None
    v = torch.empty_like(x_seq[0])
    sink = _SPIKE_SINK[0]
    stats = (ctypes.c_double * 2)() if sink is not None else None
    lib.step_lif_forward(x_seq.data_ptr(), spikes.data_ptr(), hs.data_ptr() if keep else None, v.data_ptr(),
                         T, N, _charge_mode(tau, decay_input), _RESET_SOFT if reset is None else _RESET_HARD,
                         1.0 if tau is None else tau, _inverse_if_power_of_two(tau), th,
                         0.0 if reset is None else reset, 0.0 if reset is None else reset, u_scale, stats,
                         _stream(x_seq), threads_for(x_seq.numel()))
    if sink is not None:
        sink(spikes, T, stats[0], stats[1])
    return spikes, v, hs


def _c_backward(lib, gs, gv, saved, form, surrogate, tau, decay_input, th, reset, detach_reset):
    """The detached-reset adjoint in one pass over the tensors ``saved`` in the form ``form``
    (:func:`_saved_form`); all have the layout H had."""
    ref = saved[0]
    T = ref.shape[0]
    N = ref.numel() // T
    layout = None
    if gs is not None and gs.stride() != ref.stride():
        # torch's loop returns the layout of its per-step products gS[t] * sg (TensorIterator's rule
        # for mixed layouts), stacked over T; that layout picks the kernels, and so the rounding, of
        # the layers before the neuron, so the kernel returns it too (SpikingJelly agrees with it)
        layout = (N, *torch.mul(gs[0], ref[0]).stride())
    gs, gv = _like(gs, ref), _like(gv, ref[0])
    h = x = spikes = None
    keep: list[torch.Tensor] = []  # tensors the pointer array refers to
    c1 = c2 = 0.0
    mode = _SG_ATAN  # also when there is no gS: the surrogate is then never evaluated
    if form == "x":
        x = ref
        if gs is not None:
            _, c1, c2 = surrogate.kernel_form()
    elif form == "u":
        u, spikes = saved
        if gs is not None:  # torch's sigmoid step by step, as Sigmoid.derivative evaluates it
            mode, c1 = _SG_SIGMOID, surrogate.kernel_form()[1]
            sig = torch.empty_like(u)
            keep = [torch.sigmoid(u[t], out=sig[t]) for t in range(T)]
    else:
        h = ref
        if gs is not None:
            mode = _SG_POINTERS
            keep = [_like(surrogate.derivative(h[t] - th), h[t]) for t in range(T)]
    pointers = (ctypes.c_void_p * T)(*[k.data_ptr() for k in keep]) if keep else None
    gx = torch.empty_like(ref)
    r = 0.0 if reset is None else reset

    def ptr(t: torch.Tensor | None):
        return None if t is None else t.data_ptr()

    failed = lib.step_lif_backward(
        ptr(gs), ptr(gv), ptr(h), ptr(x), ptr(spikes), pointers, gx.data_ptr(),
        T, N, _charge_mode(tau, decay_input), _RESET_SOFT if reset is None else _RESET_HARD, mode,
        1.0 if tau is None else tau, _inverse_if_power_of_two(tau), th, r, r, c1, c2, _stream(gx),
        threads_for(ref.numel()))
    if failed:
        raise MemoryError(f"the C neuron backward could not allocate {T} x 1024 floats per thread")
    if layout is not None and layout != gx.stride():
        gx = torch.empty_strided(gx.shape, layout, dtype=gx.dtype).copy_(gx)
    return gx


class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, v0, tau, decay_input, th, reset, detach_reset, surrogate):  # type: ignore[override]
        ctx.set_materialize_grads(False)  # an unused final membrane gives gv=None, not a tensor of zeros
        need_grad = ctx.needs_input_grad[0]
        lib = _c_library(x_seq)
        form = _saved_form(surrogate) if lib is not None else "h"
        if lib is not None:
            u_scale = surrogate.kernel_form()[1] if need_grad and form == "u" else 0.0
            spikes, v, kept = _c_forward(lib, x_seq, tau, decay_input, th, reset, need_grad and form != "x", u_scale)
            saved = {"x": (x_seq,), "u": (kept, spikes), "h": (kept,)}[form]
        else:
            loop = _maybe_compiled(_forward_loop, _forward_loop_pure)
            spikes, v, h = loop(x_seq, torch.full_like(x_seq[0], v0), tau, decay_input, th, reset, need_grad)
            saved = (h,)
        if need_grad:
            ctx.save_for_backward(*saved)
            ctx.cfg = (surrogate, tau, decay_input, th, reset, detach_reset)
            ctx.c_library, ctx.form = lib, form
        return spikes, v

    @staticmethod
    def backward(ctx, gs, gv):  # type: ignore[override]
        saved = ctx.saved_tensors
        surrogate, *cfg = ctx.cfg  # gs / gv may be None (unused output): the loop skips them
        if ctx.c_library is not None:
            gx = _c_backward(ctx.c_library, gs, gv, saved, ctx.form, surrogate, *cfg)
        else:
            loop = _maybe_compiled(_backward_loop, _backward_loop)
            gx = loop(gs, gv, saved[0], surrogate.derivative, *cfg)
        return gx, None, None, None, None, None, None, None


def fused_lif(x_seq: torch.Tensor, tau: float | None, decay_input: bool, v_threshold: float,
              v_reset: float | None, detach_reset: bool, surrogate) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-step IF (``tau=None``) or LIF from a membrane of ``v_reset`` (0 for soft reset).

    Returns ``(spikes [T, ...], final membrane [...])``.
    """
    v0 = 0.0 if v_reset is None else float(v_reset)
    return _FusedLIF.apply(x_seq, v0, tau, decay_input, float(v_threshold), v_reset, detach_reset, surrogate)
