"""The reference implementation of the multi-step neuron op, and its CPU kernel in C.

The op itself (``step::lif_forward`` / ``step::lif_backward``, :mod:`step.neurons.lif_op`) runs
one recursion for IF, LIF, parametric LIF (a learnable decay ``k``) and the integer LIF:

    H[t] = V[t-1] + X[t]                                  (IF)
    H[t] = V[t-1] + (X[t] - (V[t-1] - V_r)) / tau         (LIF, decay_input; PLIF: * k)
    H[t] = V[t-1] - (V[t-1] - V_r) / tau + X[t]           (LIF; PLIF: * k)
    S[t] = H[t] >= V_th,  or round(clamp(H[t] / V_th, 0, D)) (integer LIF)
    V[t] = S[t] V_r + (1 - S[t]) H[t] (hard reset),  H[t] - S[t] V_th (soft reset, ``reset=None``)

The arithmetic is float32 whatever the input dtype (as SpikingJelly's CPU reference and kernels do);
spikes and gradients come back in the input's dtype. This file holds:

* the torch loops (:func:`_forward_loop`, :func:`_backward_loop`): the reference, which every
  other implementation equals bit for bit on the same device. The backward is the adjoint
  recursion written in the order of operations autograd uses on the generic loop
  (:meth:`step.neurons.base.SpikingNeuron.run`), so the op and the autograd loop give the same
  input gradients, for a detached reset or not (and SpikingJelly 2.0's ``LIFNode`` / ``IFNode``,
  which follow the same order on the CPU; ``tests/test_neurons.py``):

      g_H[t] = c[t+1] dV/dH + g_S'[t] sg(H[t] - V_th)
      g_S'[t] = g_S[t] - c H[t] + c V_r (hard, not detached),  g_S[t] - c V_th (soft, not detached)
      g_X[t] = g_H[t] / tau (decay_input) else g_H[t];   c[t] = g_H[t] - g_H[t] / tau  (IF: c = g_H)

  with ``dV/dH = 1 - S`` (hard) or ``1`` (soft). The only sum of PLIF, its decay's gradient
  ``sum_t sum_n g_H (X - (V - V_r))``, is summed over time per neuron, then over neurons by one
  ``torch.sum``: every implementation writes the per-neuron sums and shares that last step.
* the C kernel ``step/native/lif.c`` (IF/LIF with a binary spike, float32, on the CPU; see
  :func:`_saved_form` for what it keeps for backward). ``STEP_KERNELS=torch`` turns it off.
* ``enable_compile(True)`` (``trainer.compile_neurons``, env ``STEP_COMPILE_NEURONS=1``) runs the
  torch loop through ``torch.compile``. tests/test_neurons.py and tests/test_native_lif.py check
  that every path stays bit-identical.
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
    """Route the IF/LIF torch loops through ``torch.compile`` (compiled lazily, on first use)."""
    _COMPILE["on"] = bool(on)


def compile_enabled() -> bool:
    return _COMPILE["on"]


def _maybe_compiled(eager: Callable, pure: Callable) -> Callable:
    """``eager`` (fastest uncompiled form) or, with ``enable_compile``, the compiled ``pure`` twin
    (the form Inductor fuses best)."""
    if not _COMPILE["on"] or torch.compiler.is_compiling():
        return eager
    if pure not in _COMPILE["fns"]:
        _COMPILE["fns"][pure] = torch.compile(pure, dynamic=False)
    return _COMPILE["fns"][pure]


def _threshold_tensor(like: torch.Tensor, th: float) -> torch.Tensor:
    """The threshold as a 0-d float32 tensor on ``like``'s device: the integer neuron divides by its
    threshold buffer (a tensor, so true division on every device; a Python number divisor is turned
    into a multiplication by its reciprocal on CUDA)."""
    return like.new_full((), th, dtype=torch.float32)


def _hard_reset(h, s, r: float, out=None):
    """``S V_r + (1 - S) H`` with SpikingJelly's rounding (also at infinities and signed zeros)."""
    keep = torch.sub(1.0, s)
    if r == 0.0:  # S * 0 is +0 (S >= 0): 0 + (1 - S) H, one addcmul on a zero buffer
        return torch.addcmul(torch.zeros_like(h), keep, h, out=out)
    return torch.add(torch.mul(s, r), torch.mul(keep, h), out=out)


