"""The SpikingJelly 2.0 backend: ``spikingjelly.activation_based.neuron`` nodes in step mode 'm'.

Surrogates that SpikingJelly defines identically (atan, sigmoid, erf, piecewise_quadratic) use
SpikingJelly's classes, so its fused CPU kernels run; the others are passed to the node as our own
surrogate module (SpikingJelly accepts any callable and then runs its reference loop).
The node is reset before and after every call, so the adapter keeps no state between calls.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from step.errors import ConfigError
from step.neurons.backends.base import AdaptedNeuron, Backend, split_params
from step.registry import BACKENDS
from step.surrogates import build_surrogate

_SAME_SURROGATE = {"atan": "ATan", "sigmoid": "Sigmoid", "erf": "Erf", "piecewise_quadratic": "PiecewiseQuadratic"}


def _import_sj():
    logging.getLogger("torch._library.triton").setLevel(logging.ERROR)
    try:
        from spikingjelly.activation_based import functional, neuron, surrogate
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "backend=spikingjelly needs SpikingJelly 2.0: pip install 'step-bench[spikingjelly]' "
            f"(import failed: {err})"
        ) from err
    return neuron, surrogate, functional


class SpikingJellyNeuron(AdaptedNeuron):
    backend = "spikingjelly"

    def library_config(self) -> dict:
        """The values the SpikingJelly node itself holds (checked by check_nodes)."""
        n, out = self.node, {}
        if hasattr(n, "v_threshold"):
            out["v_threshold"] = n.v_threshold
        if hasattr(n, "tau") and self.neuron in ("lif", "klif", "clif"):
            out["tau"] = n.tau
        if self.neuron != "clif":  # CLIF fixes its own reset (soft, not detached)
            for key in ("v_reset", "detach_reset", "decay_input"):
                if hasattr(n, key):
                    out[key] = getattr(n, key)
        if hasattr(n, "T"):
            out["T"] = n.T
        if hasattr(n.surrogate_function, "alpha"):
            out["alpha"] = n.surrogate_function.alpha
        return out

    def run(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, _, functional = _import_sj()
        functional.reset_net(self.node)
        try:
            spikes = self.node(x_seq)
            v = getattr(self.node, "v", None)  # PSN has no membrane: None
            if isinstance(v, (int, float)):
                v = torch.full_like(x_seq[0], float(v))
        finally:
            functional.reset_net(self.node)
        return spikes, v


@BACKENDS.register("spikingjelly", paper="Fang et al., Science Advances 2023 (SpikingJelly)")
class SpikingJellyBackend(Backend):
    """IF, LIF, PLIF, KLIF, CLIF and PSN from SpikingJelly 2.0."""

    name = "spikingjelly"
    offers = ("if", "lif", "plif", "klif", "clif", "psn")

    def check(self, neuron: str, params: dict[str, Any]) -> None:
        super().check(neuron, params)
        p = split_params(params)
        if p["learnable_threshold"]:
            raise ConfigError("backend=spikingjelly has no learnable threshold; use backend=native "
                              "or learnable_threshold=false")
        if neuron == "psn" and p["T"] is None:
            raise ConfigError("neuron psn needs T (its weight is T x T); set the run's T")

    def surrogate_for(self, name: str, alpha: float | None) -> tuple[nn.Module, Any]:
        ours = build_surrogate(name, alpha)
        _, surrogate, _ = _import_sj()
        if isinstance(name, str) and name in _SAME_SURROGATE:
            return ours, getattr(surrogate, _SAME_SURROGATE[name])(alpha=ours.alpha)
        return ours, ours

    def build_neuron(self, neuron: str, **params: Any) -> nn.Module:
        self.check(neuron, params)
        p = split_params(params)
        ours, sj_surrogate = self.surrogate_for(p["surrogate"], p["alpha"])
        lib, _, _ = _import_sj()
        tau = float(p["tau"])
        common = dict(v_threshold=float(p["v_threshold"]), surrogate_function=sj_surrogate, step_mode="m")
        reset = dict(v_reset=p["v_reset"], detach_reset=bool(p["detach_reset"]))
        if neuron == "if":
            node = lib.IFNode(**common, **reset)
        elif neuron == "lif":
            node = lib.LIFNode(tau=tau, decay_input=bool(p["decay_input"]), **common, **reset)
        elif neuron == "plif":
            node = lib.ParametricLIFNode(init_tau=tau, decay_input=bool(p["decay_input"]), **common, **reset)
        elif neuron == "klif":
            node = lib.KLIFNode(tau=tau, decay_input=bool(p["decay_input"]), **common, **reset)
        elif neuron == "clif":
            node = lib.ComplementaryLIFNode(tau=tau, **common)
        else:  # psn: SpikingJelly's bias B starts at -1, i.e. at -v_threshold for v_threshold 1
            node = lib.PSN(T=int(p["T"]), surrogate_function=sj_surrogate)
            with torch.no_grad():
                node.bias.fill_(-float(p["v_threshold"]))
        return SpikingJellyNeuron(
            neuron, node, ours, tau=tau, v_threshold=p["v_threshold"], v_reset=p["v_reset"],
            decay_input=p["decay_input"], detach_reset=p["detach_reset"],
            learnable_threshold=p["learnable_threshold"], T=p["T"],
        )
