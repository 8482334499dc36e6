"""Attention variants, each registered in ``step.registry.ATTENTIONS``."""

from step.attention.factory import AttentionFactory
from step.attention import ssa  # noqa: F401  (registers)

__all__ = ["AttentionFactory"]
