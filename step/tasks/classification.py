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

    # -- runner hooks shared with the dense tasks (step.tasks.segmentation / detection) ----------
    collate_fn = None  # the DataLoader's default collation

    def build_model(self, backbone_name: str, model_kwargs: dict, bundle, neuron, attention) -> nn.Module:
        """The registered model itself (its classifier is the head)."""
        from step.registry import MODELS

        return MODELS.build(backbone_name, neuron=neuron, attention=attention, **model_kwargs)

    def move_target(self, target: torch.Tensor, device: torch.device) -> torch.Tensor:
        return target.to(device, non_blocking=True)

    def update_metrics(self, metrics, output: torch.Tensor, target: torch.Tensor) -> None:
        metrics.update(output.detach().float(), target)

    def compute_metrics(self, metrics) -> dict[str, float]:
        """Each metric in percent, as papers report (NaN stays NaN)."""
        import math

        out = {}
        for k, v in metrics.compute().items():
            value = float(v)
            out[k] = 100.0 * value if not math.isnan(value) else value
        return out
