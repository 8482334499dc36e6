"""Surrogate gradients: Heaviside forward, a smooth derivative with a width ``alpha`` backward.

Each surrogate is an ``nn.Module`` holding its ``alpha`` (so a model walk can read it back) and
calling one shared autograd function. ``x`` is ``v - v_threshold``; the spike is ``x >= 0``
(SpikingJelly's convention). Backward returns ``grad_output * derivative(x)``; each
:meth:`Surrogate.derivative` is written in SpikingJelly 2.0's order of operations (its fused CPU
kernels, ``spikingjelly/_ops/surrogate.py``) where SpikingJelly has the same function, so neuron
gradients can agree with it bit for bit.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from step.registry import SURROGATES


class _HeavisideWithSurrogate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: "Surrogate") -> torch.Tensor:  # type: ignore[override]
        if x.requires_grad:
            ctx.save_for_backward(x)
            ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_output * ctx.surrogate.derivative(x), None


class Surrogate(nn.Module):
    """Base class: subclasses set ``default_alpha`` and implement :meth:`derivative`."""

    default_alpha: float = 1.0

    def __init__(self, alpha: float | None = None):
        super().__init__()
        self.alpha = float(self.default_alpha if alpha is None else alpha)
        if not self.alpha > 0:
            raise ValueError(f"{type(self).__name__}: alpha must be > 0, got {self.alpha}")

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """d spike / d x evaluated at ``x``."""
        raise NotImplementedError

    def kernel_form(self) -> tuple | None:
        """How the C neuron kernel (``step/native/lif.c``) evaluates :meth:`derivative`
        with the same rounding: ``("atan", c1, c2)``, ``("sigmoid", alpha)`` (torch computes the
        sigmoid, the kernel the rest), or None (torch computes the whole derivative)."""
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _HeavisideWithSurrogate.apply(x, self)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


@SURROGATES.register("atan", paper="Fang et al., ICCV 2021 (PLIF)")
class ATan(Surrogate):
    """g'(x) = (alpha/2) / (1 + (pi/2 * alpha * x)^2); primitive atan(pi/2 alpha x)/pi + 1/2."""

    default_alpha = 2.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        z = x * (math.pi / 2 * self.alpha)
        return (self.alpha / 2) / (1 + z * z)

    def kernel_form(self) -> tuple | None:
        if type(self).derivative is not ATan.derivative:  # a subclass with its own curve
            return None
        return ("atan", math.pi / 2 * self.alpha, self.alpha / 2)


@SURROGATES.register("sigmoid", paper="Zenke & Ganguli 2018; SpikingJelly's default")
class Sigmoid(Surrogate):
    """g'(x) = alpha * sigmoid(alpha x) * (1 - sigmoid(alpha x))."""

    default_alpha = 4.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.alpha * x)
        return (1 - s) * s * self.alpha

    def kernel_form(self) -> tuple | None:
        if type(self).derivative is not Sigmoid.derivative:
            return None
        return ("sigmoid", self.alpha)


@SURROGATES.register("rectangle", paper="Wu et al., Front. Neurosci. 2018 (STBP), rectangular curve")
class Rectangle(Surrogate):
    """g'(x) = 1/alpha where |x| < alpha/2, else 0 (a box of width alpha and unit area)."""

    default_alpha = 1.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs() < self.alpha / 2).to(x.dtype) / self.alpha


@SURROGATES.register("triangle", paper="Esser et al., PNAS 2016; Bellec et al., NeurIPS 2018")
class Triangle(Surrogate):
    """g'(x) = max(0, 1 - |x|/alpha) / alpha: a triangle of half-width alpha and unit area."""

    default_alpha = 1.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (1 - x.abs() / self.alpha).clamp_min(0) / self.alpha


@SURROGATES.register("erf", paper="Gaussian-CDF surrogate (SpikingJelly Erf)")
class Erf(Surrogate):
    """g'(x) = alpha/sqrt(pi) * exp(-(alpha x)^2); primitive erfc(-alpha x)/2."""

    default_alpha = 2.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        z = self.alpha * x
        return (self.alpha / math.sqrt(math.pi)) * torch.exp(-z * z)


@SURROGATES.register("piecewise_quadratic", paper="Esser et al. 2016; SpikingJelly PiecewiseQuadratic")
class PiecewiseQuadratic(Surrogate):
    """g'(x) = max(0, alpha - alpha^2 |x|): the derivative of the piecewise-quadratic primitive
    (0 below -1/alpha, 1 above 1/alpha). Same shape as ``triangle`` parameterised by sharpness
    instead of half-width (piecewise_quadratic(alpha) == triangle(1/alpha))."""

    default_alpha = 1.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (self.alpha - self.alpha * self.alpha * x.abs()).clamp_min(0)


@SURROGATES.register("superspike", paper="Zenke & Ganguli, Neural Computation 2018 (SuperSpike)")
class SuperSpike(Surrogate):
    """Fast-sigmoid derivative: g'(x) = 1 / (1 + alpha |x|)^2 (peak 1 at threshold)."""

    default_alpha = 10.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        z = 1 + self.alpha * x.abs()
        return 1 / (z * z)


@SURROGATES.register("straight_through", paper="Bengio et al. 2013; Courbariaux et al. 2016 (clipped STE)")
class StraightThrough(Surrogate):
    """g'(x) = 1 where |x| <= alpha, else 0: the gradient passes unchanged near the threshold."""

    default_alpha = 1.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs() <= self.alpha).to(x.dtype)


def build_surrogate(surrogate: str | Surrogate, alpha: float | None = None) -> Surrogate:
    """A surrogate module from a registry name (with ``alpha``) or an existing module."""
    if isinstance(surrogate, Surrogate):
        if alpha is not None and float(alpha) != surrogate.alpha:
            raise ValueError(f"alpha={alpha} conflicts with the given surrogate's alpha={surrogate.alpha}")
        return surrogate
    return SURROGATES.build(surrogate, alpha=alpha)
