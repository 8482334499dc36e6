"""Segmentation / detection metrics and FCOS targets against hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from step.tasks.dense_model import split_energy_by_prefix
from step.tasks.detection import MeanAP, average_precision, match_image
from step.tasks.heads.fcos_targets import assign, centerness_target, decode_boxes
from step.tasks.segmentation import SegmentationMetric


def test_segmentation_metric_hand_case():
    # target [[0,0],[1,1]], pred [[0,1],[1,1]]: class 0 IoU 1/2, class 1 IoU 2/3; accuracy 3/4
    m = SegmentationMetric(num_classes=3)
    m.update(torch.tensor([[[0, 1], [1, 1]]]), torch.tensor([[[0, 0], [1, 1]]]))
    out = m.compute()
    assert float(out["miou"]) == pytest.approx((1 / 2 + 2 / 3) / 2)  # class 2 absent: not averaged
    assert float(out["pixel_acc"]) == pytest.approx(3 / 4)


def test_segmentation_metric_perfect_ignore_and_logits():
    target = torch.tensor([[[0, 2], [255, 1]]])
    logits = torch.nn.functional.one_hot(torch.tensor([[[0, 2], [1, 1]]]), 3).permute(0, 3, 1, 2).float()
    m = SegmentationMetric(num_classes=3)
    m.update(logits, target)  # the ignored pixel's wrong-or-right value does not count
    assert float(m.compute()["miou"]) == 1.0 and float(m.compute()["pixel_acc"]) == 1.0


def test_all_background_baseline_miou():
    # 6 background pixels, 2 of class 1 -> predicting background everywhere: IoU_0 = 6/8, IoU_1 = 0
    target = torch.tensor([[[0, 0, 0, 0], [0, 0, 1, 1]]])
    m = SegmentationMetric(num_classes=2)
    m.update(torch.zeros_like(target), target)
    assert float(m.compute()["miou"]) == pytest.approx(0.75 / 2)


def _det(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels)}


def _gt(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels)}


def test_map_perfect_is_one():
    m = MeanAP()
    gts = [_gt([[0, 0, 10, 10], [20, 20, 30, 35]], [1, 2]), _gt([[5, 5, 15, 15]], [1])]
    m.update([_det(g["boxes"].tolist(), [0.9] * len(g["labels"]), g["labels"].tolist()) for g in gts], gts)
    out = m.compute()
    assert float(out["map50"]) == 1.0 and float(out["map50_95"]) == 1.0


def test_map_shifted_box_known_iou():
    # [0,0,10,10] vs [0,2,10,12]: intersection 80, union 120 -> IoU 2/3: a hit at 0.50..0.65 (4 of 10)
    m = MeanAP()
    m.update([_det([[0, 2, 10, 12]], [0.8], [1])], [_gt([[0, 0, 10, 10]], [1])])
    out = m.compute()
    assert float(out["map50"]) == 1.0
    assert float(out["map50_95"]) == pytest.approx(0.4)
    assert float(out["map75"]) == 0.0


def test_map_zero_boxes_is_zero():
    m = MeanAP()
    m.update([_det([], [], [])], [_gt([[0, 0, 10, 10]], [3])])
    assert float(m.compute()["map50"]) == 0.0


def test_ap_101_point_interpolation():
    # two ground truths; ranked: hit (0.9), false positive (0.8) -> precision 1 up to recall 0.5
    assert average_precision(np.array([0.9, 0.8]), np.array([True, False]), 2) == pytest.approx(51 / 101)
    # false positive ranked first, then the only hit: precision 1/2 at every recall point
    assert average_precision(np.array([0.9, 0.8]), np.array([False, True]), 1) == pytest.approx(0.5)


def test_greedy_match_one_gt_one_hit():
    # two detections on one ground truth: only the higher-ranked one is a true positive
    tp = match_image(np.array([[0, 0, 10, 10], [0, 0, 10, 10.0]]), np.array([[0, 0, 10, 10.0]]), np.array([0.5]))
    assert tp.tolist() == [[True, False]]


def test_map_wrong_class_is_a_miss_and_multi_image():
    m = MeanAP()
    m.update([_det([[0, 0, 10, 10]], [0.9], [2])], [_gt([[0, 0, 10, 10]], [1])])
    m.update([_det([[0, 0, 10, 10]], [0.9], [1])], [_gt([[0, 0, 10, 10]], [1])])
    # class 1: two ground truths (one per image), one hit ranked alone -> recall 1/2 at precision 1
    # class 2 has no ground truth and is not averaged
    assert float(m.compute()["map50"]) == pytest.approx(51 / 101)


def test_fcos_assignment_and_centerness():
    points = torch.tensor([[5.0, 5.0], [1.0, 1.0], [25.0, 25.0]])
    strides = torch.full((3,), 2.0)
    levels = torch.zeros(3, dtype=torch.long)
    boxes, labels = torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([4])
    cls_t, box_t = assign(points, strides, levels, boxes, labels, radius=1.5)
    # (5,5) is at the centre; (1,1) is inside but 4 px from it (> 1.5 * 2); (25,25) is outside
    assert cls_t.tolist() == [4, 0, 0]
    assert box_t[0].tolist() == [0.0, 0.0, 10.0, 10.0]
    # centre-ness at (2, 5) in [0,0,10,10]: sqrt(2/8 * 5/5) = 0.5
    assert float(centerness_target(torch.tensor([[2.0, 5.0]]), boxes)) == pytest.approx(0.5)
    assert decode_boxes(torch.tensor([[5.0, 5.0]]), torch.tensor([[5.0, 5.0, 5.0, 5.0]])).tolist() == [[0, 0, 10, 10]]


def test_fcos_assignment_smallest_box_wins():
    points = torch.tensor([[5.0, 5.0]])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 8.0, 8.0]])
    cls_t, _ = assign(points, torch.tensor([4.0]), torch.tensor([0]), boxes, torch.tensor([1, 2]))
    assert cls_t.tolist() == [2]


def test_split_energy_by_prefix():
    rows = [{"name": "backbone.blocks.0.attn", "energy_pj": 3.0}, {"name": "neck.lateral.0.conv", "energy_pj": 1.5},
            {"name": "head.cls_out", "energy_pj": 0.5}, {"name": "head.box_out", "energy_pj": 2.0},
            {"name": "encoder", "energy_pj": 1.0}]
    out = split_energy_by_prefix(rows)
    assert out == {"backbone": 3.0, "neck": 1.5, "head": 2.5, "other": 1.0, "total": 8.0}
    assert math.isclose(sum(v for k, v in out.items() if k != "total"), out["total"])