def _forward_loop(x_seq, v, tau: float | None, decay_input: bool, th: float, reset: float | None,
                  keep_h: bool, k: torch.Tensor | None = None, max_spike: int = 0, out_dtype=None):
    """Charge-fire-reset over T in SpikingJelly's rounding, with no allocation inside the loop.

    ``x_seq`` and ``v`` are float32; ``k`` (PLIF) replaces ``/ tau`` by ``* k``; ``max_spike`` > 0
    selects the integer spike. Returns ``(spikes in out_dtype, final V, H or None)``. Every step
    writes into buffers made once (``out=``): on the CPU a fresh multi-megabyte tensor per operation
    costs page faults that can exceed the arithmetic.
    """
    r = 0.0 if reset is None else reset
    spikes = torch.empty_like(x_seq, dtype=out_dtype or x_seq.dtype)
    hs = torch.empty_like(x_seq) if keep_h else None
    h_buf = None if keep_h else torch.empty_like(x_seq[0])
    v_bufs = (torch.empty_like(x_seq[0]), torch.empty_like(x_seq[0]))
    leak = tau is not None or k is not None
    shifted = torch.empty_like(x_seq[0]) if r != 0.0 and leak else None
    th_t = _threshold_tensor(x_seq, th) if max_spike else None
    s_buf = torch.empty_like(x_seq[0]) if max_spike or spikes.dtype != x_seq.dtype else None
    for t in range(x_seq.shape[0]):
        x = x_seq[t]
        h = hs[t] if keep_h else h_buf
        base = v if r == 0.0 or not leak else torch.sub(v, r, out=shifted)
        if not leak:  # IF: H = V + X
            torch.add(v, x, out=h)
        elif decay_input:  # H = V + (X - (V - r)) / tau   (PLIF: * k)
            torch.sub(x, base, out=h)
            (h.div_(tau) if k is None else h.mul_(k)).add_(v)
        else:  # H = V - (V - r) / tau + X   (PLIF: * k)
            torch.div(base, tau, out=h) if k is None else torch.mul(base, k, out=h)
            torch.sub(v, h, out=h)
            h.add_(x)
        s = spikes[t] if s_buf is None else s_buf
        if max_spike:  # round(clamp(H / V_th, 0, D)); V_th a tensor as in IntegerLIF.fire
            torch.div(h, th_t, out=s)
            torch.round(s.clamp_(0, max_spike), out=s)
        else:
            torch.ge(h, th, out=s)
        v_next = v_bufs[t % 2]
        if reset is None:  # soft: H - S th
            if max_spike:
                torch.sub(h, torch.mul(s, th_t), out=v_next)
            else:
                torch.sub(h, s, alpha=th, out=v_next)  # S th is exact for S in {0, 1}
        else:
            _hard_reset(h, torch.gt(s, 0).to(h.dtype) if max_spike else s, r, out=v_next)
        if s_buf is not None:
            spikes[t].copy_(s)
        v = v_next
    return spikes, v, hs  # v is one of the two local buffers: nothing else holds it


def _forward_loop_pure(x_seq, v, tau: float | None, decay_input: bool, th: float, reset: float | None,
                       keep_h: bool, k: torch.Tensor | None = None, max_spike: int = 0, out_dtype=None):
    """The same loop without out=/in-place ops: the form Inductor fuses best (compiled path)."""
    r = 0.0 if reset is None else reset
    th_t = _threshold_tensor(x_seq, th) if max_spike else None
    spikes, hs = [], []
    for x in x_seq:
        if tau is None and k is None:
            h = v + x
        elif decay_input:
            h = v + ((x - (v - r)) / tau if k is None else (x - (v - r)) * k)
        else:
            h = v - ((v - r) / tau if k is None else (v - r) * k) + x
        if max_spike:
            spike = torch.round(torch.clamp(h / th_t, 0, max_spike))
            fired = (spike > 0).to(h.dtype)
            v = h - spike * th_t if reset is None else fired * r + (1 - fired) * h
        else:
            spike = (h >= th).to(h.dtype)
            v = h - spike * th if reset is None else spike * r + (1 - spike) * h
        spikes.append(spike)
        if keep_h:
            hs.append(h)
    return torch.stack(spikes).to(out_dtype or x_seq.dtype), v, (torch.stack(hs) if keep_h else None)


