"""Dataset registry entries: embedded defaults and loaders for real data under the data root."""

from step.data.base import DataBundle, MODALITIES
from step.data import digits  # noqa: F401  (registers)

__all__ = ["DataBundle", "MODALITIES"]
