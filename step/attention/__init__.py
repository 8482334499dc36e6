"""Attention variants, each registered in ``step.registry.ATTENTIONS``."""

from step.attention.factory import AttentionFactory
from step.attention import ssa  # noqa: F401  (registers)
from step.attention import qk, bipolar, semm, softmax  # noqa: F401  (registers qk_token, qk_channel, bipolar, semm, softmax)
from step.attention import sdsa  # noqa: F401  (registers sdsa1..4)

__all__ = ["AttentionFactory"]