def _backward_loop(gs, gv, h, derivative: Callable, tau: float | None, decay_input: bool, th: float,
                   reset: float | None, detach_reset: bool, k: torch.Tensor | None = None, max_spike: int = 0,
                   x: torch.Tensor | None = None):
    """The adjoint recursion (module docstring) in autograd's order of operations on the generic loop.

    ``h`` holds H[t] (float32); ``gs`` / ``gv`` may be None (an unused output). With ``k`` (PLIF),
    ``x`` (float32) is needed too, and the per-neuron sums of the decay's gradient are returned as
    a second result (else None). The surrogate slope is evaluated step by step on ``H[t]`` as
    SpikingJelly does: a transcendental surrogate (sigmoid) rounds differently in a vector tail than
    inside a vector, so evaluating it once over all T steps is not bit-identical when a step's size
    is not a multiple of the vector width. Intermediate results of the common case go into three
    buffers made once (``out=``) in the memory layout of the first ``g_S[t] * sg`` (what an
    allocating version produces), and the per-step input gradients are stacked: the returned
    gradient keeps the layout autograd would give, which decides the kernels (and the rounding) of
    the layers before the neuron (tests/test_backends.py)."""
    gx = []
    bufs = fired = not_fired = None
    carry = None  # gradient reaching V[t] from step t + 1; None stands for zeros (nothing is built)
    last = h.shape[0] - 1
    r = 0.0 if reset is None else reset
    th_t = _threshold_tensor(h, th) if max_spike else None
    acc = torch.zeros_like(h[0]) if k is not None else None
    for t in range(last, -1, -1):
        ht = h[t]
        incoming = gv if t == last else carry
        grad_s = None if gs is None else gs[t]
        keep = None  # 1 - S[t] (hard reset): the factor dV/dH
        if reset is None:  # V = H - S V_th: dV/dH = 1; S[t] gets -c V_th unless detached
            if incoming is not None and not detach_reset:
                extra = (-incoming) * (th_t if max_spike else th)
                grad_s = extra if grad_s is None else grad_s + extra
        elif max_spike:  # the reset reads S > 0, which has no gradient
            keep = torch.logical_not(torch.round(torch.clamp(ht / th_t, 0, max_spike)) > 0).to(ht.dtype)
        else:  # 1 - S[t], written as not(H >= V_th) into a float buffer: the same 0 / 1 values
            if fired is None:
                fired, not_fired = torch.empty_like(ht, dtype=torch.bool), torch.empty_like(ht)
            keep = torch.logical_not(torch.ge(ht, th, out=fired), out=not_fired)
            if incoming is not None and not detach_reset:  # V = S V_r + (1 - S) H
                minus = -(incoming * ht)
                grad_s = (minus if grad_s is None else grad_s + minus) + incoming * r
        if grad_s is None:
            through = None
        elif max_spike:  # straight-through round(clamp(H / V_th)): 1 inside [0, D], / V_th
            u = ht / th_t
            through = (grad_s * ((u >= 0) & (u <= max_spike)).to(ht.dtype)) / th_t
        else:
            through = grad_s * derivative(ht - th)
        if bufs is None:
            like = through if through is not None else (incoming if incoming is not None else ht)
            bufs = tuple(torch.empty_like(like) for _ in range(3))
        via_reset = incoming if keep is None or incoming is None else torch.mul(incoming, keep, out=bufs[0])
        if via_reset is None:
            gh = through if through is not None else torch.zeros_like(ht)
        elif through is None:
            gh = via_reset
        else:
            gh = torch.add(through, via_reset, out=bufs[1])
        if tau is None and k is None:
            gx.append(gh.clone())
            carry = gx[-1]
        else:
            scaled = gh / tau if k is None else gh * k
            gx.append(scaled if decay_input else gh.clone())
            if k is not None:
                v_prev = _previous_membrane(h, t, th, reset, max_spike, th_t)
                base = v_prev - r
                acc += gh * (x[t] - base) if decay_input else (-gh) * base
            carry = torch.sub(gh, scaled, out=bufs[2])
    gx.reverse()
    return torch.stack(gx), acc


def _previous_membrane(h, t: int, th: float, reset: float | None, max_spike: int, th_t):
    """V[t-1] from H[t-1] by the forward's reset (the same operations, so the same bits); V_r (0
    for a soft reset) at t = 0."""
    r = 0.0 if reset is None else reset
    if t == 0:
        return torch.full_like(h[0], r)
    hp = h[t - 1]
    if max_spike:
        s = torch.round(torch.clamp(hp / th_t, 0, max_spike))
        return hp - s * th_t if reset is None else _hard_reset(hp, (s > 0).to(hp.dtype), r)
    s = (hp >= th).to(hp.dtype)
    return torch.sub(hp, s, alpha=th) if reset is None else _hard_reset(hp, s, r)
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


def _c_forward(lib, x_seq, tau, decay_input, th, reset, keep, u_scale=0.0, out_dtype=None):
    """Spikes (in ``out_dtype``, default float32), final membrane and (``keep``) H, or (``u_scale``
    not 0) ``(H - th) u_scale``."""
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
    if out_dtype is not None and out_dtype != spikes.dtype:
        spikes = spikes.to(out_dtype)
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




def fused_lif(x_seq: torch.Tensor, tau: float | None, decay_input: bool, v_threshold: float,
              v_reset: float | None, detach_reset: bool, surrogate) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-step IF (``tau=None``) or LIF from a membrane of ``v_reset`` (0 for soft reset), through
    the op ``step::lif_forward`` (:func:`step.neurons.lif_op.multistep`).

    Returns ``(spikes [T, ...], final membrane [...])``.
    """
    from step.neurons.lif_op import multistep

    return multistep(x_seq, tau=tau, decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
                     detach_reset=detach_reset, surrogate=surrogate)
