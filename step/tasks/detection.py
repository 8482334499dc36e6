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

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric

from step.errors import ConfigError
from step.registry import TASKS

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # as COCOeval


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


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """COCO's 101-point interpolated AP of detections with ``scores`` and true-positive flags ``tp``."""
    if n_gt == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    tps = np.cumsum(tp[order], dtype=np.float64)
    fps = np.cumsum(~tp[order], dtype=np.float64)
    recall = tps / n_gt
    precision = tps / np.maximum(tps + fps, np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone from the right
    idx = np.searchsorted(recall, np.linspace(0.0, 1.0, 101), side="left")
    return float(np.concatenate([precision, [0.0]])[idx].mean())


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, np.spacing(1))


def match_image(boxes: np.ndarray, gt: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """True-positive flags ``[len(thresholds), D]`` of one image's detections of one class.

    ``boxes`` are sorted by descending score; each in turn takes the unmatched ground truth of
    highest IoU if that IoU is ``>= t`` (COCOeval's greedy matching, without crowd regions).
    """
    tp = np.zeros((len(thresholds), len(boxes)), dtype=bool)
    if len(boxes) == 0 or len(gt) == 0:
        return tp
    iou = box_iou_np(boxes, gt)
    taken = np.zeros((len(thresholds), len(gt)), dtype=bool)
    rows = np.arange(len(thresholds))
    for d in np.nonzero(iou.max(1) >= thresholds.min())[0]:  # the others match nothing at any threshold
        cand = np.where(taken, -1.0, iou[d][None])
        best = cand.argmax(1)
        ok = cand[rows, best] >= thresholds
        tp[ok, d] = True
        taken[rows[ok], best[ok]] = True
    return tp


def _groups(image: np.ndarray, label: np.ndarray) -> dict[tuple[float, float], np.ndarray]:
    """Row indices by (image, label)."""
    if len(image) == 0:
        return {}
    keys, inverse = np.unique(np.stack([image, label], 1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(keys)))[:-1]
    return {(float(k[0]), float(k[1])): idx for k, idx in zip(keys, np.split(order, bounds))}


class MeanAP(Metric):
    """Collects detections and ground truth; ``compute()`` -> ``{"map50", "map50_95", "map75"}`` in [0, 1]."""

    full_state_update = False

    def __init__(self, max_dets: int = 100):
        super().__init__()
        self.max_dets = max_dets
        # rows (image id, x1, y1, x2, y2, score, label) and (image id, x1, y1, x2, y2, label)
        self.add_state("dets", default=[], dist_reduce_fx="cat")
        self.add_state("gts", default=[], dist_reduce_fx="cat")
        self._local = 0

    def _image_id(self) -> float:
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        self._local += 1
        return float((self._local - 1) * world + rank)

    def update(self, preds: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]]) -> None:
        for p, t in zip(preds, targets):
            i = self._image_id()
            b, s, lab = p["boxes"].float(), p["scores"].float(), p["labels"].float()
            self.dets.append(torch.cat([torch.full_like(s, i)[:, None], b.reshape(-1, 4), s[:, None], lab[:, None]], 1))
            g = t["boxes"].float().reshape(-1, 4).to(b.device)
            gl = t["labels"].float().reshape(-1).to(b.device)
            self.gts.append(torch.cat([torch.full_like(gl, i)[:, None], g, gl[:, None]], 1))

    def reset(self) -> None:
        super().reset()
        self._local = 0

    def _rows(self, state) -> torch.Tensor:
        if isinstance(state, list):
            return torch.cat(state).cpu() if state else torch.zeros(0, 7)
        return state.cpu()

    def compute(self) -> dict[str, torch.Tensor]:
        dets = self._rows(self.dets).reshape(-1, 7).double().numpy()
        gts = self._rows(self.gts).reshape(-1, 6).double().numpy()
        det_groups, gt_groups = _groups(dets[:, 0], dets[:, 6]), _groups(gts[:, 0], gts[:, 5])
        classes = np.unique(gts[:, 5])
        if len(classes) == 0:
            nan = torch.tensor(float("nan"))
            return {"map50": nan, "map50_95": nan, "map75": nan}
        ap = np.zeros((len(IOU_THRESHOLDS), len(classes)))
        for ci, c in enumerate(classes):
            scores, tps = [np.zeros(0)], [np.zeros((len(IOU_THRESHOLDS), 0), dtype=bool)]
            for (img, label), idx in det_groups.items():
                if label != c:
                    continue
                d = dets[idx][np.argsort(-dets[idx, 5], kind="mergesort")[: self.max_dets]]
                g = gts[gt_groups[(img, label)], 1:5] if (img, label) in gt_groups else np.zeros((0, 4))
                scores.append(d[:, 5])
                tps.append(match_image(d[:, 1:5], g))
            s, tp = np.concatenate(scores), np.concatenate(tps, axis=1)
            n_gt = int((gts[:, 5] == c).sum())
            ap[:, ci] = [average_precision(s, tp[ti], n_gt) for ti in range(len(IOU_THRESHOLDS))]
        return {"map50": torch.tensor(ap[0].mean()), "map50_95": torch.tensor(ap.mean()), "map75": torch.tensor(ap[5].mean())}


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

    def make_metrics(self, num_classes: int) -> MeanAP:
        return MeanAP(self.max_dets)

    def update_metrics(self, metrics: MeanAP, output: dict[str, torch.Tensor], target) -> None:
        metrics.update(self.decode({k: v.detach() for k, v in output.items()}), target)

    def compute_metrics(self, metrics: MeanAP) -> dict[str, float]:
        return {k: 100.0 * float(v) for k, v in metrics.compute().items()}
