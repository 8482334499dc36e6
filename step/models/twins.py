"""ANN and INT8 twins: the same macro-architecture with real-valued or int8 activations.

The STEP paper argues that quantised ANNs may match SNNs in energy; these twins make that
comparison runnable on any model of the zoo.

* **ANN twin**: no wrapper is needed. ``neuron=relu attention=softmax`` (or ``neuron=gelu``) builds
  any model with element-wise activations in place of every spiking neuron and real-valued
  softmax attention; with ``T=1`` it is a plain ANN (the activations are stateless over T).
* **INT8 twin**: ``model=int8-twin model.base=<any model name> neuron=int8 attention=softmax``
  builds ``base`` with the run's components and then fake-quantises the weights of every Conv
  and Linear layer with :func:`quantize_weights_int8`; ``neuron=int8`` fake-quantises the
  activations (:class:`step.neurons.activations.Int8Activation`). The weight quantisation is
  independent of the neuron, so ``int8-twin`` with a spiking neuron gives an int8-weight SNN.

Weights: symmetric per-output-channel, W_q = s_c * clamp(round(W / s_c), -127, 127) with
s_c = max|W_c| / 127, recomputed from the float ``original`` weight at every call (quantisation-
aware training with a straight-through gradient). Biases stay float (int32 accumulators in
deployment) and BatchNorm is left unquantised (it folds into the preceding layer at inference).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from step.errors import ConfigError
from step.neurons.activations import INT8_MAX
from step.registry import MODELS


class Int8WeightFakeQuant(nn.Module):
    """Parametrisation: a weight tensor onto its per-output-channel symmetric int8 grid."""

    @staticmethod
    def scale(w: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, w.dim()))
        return w.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / INT8_MAX

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s = self.scale(w)
        q = torch.clamp(torch.round(w / s), -INT8_MAX, INT8_MAX) * s
        return w + (q - w).detach()


_QUANTISED = (nn.modules.conv._ConvNd, nn.Linear)


def quantize_weights_int8(model: nn.Module) -> nn.Module:
    """Fake-quantise (in place) the weight of every Conv and Linear layer of ``model``; returns it."""
    for module in model.modules():
        if isinstance(module, _QUANTISED) and not parametrize.is_parametrized(module, "weight"):
            parametrize.register_parametrization(module, "weight", Int8WeightFakeQuant())
    return model


def int8_twin(base: str = "spikformer-4-384", **kwargs) -> nn.Module:
    """``base`` (a model name) built with ``kwargs`` and the run's components, int8 weights."""
    if base == "int8-twin" or MODELS.entry(base).fn is int8_twin:
        raise ConfigError(f"int8-twin: base must be a model, not another twin (got '{base}').")
    return quantize_weights_int8(MODELS.build(base, **kwargs))


MODELS.add("int8-twin", int8_twin, paper="Jacob et al., CVPR 2018 (int8 fake quantisation); STEP's quantised-ANN baseline",
           description="any model ('base') with per-channel int8 fake-quantised Conv/Linear weights; "
                       "use with neuron=int8 attention=softmax for the INT8 ANN twin")
