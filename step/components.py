"""The defaults a model falls back to when built without a run config.

They equal ``conf/train.yaml``'s defaults (a test checks this), so
``MODELS.build("spikformer-4-384", num_classes=10, img_size=32)`` gives the module the CLI builds.
"""

from __future__ import annotations

from step.attention.factory import AttentionFactory
from step.neurons.factory import NeuronFactory

DEFAULT_NEURON = dict(
    name="lif",
    tau=2.0,
    v_threshold=1.0,
    v_reset=0.0,
    decay_input=True,
    detach_reset=True,
    learnable_threshold=False,
)
DEFAULT_SURROGATE = dict(surrogate="atan", alpha=2.0)
DEFAULT_T = 4


def default_neuron_factory(T: int | None = DEFAULT_T) -> NeuronFactory:
    params = {k: v for k, v in DEFAULT_NEURON.items() if k != "name"}
    return NeuronFactory(DEFAULT_NEURON["name"], backend="native", T=T, **params, **DEFAULT_SURROGATE)


def default_attention_factory(name: str = "ssa") -> AttentionFactory:
    return AttentionFactory(name)
