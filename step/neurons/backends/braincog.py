"""The BrainCog 0.2.7.19 backend: ``braincog.base.node.node`` IF/LIF/PLIF behind our interface.

What BrainCog can express, and what is refused with a ConfigError rather than silently changed:
its constructors hard-code the surrogate ``alpha = 2.0``; only the atan and sigmoid surrogates
exist there; every node resets hard to 0 with the spike detached, and the LIF charge is
``V + (X - V)/tau`` (SpikingJelly's decay_input=True, v_reset=0, detach_reset=True). BrainCog's
atan fires on a strict ``V > V_th`` (SpikingJelly and we use ``>=``). Nodes run with
``layer_by_layer=True, step=T`` on a ``(T*B, features)`` tensor, so any ``[T, B, ...]`` input
(tokens included, which BrainCog cannot take as 3-D) is flattened to 2-D and reshaped back.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import torch
from torch import nn

from step.errors import ConfigError
from step.neurons.backends.base import AdaptedNeuron, Backend, split_params
from step.registry import BACKENDS
from step.surrogates import build_surrogate

BRAINCOG_ALPHA = 2.0
_SURROGATES = {"atan": "AtanGrad", "sigmoid": "SigmoidGrad"}


def _import_braincog():
    """BrainCog's node and surrogate modules, skipping ``braincog/base/__init__.py`` (which pulls in
    model zoos needing torchvision); see /work/shared/reference/libraries.md section 3."""
    try:
        import braincog
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ConfigError(f"backend=braincog needs BrainCog: pip install 'step-bench[braincog]' ({err})") from err
    if "braincog.base" not in sys.modules:
        pkg = types.ModuleType("braincog.base")
        pkg.__path__ = [os.path.join(braincog.__path__[0], "base")]
        sys.modules["braincog.base"] = pkg
    from braincog.base.node import node
    from braincog.base.strategy import surrogate

    return node, surrogate


class BrainCogNeuron(AdaptedNeuron):
    backend = "braincog"

    def library_config(self) -> dict:
        """The values the BrainCog node itself holds (checked by check_nodes)."""
        n = self.node
        out = {"v_threshold": float(n.threshold.detach()), "T": n.step, "alpha": float(n.act_fun.alpha)}
        if self.neuron == "lif":
            out["tau"] = n.tau
        return out

    def run(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = x_seq.shape[0]
        if T != self.node.step:
            raise ValueError(f"braincog {self.neuron} was built for T={self.node.step}, got {T} steps")
        self.node.n_reset()
        try:
            out = self.node(x_seq.reshape(T * x_seq.shape[1], -1))
            v = self.node.mem
        finally:
            self.node.n_reset()
        return out.view(x_seq.shape), v.view(x_seq.shape[1:])


@BACKENDS.register("braincog", paper="Zeng et al., Patterns 2023 (BrainCog)")
class BrainCogBackend(Backend):
    """IF, LIF and PLIF from BrainCog (hard reset to 0, detached; alpha 2.0; atan or sigmoid)."""

    name = "braincog"
    offers = ("if", "lif", "plif")

    def check(self, neuron: str, params: dict[str, Any]) -> None:
        super().check(neuron, params)
        p = split_params(params)
        name = p["surrogate"]
        if name not in _SURROGATES:
            raise ConfigError(f"backend=braincog offers the surrogates {sorted(_SURROGATES)}, not {name!r}")
        alpha = build_surrogate(name, p["alpha"]).alpha
        if alpha != BRAINCOG_ALPHA:
            raise ConfigError(f"backend=braincog hard-codes surrogate alpha={BRAINCOG_ALPHA}; got alpha={alpha}. "
                              f"Set surrogate.alpha={BRAINCOG_ALPHA} or use backend=native/spikingjelly.")
        if p["T"] is None:
            raise ConfigError("backend=braincog needs T (its nodes loop over T steps inside); set the run's T")
        if p["v_reset"] != 0.0 or not p["detach_reset"]:
            raise ConfigError("backend=braincog only resets hard to 0 with a detached spike: "
                              "set v_reset=0.0 and detach_reset=true")
        if neuron != "if" and not p["decay_input"]:
            raise ConfigError("backend=braincog's LIF/PLIF always decay the input: set decay_input=true")

    def build_neuron(self, neuron: str, **params: Any) -> nn.Module:
        self.check(neuron, params)
        p = split_params(params)
        node_mod, sur_mod = _import_braincog()
        act = getattr(sur_mod, _SURROGATES[p["surrogate"]])
        common = dict(threshold=float(p["v_threshold"]), act_fun=act, step=int(p["T"]), layer_by_layer=True,
                      requires_thres_grad=bool(p["learnable_threshold"]), mem_detach=False)
        if neuron == "if":
            node = node_mod.IFNode(**common)
        elif neuron == "lif":
            node = node_mod.LIFNode(tau=float(p["tau"]), **common)
        else:
            node = node_mod.PLIFNode(tau=float(p["tau"]), **common)
            node.act_fun.alpha.requires_grad_(False)  # our alpha is a fixed config value
        return BrainCogNeuron(
            neuron, node, build_surrogate(p["surrogate"], p["alpha"]), tau=p["tau"],
            v_threshold=p["v_threshold"], v_reset=p["v_reset"], decay_input=p["decay_input"],
            detach_reset=p["detach_reset"], learnable_threshold=p["learnable_threshold"], T=p["T"],
        )
