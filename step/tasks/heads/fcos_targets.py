"""FCOS training targets, losses and decoding (Tian et al., ICCV 2019), with torchvision ops.

Assignment: a location ``(x, y)`` is a candidate for a ground-truth box when it lies inside the
box and within ``radius * stride`` of the box centre (centre sampling), and the largest of its
distances ``max(l, t, r, b)`` falls in its level's range ``[m_{l-1}, m_l)`` with ``m_l = 8 s_l``
(the last level open-ended, a single level takes every size). Among several candidates the box
of smallest area wins. Centre-ness target: ``sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))``.

Loss = sigmoid focal loss (alpha 0.25, gamma 2) over all locations / N_pos
     + GIoU loss on positives weighted by their centre-ness target / sum of those weights
     + BCE of centre-ness on positives / N_pos.
Decoding: score ``sqrt(sigmoid(cls) * sigmoid(ctr))``, threshold, top-k, class-wise NMS.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms, generalized_box_iou_loss, sigmoid_focal_loss


def level_ranges(strides: torch.Tensor, levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-location ``[lo, hi)`` range of ``max(l, t, r, b)``."""
    n_levels = int(levels.max()) + 1
    level_stride = torch.zeros(n_levels, device=strides.device)
    level_stride[levels] = strides
    hi = 8.0 * level_stride
    lo = torch.cat([hi.new_zeros(1), hi[:-1]])
    hi[-1] = float("inf")
    return lo[levels], hi[levels]


def assign(points: torch.Tensor, strides: torch.Tensor, levels: torch.Tensor, boxes: torch.Tensor,
           labels: torch.Tensor, radius: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Class targets ``[P]`` (0 = background, else the label) and box targets ``[P, 4]`` (xyxy)."""
    P = points.shape[0]
    if boxes.numel() == 0:
        return torch.zeros(P, dtype=torch.long, device=points.device), points.new_zeros(P, 4)
    x, y = points[:, 0:1], points[:, 1:2]  # [P, 1]
    ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], dim=2)  # [P, G, 4]
    inside = ltrb.min(dim=2).values > 0
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    r = radius * strides[:, None]
    near_centre = ((x - cx).abs() < r) & ((y - cy).abs() < r)
    lo, hi = level_ranges(strides, levels)
    reach = ltrb.max(dim=2).values
    in_range = (reach >= lo[:, None]) & (reach < hi[:, None])
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(P, -1).clone()
    area[~(inside & near_centre & in_range)] = float("inf")
    best_area, best = area.min(dim=1)
    cls_target = labels[best].clone()
    cls_target[torch.isinf(best_area)] = 0
    return cls_target, boxes[best]


def centerness_target(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    l, t = points[:, 0] - boxes[:, 0], points[:, 1] - boxes[:, 1]
    r, b = boxes[:, 2] - points[:, 0], boxes[:, 3] - points[:, 1]
    lr = l.minimum(r) / l.maximum(r).clamp(min=1e-6)
    tb = t.minimum(b) / t.maximum(b).clamp(min=1e-6)
    return (lr.clamp(min=0) * tb.clamp(min=0)).sqrt()


def decode_boxes(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    return torch.stack([points[..., 0] - ltrb[..., 0], points[..., 1] - ltrb[..., 1],
                        points[..., 0] + ltrb[..., 2], points[..., 1] + ltrb[..., 3]], dim=-1)


def fcos_loss(output: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]], radius: float = 1.5,
              alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """The FCOS loss of a batch (see the module docstring)."""
    points, strides, levels = output["points"], output["strides"], output["levels"]
    cls_t, box_t = zip(*(assign(points, strides, levels, t["boxes"], t["labels"], radius) for t in targets))
    cls_t, box_t = torch.stack(cls_t), torch.stack(box_t)  # [B, P], [B, P, 4]
    logits = output["cls_logits"]
    pos = cls_t > 0
    n_pos = max(float(pos.sum()), 1.0)
    onehot = torch.zeros_like(logits)
    onehot[pos] = F.one_hot(cls_t[pos] - 1, logits.shape[-1]).to(logits.dtype)
    loss_cls = sigmoid_focal_loss(logits, onehot, alpha=alpha, gamma=gamma, reduction="sum") / n_pos
    if not bool(pos.any()):
        zero = output["box_ltrb"].sum() * 0 + output["centerness"].sum() * 0
        return loss_cls + zero
    pts = points[None].expand(cls_t.shape[0], -1, -1)[pos]
    pred_boxes = decode_boxes(pts, output["box_ltrb"][pos])
    ctr_t = centerness_target(pts, box_t[pos])
    giou = generalized_box_iou_loss(pred_boxes, box_t[pos], reduction="none")
    loss_box = (giou * ctr_t).sum() / ctr_t.sum().clamp(min=1e-6)
    loss_ctr = F.binary_cross_entropy_with_logits(output["centerness"][pos], ctr_t, reduction="sum") / n_pos
    return loss_cls + loss_box + loss_ctr


@torch.no_grad()
def decode(output: dict[str, torch.Tensor], score_thresh: float = 0.05, nms_iou: float = 0.6,
           max_dets: int = 100, pre_nms: int = 1000) -> list[dict[str, torch.Tensor]]:
    """Per image ``{"boxes": [n, 4] xyxy, "scores": [n], "labels": [n] in 1..K}``."""
    H, W = (int(v) for v in output["image_size"])
    scores_all = (output["cls_logits"].float().sigmoid() * output["centerness"].float().sigmoid()[..., None]).sqrt()
    boxes_all = decode_boxes(output["points"], output["box_ltrb"].float())
    results = []
    for scores, boxes in zip(scores_all, boxes_all):
        flat = scores.flatten()
        keep = (flat > score_thresh).nonzero().squeeze(1)
        if keep.numel() > pre_nms:
            keep = keep[flat[keep].topk(pre_nms).indices]
        loc, cls = keep // scores.shape[1], keep % scores.shape[1]
        b = boxes[loc].clone()
        b[:, 0::2] = b[:, 0::2].clamp(0, W)
        b[:, 1::2] = b[:, 1::2].clamp(0, H)
        s = flat[keep]
        kept = batched_nms(b, s, cls, nms_iou)[:max_dets]
        results.append({"boxes": b[kept], "scores": s[kept], "labels": cls[kept] + 1})
    return results
