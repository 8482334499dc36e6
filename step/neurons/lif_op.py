"""One op for the multi-step IF / LIF / PLIF / integer LIF neuron: ``step::lif_forward`` and
``step::lif_backward``, registered with ``torch.library``.

Autograd, ``torch.compile`` (a fake implementation gives shapes, dtypes and strides, so a compiled
model traces the op as one node) and every device see the same op; behind it:

* the reference: the torch loops of :mod:`step.neurons.kernels` (any device, dtype and layout);
* the CPU implementation: the C kernel ``step/native/lif.c`` (IF/LIF with a binary spike, one dense
  block), else the reference;
* the CUDA implementation: the Triton kernels of :mod:`step.neurons.triton_lif` (T <= 16, one
  dense block, float32 / bfloat16 / float16), else the reference. ``STEP_CUDA_KERNELS=torch``
  forces the reference on CUDA.

Every implementation computes what the reference computes on the same device, bit for bit
(tests/test_native_lif.py, tests/test_triton_lif.py; on a GPU tests/test_gpu.py). The arithmetic is
float32 for every input dtype; spikes, the final membrane and g_X come back in the input's dtype.

Which implementation runs and what the forward keeps for the backward is decided once per call
(:func:`plan`) and passed to both ops as ``plan = "<implementation>:<kept>"``: ``x`` (the input: the
backward recomputes H), ``h`` (H), ``u`` (the sigmoid's argument and the spikes, C only) or ``none``
(no gradient needed).
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import torch

from step import native
from step.neurons import kernels

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
CUDA_CHOICES = ("auto", "triton", "torch")
#: tests set this to run the Triton kernels in the interpreter on CPU tensors through the op
_STATE = {"triton_on_cpu": False, "registered_op_in_eager": False}


# ---- the surrogate as op arguments --------------------------------------------------------------
def surrogate_spec(surrogate) -> tuple[str, float] | None:
    """``(registry name, alpha)`` of a registered surrogate module, or None for a module whose
    derivative is not one of the registered ones (it then runs through the autograd loop)."""
    kind = type(surrogate)
    if kind not in _SPEC_NAMES:
        from step.registry import SURROGATES

        _SPEC_NAMES[kind] = next((n for n in SURROGATES.names() if SURROGATES.entry(n).fn is kind), None)
    name = _SPEC_NAMES[kind]
    return None if name is None else (name, float(surrogate.alpha))


_SPEC_NAMES: dict = {}


@functools.lru_cache(maxsize=None)
def _surrogate(name: str, alpha: float):
    from step.registry import SURROGATES

    return SURROGATES.build(name, alpha=alpha)


# ---- which implementation runs ---------------------------------------------------------------
def cuda_choice() -> str:
    value = os.environ.get("STEP_CUDA_KERNELS", "auto").strip().lower() or "auto"
    if value not in CUDA_CHOICES:
        from step.errors import StepError

        raise StepError(f"STEP_CUDA_KERNELS={value!r} is not one of {', '.join(CUDA_CHOICES)}.")
    return value


def triton_unavailable() -> str | None:
    """Why the Triton kernels cannot run here (None when they can); looked up once (a plain dict,
    not an lru_cache, which torch.compile would trace around with a warning)."""
    if "triton" not in _WHY:
        try:
            import triton  # noqa: F401

            from step.neurons import triton_lif  # noqa: F401
        except Exception as err:  # noqa: BLE001 - any import failure means: use the reference
            _WHY["triton"] = f"triton cannot be imported ({type(err).__name__}: {err})"
        else:
            _WHY["triton"] = None
    return _WHY["triton"]


_WHY: dict = {}


def _triton_serves(x: torch.Tensor, surrogate: str, max_spike: int) -> bool:
    if triton_unavailable() is not None:
        return False
    from step.neurons.triton_lif import MAX_T, SURROGATE_IDS

    return (x.dtype in _DTYPES and x.dim() >= 2 and 0 < x.shape[0] <= MAX_T and x.numel() > 0
            and native.dense_outer_first(x) and (max_spike > 0 or surrogate in SURROGATE_IDS))


def _c_serves(x: torch.Tensor, k, max_spike: int) -> bool:
    return (k is None and not max_spike and x.dtype in _DTYPES and x.dim() >= 2 and x.numel() > 0
            and not kernels.compile_enabled() and native.dense_outer_first(x) and native.load("lif") is not None)


def implementation(x: torch.Tensor, k=None, max_spike: int = 0, surrogate: str = "atan") -> str:
    """``c``, ``triton`` or ``torch`` (the reference): what serves this input."""
    if x.device.type == "cuda" or (x.device.type == "cpu" and _STATE["triton_on_cpu"]):
        choice = cuda_choice()
        if choice == "triton" and triton_unavailable() is not None:
            from step.errors import StepError

            raise StepError(f"STEP_CUDA_KERNELS=triton but the Triton kernels are unavailable: "
                            f"{triton_unavailable()}. Install triton (it comes with torch's CUDA wheels) or set "
                            "STEP_CUDA_KERNELS=auto to use the torch loop.")
        if choice != "torch" and _triton_serves(x, surrogate, max_spike):
            return "triton"
        return "torch"  # also with STEP_CUDA_KERNELS=triton where the kernels do not apply (T > 16, ...)
    if x.device.type == "cpu" and _c_serves(x, k, max_spike):
        return "c"
    return "torch"


def device_implementation(device: torch.device | str) -> str:
    """What serves IF/LIF/PLIF/integer-LIF neurons on ``device``, for records and logs."""
    kind = torch.device(device).type
    if kind == "cuda":
        if cuda_choice() == "torch":
            return "torch (STEP_CUDA_KERNELS=torch)"
        why = triton_unavailable()
        return "triton" if why is None else f"torch ({why})"
    if kind == "cpu":
        return native.implementation("lif")
    return f"torch ({kind} has no kernel)"


def plan(x: torch.Tensor, k, max_spike: int, surrogate: str, alpha: float, detach_reset: bool,
         need_grad: bool) -> str:
    """``"<implementation>:<kept>"`` for one call (module docstring). The C backward serves a
    detached reset; otherwise its forward keeps H for the reference backward."""
    impl = implementation(x, k, max_spike, surrogate)
    if not need_grad:
        return f"{impl}:none"
    if impl == "c" and detach_reset:  # what kernels._saved_form gives the registered surrogates
        form = {"atan": "x", "sigmoid": "u"}.get(surrogate, "h")
    elif impl == "triton" or k is not None:  # PLIF's decay gradient reads X
        form = "x"
    else:
        form = "h"
    return f"{impl}:{form}"


# ---- layouts -------------------------------------------------------------------------------------
def _grad_layout(gs: Optional[torch.Tensor], ref: torch.Tensor) -> tuple[int, ...]:
    """The strides g_X has: those of ``ref`` (X's layout), or, when g_S arrives in another layout,
    those of the per-step products g_S[t] * H[t] stacked over T (what the torch loop returns, and
    autograd on the generic loop: it decides the kernels and the rounding of the layers before)."""
    if gs is None or gs.stride() == ref.stride():
        return ref.stride()
    step = torch.mul(gs[0], ref[0]).stride()
    return (ref[0].numel(), *step)


def _with_strides(t: torch.Tensor, strides: tuple[int, ...]) -> torch.Tensor:
    if t.stride() == tuple(strides):
        return t
    return torch.empty_strided(t.shape, strides, dtype=t.dtype, device=t.device).copy_(t)


def _float(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return t if t is None or t.dtype == torch.float32 else t.float()


# ---- the implementations (every device) ---------------------------------------------------------
def forward_impl(x, k, tau, decay_input, threshold, v_reset, detach_reset, max_spike, surrogate, alpha, plan):
    """Spikes [T, ...] and final membrane [...] (x's dtype), and what the backward reads (float32;
    empty when it reads x itself or nothing). ``detach_reset`` matters to the backward only."""
    impl, form = plan.split(":")
    xf = _float(x)
    aux = None
    if impl == "c":
        lib = native.load("lif")
        u_scale = alpha if form == "u" else 0.0
        spikes, v, aux = kernels._c_forward(lib, xf, tau, decay_input, threshold, v_reset, form in ("h", "u"),
                                            u_scale, out_dtype=x.dtype)
    elif impl == "triton":
        from step.neurons import triton_lif

        spikes, v = triton_lif.forward(x, k, tau, decay_input, threshold, v_reset, max_spike,
                                       interpret=x.device.type != "cuda")
    else:
        loop = kernels._maybe_compiled(kernels._forward_loop, kernels._forward_loop_pure)
        v0 = torch.full_like(xf[0], 0.0 if v_reset is None else v_reset)
        spikes, v, aux = loop(xf, v0, tau, decay_input, threshold, v_reset, form == "h", k=_float(k),
                              max_spike=max_spike, out_dtype=x.dtype)
    if spikes.stride() != x.stride():  # x not one dense block: empty_like's strides, as the fake gives
        spikes = _with_strides(spikes, torch.empty_like(x).stride())
    v = v.to(x.dtype)
    if v.stride() != x[0].stride():
        v = _with_strides(v, torch.empty_like(x[0]).stride())
    if aux is None or form not in ("h", "u"):
        aux = x.new_empty(0, dtype=torch.float32)
    return spikes, v, aux


def backward_impl(gs, gv, saved, spikes, k, tau, decay_input, threshold, v_reset, detach_reset, max_spike,
                  surrogate, alpha, plan, x_dtype):
    """g_X (x's dtype) and, for PLIF, the per-neuron sums of the decay's gradient (float32; empty
    otherwise). ``saved`` is X (plan ``*:x``), H (``*:h``) or the sigmoid's argument (``c:u``)."""
    impl, form = plan.split(":")
    layout = _grad_layout(gs, saved)
    ref = saved
    gs, gv = kernels._like(gs, ref), kernels._like(gv, ref[0])
    acc = None
    if impl == "triton":
        from step.neurons import triton_lif

        gx, acc = triton_lif.backward(gs, gv, saved, k, tau, decay_input, threshold, v_reset, detach_reset,
                                      max_spike, surrogate, alpha, interpret=saved.device.type != "cuda")
    elif impl == "c" and detach_reset:
        sur = _surrogate(surrogate, alpha)
        kept = (_float(saved),) if form != "u" else (saved, _float(spikes))
        gx = kernels._c_backward(native.load("lif"), _float(gs), _float(gv), kept, form, sur, tau, decay_input,
                                 threshold, v_reset, detach_reset)
    else:
        if form == "x":  # run the forward again for H
            xf = _float(saved)
            v0 = torch.full_like(xf[0], 0.0 if v_reset is None else v_reset)
            h = kernels._forward_loop(xf, v0, tau, decay_input, threshold, v_reset, True, k=_float(k),
                                      max_spike=max_spike)[2]
        elif form == "u":  # the C forward kept (H - th) alpha: H is not recoverable bit for bit
            raise RuntimeError("step::lif_backward: plan c:u is served by the C kernel only")
        else:
            h, xf = saved, None
        loop = kernels._maybe_compiled(kernels._backward_loop, kernels._backward_loop)
        gx, acc = loop(_float(gs), _float(gv), h, _surrogate(surrogate, alpha).derivative, tau, decay_input,
                       threshold, v_reset, detach_reset, k=_float(k), max_spike=max_spike, x=xf)
    gx = _with_strides(gx if gx.dtype == x_dtype else gx.to(x_dtype), layout)
    if acc is None:
        acc = saved.new_empty(0, dtype=torch.float32)
    return gx, acc


# ---- the registered ops: what autograd and torch.compile see -------------------------------------
@torch.library.custom_op("step::lif_forward", mutates_args=())
def lif_forward(x: torch.Tensor, k: Optional[torch.Tensor], tau: Optional[float], decay_input: bool,
                threshold: float, v_reset: Optional[float], detach_reset: bool, max_spike: int, surrogate: str,
                alpha: float, plan: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return forward_impl(x, k, tau, decay_input, threshold, v_reset, detach_reset, max_spike, surrogate, alpha, plan)


@lif_forward.register_fake
def _(x, k, tau, decay_input, threshold, v_reset, detach_reset, max_spike, surrogate, alpha, plan):
    form = plan.split(":")[1]
    aux = torch.empty_like(x, dtype=torch.float32) if form in ("h", "u") else x.new_empty(0, dtype=torch.float32)
    return torch.empty_like(x), torch.empty_like(x[0]), aux


@torch.library.custom_op("step::lif_backward", mutates_args=())
def lif_backward(gs: Optional[torch.Tensor], gv: Optional[torch.Tensor], saved: torch.Tensor,
                 spikes: Optional[torch.Tensor], k: Optional[torch.Tensor], tau: Optional[float], decay_input: bool,
                 threshold: float, v_reset: Optional[float], detach_reset: bool, max_spike: int, surrogate: str,
                 alpha: float, plan: str, x_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return backward_impl(gs, gv, saved, spikes, k, tau, decay_input, threshold, v_reset, detach_reset, max_spike,
                         surrogate, alpha, plan, x_dtype)


@lif_backward.register_fake
def _(gs, gv, saved, spikes, k, tau, decay_input, threshold, v_reset, detach_reset, max_spike, surrogate, alpha,
      plan, x_dtype):
    gx = torch.empty_strided(saved.shape, _grad_layout(gs, saved), dtype=x_dtype, device=saved.device)
    acc = torch.empty_like(saved[0], dtype=torch.float32) if k is not None else saved.new_empty(0, dtype=torch.float32)
    return gx, acc


# ---- autograd ------------------------------------------------------------------------------------
def _setup_context(ctx, inputs, output):
    x, k, tau, decay_input, threshold, v_reset, detach_reset, max_spike, surrogate, alpha, plan_ = inputs
    spikes, _, aux = output
    form = plan_.split(":")[1]
    ctx.set_materialize_grads(False)  # an unused output gives None, not a tensor of zeros
    ctx.mark_non_differentiable(aux)
    ctx.form = form
    if form == "none":
        return
    saved = (x,) if form == "x" else ((aux, spikes) if form == "u" else (aux,))
    ctx.save_for_backward(*saved, *(() if k is None else (k,)))  # exactly what the backward reads
    ctx.has_k = k is not None
    ctx.args = (tau, decay_input, threshold, v_reset, detach_reset, max_spike, surrogate, alpha, plan_, x.dtype)


def _gradients(ctx, gs, gv, backward):
    nothing = (None,) * 11
    if ctx.form == "none" or (gs is None and gv is None):
        return nothing
    tensors = list(ctx.saved_tensors)
    k = tensors.pop() if ctx.has_k else None
    saved, spikes = tensors[0], (tensors[1] if len(tensors) > 1 else None)
    gx, acc = backward(gs, gv, saved, spikes, k, *ctx.args)
    gk = acc.sum() if k is not None and ctx.needs_input_grad[1] else None
    return (gx if ctx.needs_input_grad[0] else None, gk, *nothing[2:])


def _backward(ctx, gs, gv, _gaux):
    return _gradients(ctx, gs, gv, lif_backward)


torch.library.register_autograd("step::lif_forward", _backward, setup_context=_setup_context)


class _NeuronOp(torch.autograd.Function):
    """Outside torch.compile, the same implementations and autograd context without the dispatcher
    round trips of a registered op (a few tens of microseconds per call, paid by every neuron of a
    model twice per step: on a GPU that is time the device waits)."""

    @staticmethod
    def forward(ctx, *inputs):  # type: ignore[override]
        output = forward_impl(*inputs)
        _setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, gs, gv, _gaux):  # type: ignore[override]
        return _gradients(ctx, gs, gv, backward_impl)


# ---- the entry point -----------------------------------------------------------------------------
def multistep(x: torch.Tensor, *, tau: float | None, decay_input: bool, v_threshold: float, v_reset: float | None,
              detach_reset: bool, surrogate, k: torch.Tensor | None = None,
              max_spike: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes ``[T, ...]`` and the final membrane of IF (``tau=None``), LIF, PLIF (``k``, its decay)
    or the integer LIF (``max_spike`` = D > 0), from a membrane of ``v_reset`` (0 for a soft reset).

    ``surrogate`` is a registered surrogate module (its name and alpha travel as op arguments).
    """
    spec = surrogate_spec(surrogate)
    if spec is None:
        raise ValueError(f"{type(surrogate).__name__} is not a registered surrogate; the op evaluates the "
                         "registered ones only (run the neuron's autograd loop instead)")
    name, alpha = spec
    need_grad = torch.is_grad_enabled() and (x.requires_grad or (k is not None and k.requires_grad))
    p = plan(x, k, max_spike, name, alpha, bool(detach_reset), need_grad)
    reset = None if v_reset is None else float(v_reset)
    op = lif_forward if torch.compiler.is_compiling() or _STATE["registered_op_in_eager"] else _NeuronOp.apply
    spikes, v, _ = op(x, k, tau, bool(decay_input), float(v_threshold), reset, bool(detach_reset), int(max_spike),
                      name, alpha, p)
    return spikes, v
