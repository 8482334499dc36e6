"""Surrogates: Heaviside forward, backward equal to the analytic derivative, alpha carried."""

import math

import pytest
import torch

from step.registry import SURROGATES
from step.surrogates import build_surrogate

X = torch.tensor([-1.3, -0.6, -0.2, -0.05, 0.0, 0.05, 0.2, 0.45, 0.6, 1.3])


def analytic(name: str, x: float, a: float) -> float:
    """The derivatives written out by hand from each surrogate's published definition."""
    if name == "atan":
        return a / (2 * (1 + (math.pi / 2 * a * x) ** 2))
    if name == "sigmoid":
        s = 1 / (1 + math.exp(-a * x))
        return a * s * (1 - s)
    if name == "rectangle":
        return 1 / a if abs(x) < a / 2 else 0.0
    if name == "triangle":
        return max(0.0, 1 - abs(x) / a) / a
    if name == "erf":
        return a / math.sqrt(math.pi) * math.exp(-((a * x) ** 2))
    if name == "piecewise_quadratic":
        return max(0.0, a - a * a * abs(x))
    if name == "superspike":
        return 1 / (1 + a * abs(x)) ** 2
    if name == "straight_through":
        return 1.0 if abs(x) <= a else 0.0
    raise KeyError(name)


def test_all_eight_registered():
    assert set(SURROGATES.names()) >= {"atan", "sigmoid", "rectangle", "triangle", "erf", "piecewise_quadratic",
                                       "superspike", "straight_through"}


@pytest.mark.parametrize("name", sorted(SURROGATES.names()))
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.5])
def test_backward_matches_analytic_derivative(name, alpha):
    sur = build_surrogate(name, alpha)
    assert sur.alpha == alpha
    x = X.clone().double().requires_grad_()
    y = sur(x)
    assert torch.equal(y, (X >= 0).double())  # Heaviside with the >= convention
    g = torch.linspace(0.5, 1.5, len(X)).double()
    (y * g).sum().backward()
    want = torch.tensor([analytic(name, float(v), alpha) for v in X], dtype=torch.float64) * g
    torch.testing.assert_close(x.grad, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(SURROGATES.names()))
def test_smooth_surrogates_integrate_to_one_step(name):
    """Each derivative is a smoothed delta: its integral over [-L, L] is the step height 1 (up to
    atan's heavy tail, 2/pi atan(pi/2 a L)), except superspike (Zenke's unnormalised fast sigmoid,
    2/a (1 - 1/(1 + a L))) and the clipped STE (2 a)."""
    a, L = 1.7, 60.0
    sur = build_surrogate(name, a)
    xs = torch.linspace(-L, L, 1_200_001, dtype=torch.float64)
    area = torch.trapezoid(sur.derivative(xs), xs).item()
    want = {"superspike": 2 / a * (1 - 1 / (1 + a * L)), "straight_through": 2 * a,
            "atan": 2 / math.pi * math.atan(math.pi / 2 * a * L)}.get(name, 1.0)
    assert area == pytest.approx(want, rel=2e-3)


def test_default_alphas_and_bad_alpha():
    assert build_surrogate("atan").alpha == 2.0
    assert build_surrogate("sigmoid").alpha == 4.0
    with pytest.raises(ValueError, match="alpha must be > 0"):
        build_surrogate("erf", -1.0)


def test_sigmoid_and_atan_backward_equal_spikingjelly_bitwise():
    sj = pytest.importorskip("spikingjelly.activation_based.surrogate")
    from spikingjelly._ops.surrogate import _surrogate_gradient

    x = torch.randn(1000) * 2
    for name, sid, a in (("sigmoid", 0, 4.0), ("atan", 1, 2.0), ("piecewise_quadratic", 2, 1.0), ("erf", 6, 2.0)):
        sur = build_surrogate(name, a)
        assert torch.equal(sur.derivative(x), _surrogate_gradient(x, a, sid)), name
    assert sj.Sigmoid is not None
