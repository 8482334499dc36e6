"""Every knob of the dense tasks, shown by what a tiny real run computes (``task.label_smoothing``
of classification is left to issue 20, which rewires it; classification has no other knob).

Also the fast twins of the slow CLI tests (tests/test_tasks_cli.py): one segmentation and one
detection run end to end in process, with their records and rows.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from knob_runs import cumulative_bn, on_model, tiny_run

SCENES = ("dataset=digits-scenes", "dataset.n_train=4", "dataset.n_test=3", "dataset.img_size=32",
          "dataset.min_scale=8", "dataset.max_scale=12", "T=1", "trainer.batch_size=4", "trainer.max_batches=1",
          "trainer.eval_batch_size=4")
SEG = (*SCENES, "task=segmentation", "task.neck_dim=8", "task.head_dim=8")
DET = (*SCENES, "task=detection", "task.neck_dim=8", "task.tower_depth=1")


def _conv_outputs(monkeypatch, part: str, calls: list) -> None:
    """Record (module path, out channels) of every conv call inside ``model.<part>``."""

    def watch(model):
        for name, m in getattr(model, part).named_modules():
            if isinstance(m, torch.nn.Conv2d):
                m.register_forward_hook(lambda mod, args, out, name=name: calls.append((name, out.shape[-3])))

    on_model(monkeypatch, watch)


# ---- segmentation ----------------------------------------------------------------------------
def test_segmentation_end_to_end_writes_miou_and_energy_by_part(isolated_roots, monkeypatch):
    on_model(monkeypatch, cumulative_bn)  # so that the neck's neurons fire after one batch
    record = tiny_run(*SEG)
    row = pd.read_csv(isolated_roots / "results" / "leaderboard.csv").iloc[-1]
    assert (row["status"], row["task"], row["metric_name"]) == ("ok", "segmentation", "miou")
    assert row["metric"] == pytest.approx(record["metrics"]["miou"]) and 0.0 <= row["metric"] <= 100.0
    assert 0.0 <= record["metrics"]["pixel_acc"] <= 100.0
    parts = record["energy"]["by_part_pj"]
    assert parts["backbone"] > 0 and parts["neck"] > 0 and parts["head"] > 0
    assert parts["total"] == pytest.approx(sum(r["energy_pj"] for r in record["energy"]["per_layer"]))


@pytest.mark.parametrize("neck_dim,head_dim", [(8, 8), (12, 6)])
def test_segmentation_neck_and_head_widths(monkeypatch, neck_dim, head_dim):
    neck: list = []
    head: list = []
    _conv_outputs(monkeypatch, "neck", neck)
    _conv_outputs(monkeypatch, "head", head)
    tiny_run(*SEG, f"task.neck_dim={neck_dim}", f"task.head_dim={head_dim}", "energy.enabled=false")
    assert neck and {c for _, c in neck} == {neck_dim}
    assert {c for name, c in head if not name.startswith("classifier")} == {head_dim}
    assert {c for name, c in head if name.startswith("classifier")} == {11}  # 10 digits + background


@pytest.mark.parametrize("ignore_index", [255, 0])
def test_segmentation_loss_and_metric_skip_ignore_index(monkeypatch, ignore_index):
    """With ``ignore_index=0`` the background pixels leave the loss and the pixel accuracy:
    both are recomputed here by hand from what the run's loss and metric received."""
    from step.tasks.segmentation import Segmentation

    seen: list = []
    real = Segmentation.loss
    monkeypatch.setattr(Segmentation, "loss", lambda self, out, y: (seen.append(
        (torch.is_grad_enabled(), out.detach().float(), y.clone(), (loss := real(self, out, y)).detach())), loss)[1])
    record = tiny_run(*SEG, f"task.ignore_index={ignore_index}", "energy.enabled=false")
    for _, out, y, loss in seen:
        logp = out.log_softmax(1).gather(1, y.clamp(max=out.shape[1] - 1)[:, None])[:, 0]
        scored = y != ignore_index
        assert bool((y == 0).any()) and bool((y > 0).any())  # background and digits in every batch
        assert float(loss) == pytest.approx(float(-logp[scored].mean()), rel=1e-5)
    final = [(out, y) for training, out, y, _ in seen if not training]
    pred = torch.cat([o.argmax(1).flatten() for o, _ in final])
    true = torch.cat([y.flatten() for _, y in final])
    keep = true != ignore_index
    assert record["metrics"]["pixel_acc"] == pytest.approx(100.0 * float((pred[keep] == true[keep]).float().mean()), abs=1e-4)


