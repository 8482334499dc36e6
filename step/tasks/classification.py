"""Image / event / sequence classification: cross-entropy loss, top-1 accuracy."""

from __future__ import annotations

import torch
from torch import nn

from step.registry import TASKS


@TASKS.register("classification")
class Classification:
    """Loss: cross-entropy with ``label_smoothing``; primary metric: top-1 accuracy (%)."""

    metric_name = "top1"
    higher_is_better = True

    def __init__(self, label_smoothing: float = 0.0):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.criterion(output, target)

    def make_metrics(self, num_classes: int):
        """A torchmetrics collection; ``top1`` is micro-averaged accuracy in [0, 1]."""
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassAccuracy

        metrics = {"top1": MulticlassAccuracy(num_classes=num_classes, average="micro")}
        if num_classes > 5:
            metrics["top5"] = MulticlassAccuracy(num_classes=num_classes, top_k=5, average="micro")
        return MetricCollection(metrics)
