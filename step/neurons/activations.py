"""Non-spiking activations behind the neuron interface, for ANN and INT8 twins of any model.

``neuron=relu attention=softmax`` turns any model into its ANN twin: every node the model asks
the neuron factory for becomes an element-wise activation on ``[T, B, ...]`` (with ``T=1`` a
plain ANN). ``neuron=int8`` adds fake quantisation of the activations to the int8 grid, and
:func:`step.models.twins.quantize_weights_int8` does the same for the weights (the quantised-ANN
baseline of the STEP paper's energy comparison).

These modules accept the common neuron keywords (``tau, v_threshold, v_reset, decay_input,
detach_reset, surrogate, alpha, learnable_threshold, T``) and keep them as attributes, so configs
and model constructors need no special case, but their dynamics ignore them (an attention's
``neuron(v_threshold=0.5)`` is a plain activation here). They are marked ``spiking = False`` and
``is_activation = True`` and are *not* :class:`~step.neurons.SpikingNeuron` instances, so
:func:`step.neurons.spiking_nodes` and the energy meter do not count them as spiking nodes (their
outputs are real-valued, so the layers they feed are charged as MACs).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from step.registry import NEURONS

INT8_MAX = 127


def is_activation(neuron: str | nn.Module | type) -> bool:
    """True for a non-spiking activation (a registry name, a class or a module)."""
    if isinstance(neuron, str):
        neuron = NEURONS.get(neuron) if neuron in NEURONS else object
    return getattr(neuron, "is_activation", False) is True


class Activation(nn.Module):
    """Element-wise activation with the neuron keyword interface (values kept, dynamics ignored)."""

    spiking = False
    is_activation = True
    is_spiking_neuron = False
    backend = "native"

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        decay_input: bool = True,
        detach_reset: bool = True,
        surrogate: str = "atan",
        alpha: float | None = None,
        learnable_threshold: bool = False,
        T: int | None = None,
    ):
        super().__init__()
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.decay_input = bool(decay_input)
        self.detach_reset = bool(detach_reset)
        self.surrogate_name = surrogate if isinstance(surrogate, str) else type(surrogate).__name__
        self.alpha = None if alpha is None else float(alpha)
        self.learnable_threshold = bool(learnable_threshold)
        self.T = None if T is None else int(T)

    def activate(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(x)


@NEURONS.register("relu", paper="Nair & Hinton, ICML 2010 (ReLU); the ANN twin's activation")
class ReLUActivation(Activation):
    """y = max(x, 0), element-wise over ``[T, B, ...]`` (not a spiking neuron)."""

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


@NEURONS.register("gelu", paper="Hendrycks & Gimpel 2016 (GELU); the ANN twin's activation")
class GELUActivation(Activation):
    """y = x Phi(x) (exact erf form), element-wise over ``[T, B, ...]`` (not a spiking neuron)."""

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x)


class _FakeQuantSTE(torch.autograd.Function):
    """s * clamp(round(x / s), lo, hi) forward; straight-through inside [lo s, hi s] backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, lo: int, hi: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, scale)
        ctx.lo, ctx.hi = lo, hi
        return torch.clamp(torch.round(x / scale), lo, hi) * scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, scale = ctx.saved_tensors
        inside = (x >= ctx.lo * scale) & (x <= ctx.hi * scale)
        return grad * inside.to(grad.dtype), None, None, None


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, lo: int = -INT8_MAX, hi: int = INT8_MAX) -> torch.Tensor:
    """``x`` rounded onto the grid ``scale * {lo..hi}`` (straight-through gradient inside the range)."""
    return _FakeQuantSTE.apply(x, scale, lo, hi)


@NEURONS.register("int8", paper="Jacob et al., CVPR 2018 (integer-arithmetic-only inference); STEP's quantised-ANN baseline")
class Int8Activation(Activation):
    """Quantised ReLU on the int8 grid: y = s * clamp(round(max(x, 0) / s), 0, 127).

    Per-tensor scale s = max(x) / 127. In training s is taken from the batch (nothing clips) and
    tracked as an exponential moving average (``momentum``) in the ``scale`` buffer, which eval
    uses, as PyTorch's moving-average min-max observer does. Gradients pass straight through
    inside the representable range. Outputs are non-negative, so the codes are 0..127.
    """

    def __init__(self, momentum: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"int8 activation momentum must be in (0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.register_buffer("scale", torch.tensor(0.0))

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if self.training or float(self.scale) == 0.0:
            batch_scale = x.detach().amax().clamp_min(1e-8) / INT8_MAX
            if self.training:
                with torch.no_grad():
                    first = float(self.scale) == 0.0
                    self.scale.copy_(batch_scale if first else (1 - self.momentum) * self.scale + self.momentum * batch_scale)
            scale = batch_scale
        else:
            scale = self.scale
        return fake_quantize(x, scale, 0, INT8_MAX)

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}, scale={float(self.scale):.4g}"


# The registry reads keyword names from the signature: give Int8Activation the common ones too.
def _advertise_common_keywords(cls: type) -> None:
    import inspect

    base = list(inspect.signature(Activation.__init__).parameters.values())
    extra = inspect.Parameter("momentum", inspect.Parameter.KEYWORD_ONLY, default=0.1)
    cls.__init__.__signature__ = inspect.Signature(base + [extra])


_advertise_common_keywords(Int8Activation)
