"""Helpers shared by the model definitions."""

from __future__ import annotations

from torch import nn

from step.attention.factory import AttentionFactory
from step.errors import ConfigError
from step.neurons.factory import NeuronFactory


def resolve_components(
    neuron: NeuronFactory | None, attention: AttentionFactory | None
) -> tuple[NeuronFactory, AttentionFactory]:
    """The given factories, or the platform defaults (equal to ``conf/train.yaml``'s)."""
    from step.components import default_attention_factory, default_neuron_factory

    return neuron or default_neuron_factory(), attention or default_attention_factory()


class PerTimestepLogits:
    """Classifier models: logits per timestep while training, when asked (TET, Deng et al. 2022).

    ``per_timestep_logits`` is False by default: the forward pass is the model's own (logits averaged
    over T, computed exactly as before). The runner sets it to True for ``task.loss=tet``; then a
    training-mode forward returns ``[T, B, K]`` (the classifier applied at every timestep) and an
    eval-mode forward still returns the time average ``[B, K]`` that metrics and energy see.
    """

    per_timestep_logits: bool = False

    def _timestep_output(self) -> bool:
        return self.per_timestep_logits and self.training


def init_linear_trunc_normal(module: nn.Module) -> None:
    """trunc_normal(std 0.02) Linear weights and zero biases (the reference repos' init)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def released_attention(model: str, switch: str, attention: AttentionFactory, needed: str, param: str) -> AttentionFactory:
    """The attention a ``model.<switch>=true`` (a released code's quirk, reproduced on request) builds:
    ``needed`` with ``param=True`` added, or one :class:`ConfigError` when another attention is selected."""
    if attention.name != needed:
        raise ConfigError(f"{model}: {switch} reproduces the released {needed} code, but the attention is "
                          f"'{attention.name}'; use attention={needed} or model.{switch}=false.")
    return AttentionFactory(needed, **{**attention.params, param: True})
