"""STEP: a benchmark platform for spiking transformers.

Importing :mod:`step` registers every built-in component, so that
``step.registry.MODELS.build("spikformer-4-384", num_classes=10, img_size=32)`` works in a notebook
exactly as it does from the CLI.
"""

__version__ = "0.1.0"

from step import registry  # noqa: E402
from step import surrogates, neurons, encoders, layers, data  # noqa: E402,F401
from step import attention, models, tasks  # noqa: E402,F401
from step import energy  # noqa: E402,F401

__all__ = ["registry", "__version__"]
