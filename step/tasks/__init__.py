"""Tasks choose the loss, the metrics and how batches are read."""

from step.tasks import classification  # noqa: F401  (registers)
from step.tasks import segmentation, detection  # noqa: F401  (registers)
