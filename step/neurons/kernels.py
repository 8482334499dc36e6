"""Fused multi-step IF/LIF: a custom autograd function that keeps only the charged membrane H.

Forward runs the charge-fire-reset loop without building a graph (with out=/in-place ops) and
stores ``H[0..T-1]`` (the only tensor backward needs); backward runs the exact adjoint recursion, in SpikingJelly 2.0's
order of operations (``spikingjelly/_ops/lif/cpu.py``), so spikes, final membrane and input
gradients agree with ``LIFNode(step_mode='m')`` / ``IFNode`` bit for bit:

    g_H[t] = g_S[t] * sg(H[t] - V_th) + (g_V[t] + c[t+1]) * dV[t]/dH[t]
    g_X[t] = g_H[t] / tau (decay_input) else g_H[t];   c[t] = g_H[t] - g_H[t] / tau  (IF: c = g_H)

``dV/dH`` is ``1 - S`` (hard, detached), ``1 - S + (V_reset - H) sg`` (hard), ``1`` (soft,
detached) or ``1 - V_th sg`` (soft).

``enable_compile(True)`` (or env ``STEP_COMPILE_NEURONS=1``) runs the two loops through
``torch.compile`` (Inductor fuses each time step into one kernel). It is opt-in because the first
call compiles for tens of seconds; tests/test_neurons.py checks that it stays bit-identical.
"""

from __future__ import annotations

import os
from typing import Callable

import torch

_COMPILE = {"on": os.environ.get("STEP_COMPILE_NEURONS", "0") == "1", "fns": {}}


def enable_compile(on: bool = True) -> None:
    """Route the fused IF/LIF loops through ``torch.compile`` (compiled lazily, on first use)."""
    _COMPILE["on"] = bool(on)


def _maybe_compiled(eager: Callable, pure: Callable) -> Callable:
    """``eager`` (fastest uncompiled form) or the compiled ``pure`` twin (the form Inductor fuses)."""
    if not _COMPILE["on"]:
        return eager
    if pure not in _COMPILE["fns"]:
        _COMPILE["fns"][pure] = torch.compile(pure, dynamic=False)
    return _COMPILE["fns"][pure]


def _forward_loop(x_seq, v, tau: float | None, decay_input: bool, th: float, reset: float | None,
                  keep_h: bool):
    """Charge-fire-reset over T; written with out=/in-place ops (same rounding, fewer copies)."""
    r = 0.0 if reset is None else reset
    spikes = torch.empty_like(x_seq)
    hs = torch.empty_like(x_seq) if keep_h else None
    for t in range(x_seq.shape[0]):
        x = x_seq[t]
        h = hs[t] if keep_h else torch.empty_like(x)
        if tau is None:  # IF: H = V + X
            torch.add(v, x, out=h)
        elif decay_input:  # H = V + (X - (V - r)) / tau
            torch.sub(x, v if r == 0.0 else v - r, out=h)
            h.div_(tau).add_(v)
        else:  # H = V - (V - r) / tau + X
            torch.div(v if r == 0.0 else v - r, tau, out=h)
            torch.sub(v, h, out=h)
            h.add_(x)
        fired = h >= th
        spikes[t].copy_(fired)
        # hard: S r + (1 - S) H;  soft: H - S th  (equal bit for bit to the selections below)
        v = torch.where(fired, r, h) if reset is not None else torch.sub(h, spikes[t], alpha=th)
    return spikes, v, hs


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

    Written without in-place ops: an in-place variant was bit-identical on plain tensors but not
    inside a Spikformer (tests/test_backends.py), so eager and compiled paths share this one."""
    gx = []
    carry = None  # gradient reaching H[t] through V[t]; None stands for zeros (nothing is built)
    last = h.shape[0] - 1
    for t in range(last, -1, -1):
        sg = derivative(h[t] - th)
        if reset is None:
            reset_grad = 1 if detach_reset else 1 - th * sg
        else:
            reset_grad = 1 - (h[t] >= th).to(h.dtype)
            if not detach_reset:
                reset_grad = reset_grad + (reset - h[t]) * sg
        incoming = gv if t == last else carry
        through_spike = None if gs is None else gs[t] * sg
        if incoming is None:
            gh = through_spike if through_spike is not None else torch.zeros_like(h[t])
        elif through_spike is None:
            gh = incoming * reset_grad
        else:
            gh = through_spike + incoming * reset_grad
        if tau is None:
            gx.append(gh)
            carry = gh
        else:
            gx.append(gh / tau if decay_input else gh)
            carry = gh - gh / tau
    gx.reverse()
    return torch.stack(gx)


class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, v0, tau, decay_input, th, reset, detach_reset, surrogate):  # type: ignore[override]
        need_grad = ctx.needs_input_grad[0]
        loop = _maybe_compiled(_forward_loop, _forward_loop_pure)
        spikes, v, h = loop(x_seq, v0, tau, decay_input, th, reset, need_grad)
        if need_grad:
            ctx.save_for_backward(h)
            ctx.cfg = (surrogate, tau, decay_input, th, reset, detach_reset)
        return spikes, v

    @staticmethod
    def backward(ctx, gs, gv):  # type: ignore[override]
        (h,) = ctx.saved_tensors
        surrogate, *cfg = ctx.cfg  # gs / gv may be None (unused output): the loop skips them
        loop = _maybe_compiled(_backward_loop, _backward_loop)
        gx = loop(gs, gv, h, surrogate.derivative, *cfg)
        return gx, None, None, None, None, None, None, None


def fused_lif(x_seq: torch.Tensor, tau: float | None, decay_input: bool, v_threshold: float,
              v_reset: float | None, detach_reset: bool, surrogate) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-step IF (``tau=None``) or LIF from a membrane of ``v_reset`` (0 for soft reset).

    Returns ``(spikes [T, ...], final membrane [...])``.
    """
    v0 = torch.full_like(x_seq[0], 0.0 if v_reset is None else v_reset)
    return _FusedLIF.apply(x_seq, v0, tau, decay_input, float(v_threshold), v_reset, detach_reset, surrogate)