# ---- detection -------------------------------------------------------------------------------
def test_detection_end_to_end_writes_map(isolated_roots):
    record = tiny_run(*DET, "energy.enabled=false")
    row = pd.read_csv(isolated_roots / "results" / "leaderboard.csv").iloc[-1]
    assert (row["status"], row["task"], row["metric_name"]) == ("ok", "detection", "map50")
    assert set(record["metrics"]) == {"map50", "map50_95", "map75"} and 0.0 <= row["metric"] <= 100.0


def test_detection_neck_dim_and_tower_depth(monkeypatch):
    neck: list = []
    units: list = []

    def count_units(model):
        from step.tasks.heads.fcos import SharedTowerUnit

        for m in model.head.modules():
            if isinstance(m, SharedTowerUnit):
                m.register_forward_hook(lambda mod, args, out: units.append(out.shape[-3]))

    _conv_outputs(monkeypatch, "neck", neck)
    on_model(monkeypatch, count_units)
    tiny_run(*DET, "task.neck_dim=12", "task.tower_depth=3", "energy.enabled=false", "trainer.eval_batch_size=3")
    assert {c for _, c in neck} == {12} and set(units) == {12}
    forwards = 2  # one training batch, one test batch
    levels = len(neck) // (2 * forwards)  # a lateral and an output conv per level
    assert len(units) == forwards * 2 * 3 * levels  # 2 towers x depth 3 x levels


def _first_loss(monkeypatch, *overrides) -> float:
    from step.tasks.detection import Detection

    losses: list = []
    real = Detection.loss
    monkeypatch.setattr(Detection, "loss", lambda self, out, y: (losses.append(float((loss := real(self, out, y)).detach())), loss)[1])
    tiny_run(*DET, "energy.enabled=false", *overrides)
    monkeypatch.setattr(Detection, "loss", real)
    return losses[0]  # the first training batch: same weights and data in every run


def test_detection_loss_knobs_change_the_training_loss(monkeypatch):
    base = _first_loss(monkeypatch)
    assert _first_loss(monkeypatch) == base  # the runs are deterministic
    # focal loss: the factor (1 - p_t)^gamma <= 1 down-weights every term; gamma 0 removes it
    assert _first_loss(monkeypatch, "task.focal_gamma=0.0") > base
    assert _first_loss(monkeypatch, "task.focal_alpha=0.75") != base
    # centre sampling: a location is positive within center_radius x stride of a box centre;
    # 0.5 x stride 4 = 2 px keeps fewer positives than the default 1.5 x 4 = 6 px
    assert _first_loss(monkeypatch, "task.center_radius=0.5") != base


def _detections(monkeypatch, *overrides) -> list[dict]:
    from step.tasks.detection import Detection

    dets: list = []
    real = Detection.decode
    monkeypatch.setattr(Detection, "decode", lambda self, out: (dets.extend(d := real(self, out)), d)[1])
    tiny_run(*DET, "energy.enabled=false", *overrides)
    monkeypatch.setattr(Detection, "decode", real)
    return dets[-3:]  # the final evaluation's 3 test scenes (the 4 training images come first)


def _max_same_label_iou(d: dict) -> float:
    iou = box_iou(d["boxes"], d["boxes"])
    same = d["labels"][:, None] == d["labels"][None, :]
    iou[~same | torch.eye(len(iou), dtype=torch.bool)] = 0
    return float(iou.max()) if len(iou) else 0.0


def test_detection_decoding_knobs_bound_the_detections(monkeypatch):
    """Each decoding knob alone bounds the final evaluation's detections where the loose setting
    does not: scores above ``score_thresh``, no same-class pair over ``nms_iou``, at most ``max_dets``."""
    on_model(monkeypatch, cumulative_bn)  # neurons fire, so scores and boxes vary over locations
    loose = ("task.score_thresh=0.0", "task.nms_iou=0.9", "task.max_dets=100")
    base = _detections(monkeypatch, *loose)
    assert len(base) == 3 and all(len(d["scores"]) == 100 for d in base)
    cut = min(float(d["scores"].median()) for d in base)  # half of each image's candidates stay above
    thresholded = _detections(monkeypatch, *loose, f"task.score_thresh={cut}")
    assert all(0 < len(d["scores"]) < 100 and bool((d["scores"] > cut).all()) for d in thresholded)
    assert max(_max_same_label_iou(d) for d in base) > 0.2
    suppressed = _detections(monkeypatch, *loose, "task.nms_iou=0.2")
    assert all(len(d["scores"]) > 7 and _max_same_label_iou(d) <= 0.2 for d in suppressed)
    capped = _detections(monkeypatch, *loose, "task.max_dets=7")
    assert all(len(d["scores"]) == 7 for d in capped)
