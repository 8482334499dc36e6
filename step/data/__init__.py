"""Dataset registry entries: embedded defaults and loaders for real data under the data root."""

from step.data.base import DataBundle, MODALITIES
from step.data import digits, digits_dvs, digits_hard, sequences, vision, events  # noqa: F401  (registers)
from step.data import digits_scenes, voc, ade20k, coco  # noqa: F401  (registers)
from step.data.mixup import build_mixup

__all__ = ["DataBundle", "MODALITIES", "build_mixup"]
