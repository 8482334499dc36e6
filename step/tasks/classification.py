"""Image / event / sequence classification: cross-entropy loss, top-1 accuracy.

The training criterion (label smoothing from the dataset recipe, mixup's soft targets, TET,
distillation) is decided by :func:`step.engine.recipe.build_recipe`; this task names which loss
(``loss``: ``ce`` or ``tet`` with ``tet_lambda`` and ``tet_means``) and gives the evaluation loss,
plain cross-entropy on hard labels of the time-averaged output.
"""

from __future__ import annotations

import torch
from torch import nn

from step.errors import ConfigError
from step.registry import TASKS


@TASKS.register("classification")
class Classification:
    """Training loss ``ce`` or ``tet`` (Deng et al., ICLR 2022: ``(1 - tet_lambda)`` x mean over T of the
    per-timestep cross-entropy + ``tet_lambda`` x MSE of the per-timestep logits to ``tet_means``);
    evaluation loss: cross-entropy; primary metric: top-1 accuracy (%)."""

    metric_name = "top1"
    higher_is_better = True
    LOSSES = ("ce", "tet")

    def __init__(self, loss: str = "ce", tet_lambda: float = 0.0, tet_means: float = 1.0):
        if loss not in self.LOSSES:
            raise ConfigError(f"task.loss must be one of {', '.join(self.LOSSES)}, got {loss!r}.")
        if not 0.0 <= tet_lambda <= 1.0:
            raise ConfigError(f"task.tet_lambda must be in [0, 1], got {tet_lambda}.")
        if loss != "tet" and (tet_lambda != 0.0 or tet_means != 1.0):
            raise ConfigError("task.tet_lambda / task.tet_means belong to task.loss=tet; set task.loss=tet or leave "
                              "them at 0.0 / 1.0.")
        self.train_loss, self.tet_lambda, self.tet_means = str(loss), float(tet_lambda), float(tet_means)
        self.criterion = nn.CrossEntropyLoss()

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The evaluation loss (training uses the run's recipe, :mod:`step.engine.recipe`)."""
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
