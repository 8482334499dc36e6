"""Semantic segmentation: spiking semantic-FPN head, per-pixel cross-entropy, mIoU and pixel accuracy.

Masks hold class indices ``0..K-1`` per pixel (``K = num_classes`` of the dataset, background
included where the dataset has one) and ``ignore_index`` (255) where a pixel is not scored.

From the confusion matrix ``C`` (rows: true class, columns: predicted) over all scored pixels:
``IoU_c = C_cc / (sum_j C_cj + sum_i C_ic - C_cc)``; mIoU is the mean over classes whose union is
non-empty; pixel accuracy is ``trace(C) / sum(C)``. Both are reported in percent.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from step.errors import ConfigError
from step.registry import TASKS


def collate_masks(batch: list[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[(image, {"mask": [H, W], ...}) or (image, mask)]`` -> ``(images [B,C,H,W], masks [B,H,W] long)``."""
    images, masks = [], []
    for image, target in batch:
        mask = target.get("mask") if isinstance(target, dict) else target
        if not torch.is_tensor(mask) or mask.dim() != 2:
            raise ConfigError("task=segmentation needs a dataset with per-pixel masks (digits-scenes, voc2012-seg, "
                              "ade20k); this dataset gives " + ("no mask" if isinstance(target, dict) else "class labels") + ".")
        images.append(image)
        masks.append(mask.long())
    return torch.stack(images), torch.stack(masks)


@TASKS.register("segmentation", paper="Semantic FPN (Kirillov et al., 2019) as used by Meta-SpikeFormer (ICLR 2024)")
class Segmentation:
    """Loss: per-pixel cross-entropy (ignoring ``ignore_index``); primary metric: mIoU (%)."""

    metric_name = "miou"
    higher_is_better = True
    collate_fn = staticmethod(collate_masks)

    def __init__(self, neck_dim: int = 64, head_dim: int = 64, ignore_index: int = 255):
        if neck_dim < 1 or head_dim < 1:
            raise ConfigError(f"task.neck_dim and task.head_dim must be >= 1, got {neck_dim}, {head_dim}")
        self.neck_dim, self.head_dim, self.ignore_index = int(neck_dim), int(head_dim), int(ignore_index)
        self.criterion = nn.CrossEntropyLoss(ignore_index=self.ignore_index)

    def build_model(self, backbone_name: str, model_kwargs: dict[str, Any], bundle, neuron, attention) -> nn.Module:
        """The backbone with a spiking FPN neck and a spiking semantic-FPN head for ``bundle.num_classes``."""
        from step.tasks.dense_model import build_dense_model
        from step.tasks.heads.fpn import SpikingFPN, SpikingSemanticHead

        def neck_head(shapes):
            neck = SpikingFPN([c for c, _, _ in shapes], self.neck_dim, neuron)
            head = SpikingSemanticHead(self.neck_dim, self.head_dim, bundle.num_classes, [(h, w) for _, h, w in shapes], neuron)
            return neck, head

        return build_dense_model(backbone_name, model_kwargs, bundle, neuron, attention, neck_head)

    def move_target(self, target: torch.Tensor, device: torch.device) -> torch.Tensor:
        return target.to(device, non_blocking=True)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.criterion(output, target)

    def make_metrics(self, num_classes: int) -> "SegmentationMetric":
        from step.tasks.seg_metric import SegmentationMetric

        return SegmentationMetric(num_classes, self.ignore_index)

    def update_metrics(self, metrics: "SegmentationMetric", output: torch.Tensor, target: torch.Tensor) -> None:
        metrics.update(output.detach().argmax(1), target)

    def compute_metrics(self, metrics: "SegmentationMetric") -> dict[str, float]:
        return {k: 100.0 * float(v) for k, v in metrics.compute().items()}


def __getattr__(name: str):
    """``SegmentationMetric`` lives in :mod:`step.tasks.seg_metric` (imported on first use)."""
    if name == "SegmentationMetric":
        from step.tasks.seg_metric import SegmentationMetric

        return SegmentationMetric
    raise AttributeError(name)
