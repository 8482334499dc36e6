"""Surrogate gradients: Heaviside forward, a smooth derivative with a width ``alpha`` backward.

Each surrogate is an ``nn.Module`` holding its ``alpha`` (so a model walk can read it back) and
calling one shared autograd function. ``x`` is ``v - v_threshold``; the spike is ``x >= 0``
(SpikingJelly's convention).
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
        return ctx.surrogate.backward_grad(grad_output, x), None


class Surrogate(nn.Module):
    """Base class: subclasses set ``default_alpha`` and implement :meth:`derivative`."""

    default_alpha: float = 1.0

    def __init__(self, alpha: float | None = None):
        super().__init__()
        self.alpha = float(self.default_alpha if alpha is None else alpha)
        if self.alpha <= 0:
            raise ValueError(f"{type(self).__name__}: alpha must be > 0, got {self.alpha}")

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """d spike / d x evaluated at ``x``."""
        raise NotImplementedError

    def backward_grad(self, grad_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return grad_output * self.derivative(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _HeavisideWithSurrogate.apply(x, self)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


@SURROGATES.register("atan", paper="Fang et al. 2021 (PLIF)")
class ATan(Surrogate):
    """g'(x) = alpha / (2 (1 + (pi/2 alpha x)^2))."""

    default_alpha = 2.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha / 2 / (1 + (math.pi / 2 * self.alpha * x).pow(2))

    def backward_grad(self, grad_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # SpikingJelly's operation order, so gradients agree bit for bit.
        return self.alpha / 2 / (1 + (math.pi / 2 * self.alpha * x).pow_(2)) * grad_output


@SURROGATES.register("sigmoid", paper="Zenke & Ganguli 2018")
class Sigmoid(Surrogate):
    """g'(x) = alpha * sigmoid(alpha x) * (1 - sigmoid(alpha x))."""

    default_alpha = 4.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1 - s)

    def backward_grad(self, grad_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        sgax = (x * self.alpha).sigmoid_()
        return grad_output * (1.0 - sgax) * sgax * self.alpha


def build_surrogate(surrogate: str | Surrogate, alpha: float | None = None) -> Surrogate:
    """A surrogate module from a registry name (with ``alpha``) or an existing module."""
    if isinstance(surrogate, Surrogate):
        if alpha is not None and float(alpha) != surrogate.alpha:
            raise ValueError(f"alpha={alpha} conflicts with the given surrogate's alpha={surrogate.alpha}")
        return surrogate
    return SURROGATES.build(surrogate, alpha=alpha)
