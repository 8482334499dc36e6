"""STEP: a benchmark platform for spiking transformers.

``import step`` is light (no torch): the built-in components register on the first registry
lookup, so ``step.registry.MODELS.build("spikformer-4-384", num_classes=10, img_size=32)`` works in
a notebook exactly as it does from the CLI, and ``step-train --help`` does not wait for torch.
Sub-packages (``step.models``, ``step.energy``, ...) import on first attribute access.
"""

import importlib

__version__ = "0.1.0"

from step import registry  # noqa: E402

__all__ = ["registry", "__version__"]


def __getattr__(name: str):
    """``step.<package>`` imports the package on first use (``step.models``, ``step.energy``, ...)."""
    if name in registry.BUILTIN_PACKAGES or name in ("engine", "results", "config", "cli", "train"):
        return importlib.import_module(f"step.{name}")
    raise AttributeError(f"module 'step' has no attribute {name!r}")
