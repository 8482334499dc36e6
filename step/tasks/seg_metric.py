"""Confusion-matrix mIoU and pixel accuracy as a torchmetrics Metric (imported on first use)."""

from __future__ import annotations

import torch
from torchmetrics import Metric

class SegmentationMetric(Metric):
    """Confusion matrix over scored pixels; ``compute()`` -> ``{"miou", "pixel_acc"}`` in [0, 1]."""

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int = 255):
        super().__init__()
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_state("confmat", default=torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: logits ``[B, K, H, W]`` or class indices ``[B, H, W]``; ``target``: ``[B, H, W]``."""
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(1)
        valid = target != self.ignore_index
        idx = target[valid] * self.num_classes + pred[valid]
        self.confmat += torch.bincount(idx, minlength=self.num_classes**2).view(self.num_classes, self.num_classes)

    def compute(self) -> dict[str, torch.Tensor]:
        c = self.confmat.double()
        inter = c.diag()
        union = c.sum(0) + c.sum(1) - inter
        present = union > 0
        miou = (inter[present] / union[present]).mean() if bool(present.any()) else torch.tensor(float("nan"))
        acc = inter.sum() / c.sum() if c.sum() > 0 else torch.tensor(float("nan"))
        return {"miou": miou, "pixel_acc": acc}
