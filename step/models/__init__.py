"""Models, each registered in ``step.registry.MODELS`` under a name that reads as its spec."""

from step.models import spikformer  # noqa: F401  (registers)
