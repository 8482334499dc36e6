"""COCO-protocol mean average precision (101-point interpolation, IoU 0.50:0.05:0.95), as a torchmetrics Metric.

Kept apart from :mod:`step.tasks.detection` so that importing the task registry does not import
torchmetrics (a slow import); the task builds it only when a run asks for its metrics.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # as COCOeval

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
