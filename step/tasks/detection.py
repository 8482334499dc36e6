"""Object detection: spiking FCOS-style head, FCOS losses, COCO-style mAP@0.5 and mAP@0.5:0.95.

Targets per image are ``{"boxes": [n, 4] xyxy in input pixels, "labels": [n] in 1..K-1}`` with
``K = num_classes`` of the dataset counting the background as class 0 (torchvision's convention).

mAP follows the COCO protocol (``pycocotools`` COCOeval, area "all", at most ``max_dets``
detections per image and class): for each class and IoU threshold ``t`` in 0.50:0.05:0.95,
detections sorted by score are matched greedily to the unmatched ground truth of highest IoU
``>= t`` in their image; precision is made monotone from the right and read at 101 recall points
``0, 0.01, ..., 1`` (0 where a recall is not reached); AP is their mean. Classes without ground
truth are skipped. torchmetrics' MeanAveragePrecision needs pycocotools or faster-coco-eval,
neither of which is installed here, so the protocol is implemented below.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from step.errors import ConfigError
from step.registry import TASKS



def collate_boxes(batch: list[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """``[(image, {"boxes", "labels", ...})]`` -> ``(images [B,C,H,W], [{"boxes", "labels"}] * B)``."""
    images, targets = [], []
    for image, target in batch:
        if not isinstance(target, dict) or "boxes" not in target:
            raise ConfigError("task=detection needs a dataset with boxes (digits-scenes, voc2012-det, coco2017); "
                              "this dataset gives none.")
        images.append(image)
        targets.append({"boxes": target["boxes"].float().reshape(-1, 4), "labels": target["labels"].long().reshape(-1)})
    return torch.stack(images), targets


@TASKS.register("detection", paper="FCOS (Tian et al., ICCV 2019) with spiking neurons; COCO mAP protocol")
class Detection:
    """Loss: FCOS (focal + GIoU + centre-ness); primary metric: mAP@0.5 (%), also mAP@0.5:0.95."""

    metric_name = "map50"
    higher_is_better = True
    collate_fn = staticmethod(collate_boxes)

    def __init__(self, neck_dim: int = 64, tower_depth: int = 2, center_radius: float = 1.5,
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0, score_thresh: float = 0.05,
                 nms_iou: float = 0.6, max_dets: int = 100):
        if neck_dim < 1 or tower_depth < 0 or max_dets < 1:
            raise ConfigError(f"task.neck_dim >= 1, task.tower_depth >= 0 and task.max_dets >= 1 are needed, got "
                              f"{neck_dim}, {tower_depth}, {max_dets}")
        self.neck_dim, self.tower_depth = int(neck_dim), int(tower_depth)
        self.center_radius, self.focal_alpha, self.focal_gamma = float(center_radius), float(focal_alpha), float(focal_gamma)
        self.score_thresh, self.nms_iou, self.max_dets = float(score_thresh), float(nms_iou), int(max_dets)

    def build_model(self, backbone_name: str, model_kwargs: dict[str, Any], bundle, neuron, attention) -> nn.Module:
        """The backbone with a spiking FPN neck and a spiking FCOS head for ``num_classes - 1`` objects."""
        from step.tasks.dense_model import build_dense_model
        from step.tasks.heads.fcos import SpikingFCOSHead
        from step.tasks.heads.fpn import SpikingFPN

        if bundle.num_classes < 2:
            raise ConfigError(f"detection needs num_classes >= 2 (background + objects), dataset gives {bundle.num_classes}")

        def neck_head(shapes):
            neck = SpikingFPN([c for c, _, _ in shapes], self.neck_dim, neuron)
            head = SpikingFCOSHead(self.neck_dim, bundle.num_classes - 1, neuron, self.tower_depth, len(shapes))
            return neck, head

        return build_dense_model(backbone_name, model_kwargs, bundle, neuron, attention, neck_head)

    def move_target(self, target: list[dict[str, torch.Tensor]], device: torch.device) -> list[dict[str, torch.Tensor]]:
        return [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in target]

    def loss(self, output: dict[str, torch.Tensor], target: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        from step.tasks.heads.fcos_targets import fcos_loss

        return fcos_loss(output, target, self.center_radius, self.focal_alpha, self.focal_gamma)

    def decode(self, output: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        from step.tasks.heads.fcos_targets import decode

        return decode(output, self.score_thresh, self.nms_iou, self.max_dets)

    def make_metrics(self, num_classes: int) -> "MeanAP":
        from step.tasks.mean_ap import MeanAP

        return MeanAP(self.max_dets)

    def update_metrics(self, metrics: "MeanAP", output: dict[str, torch.Tensor], target) -> None:
        metrics.update(self.decode({k: v.detach() for k, v in output.items()}), target)

    def compute_metrics(self, metrics: "MeanAP") -> dict[str, float]:
        return {k: 100.0 * float(v) for k, v in metrics.compute().items()}


def __getattr__(name: str):
    """``MeanAP`` and its helpers live in :mod:`step.tasks.mean_ap` (imported on first use)."""
    if name in ("MeanAP", "average_precision", "match_image", "box_iou_np", "IOU_THRESHOLDS"):
        from step.tasks import mean_ap

        return getattr(mean_ap, name)
    raise AttributeError(name)
