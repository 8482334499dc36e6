"""Every knob of the embedded datasets, shown by what the model of a tiny real run receives.

A forward pre-hook keeps the model's inputs; the final evaluation reads the test split in order,
so two runs can be compared sample by sample. Each variant must change what the model sees in the
way its knob says (or, for a knob with no simple direction, change it at all), so a builder that
drops a keyword fails. Knobs left to issue 20 (being rewired there): ``mixup``, ``cutmix``,
``label_smoothing`` and the image-recipe transforms of the real datasets (``augment``,
``randaugment``, ``reprob``, ``hflip``; normalisation). The real datasets' loader options
(``download``, ``split_by``, ``cache``, ...) are tested on files written in their formats
(tests/test_data_*.py); there is no real data on this machine to run them. ``mnist1d`` has no knobs.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from knob_runs import builders, on_model, record_inputs, tiny_run

QUICK = ("trainer.max_batches=1", "energy.enabled=false", "trainer.eval_batch_size=1000")


_RUNS: dict = {}  # overrides -> what _seen returned (runs are deterministic; baselines repeat)


def _seen(monkeypatch, *overrides):  # noqa: ARG001 - the test's monkeypatch keeps call sites uniform
    """(record, first training input, final-evaluation inputs [T, n_test, ...], the data bundle)."""
    if overrides not in _RUNS:
        _RUNS[overrides] = _run_and_watch(*overrides)
    return _RUNS[overrides]


def _run_and_watch(*overrides):
    seen: list = []
    bundles: list = []
    real = builders.build_data
    with pytest.MonkeyPatch.context() as mp:  # patches of this run only (the roots stay isolated)
        mp.setattr(builders, "build_data", lambda cfg: (bundles.append(b := real(cfg)), b)[1])
        on_model(mp, lambda m: record_inputs(m, seen))
        record = tiny_run(*QUICK, *overrides)
    train = [x for training, x in seen if training]
    test = torch.cat([x for training, x in seen if not training], dim=1)
    return record, train[0], test, bundles[-1]


# ---- digits ----------------------------------------------------------------------------------
def test_digits_img_size_test_fraction_and_split_seed(monkeypatch):
    base, train, test, _ = _seen(monkeypatch)
    assert train.shape[-2:] == (16, 16) and test.shape[1] == base["data"]["n_test"] == 90  # ceil(0.05 x 1797)
    _, train, _, _ = _seen(monkeypatch, "dataset.img_size=12")
    assert train.shape[-2:] == (12, 12)
    record, _, more, _ = _seen(monkeypatch, "dataset.test_fraction=0.1")
    assert record["data"]["n_test"] == more.shape[1] == 180 and record["data"]["n_train"] == 1797 - 180
    _, _, other, _ = _seen(monkeypatch, "dataset.split_seed=1")
    assert other.shape == test.shape and not torch.equal(other, test)


def test_split_seed_fixes_the_test_set_apart_from_seed(monkeypatch):
    """``seed`` changes the training (initial weights, order), never which images are tested."""
    a, _, test_a, _ = _seen(monkeypatch, "seed=0")
    b, _, test_b, _ = _seen(monkeypatch, "seed=1")
    assert torch.equal(test_a, test_b)
    assert a["history"][0]["train_loss"] != b["history"][0]["train_loss"]  # and yet the runs differ


# ---- digits-dvs: event frames ---------------------------------------------------------------
DVS = ("dataset=digits-dvs", "T=4", "trainer.batch_size=8", "dataset.img_size=12", "dataset.saccade_px=2")


def _events(x: torch.Tensor) -> float:
    return float(x.sum())


def test_event_batches_arrive_time_major_with_batch_not_equal_to_T(monkeypatch):
    _, train, test, bundle = _seen(monkeypatch, *DVS)
    assert train.shape == (4, 8, 2, 12, 12)  # [T, B, polarity, H, W], B = 8 != T = 4
    frames = torch.stack([bundle.test[i][0] for i in range(len(bundle.test))])  # [N, T, 2, H, W] as stored
    assert torch.equal(test, frames.transpose(0, 1))  # model input [t, b] == sample b's bin t


def test_event_timesteps_follow_T(monkeypatch):
    _, train, _, bundle = _seen(monkeypatch, *DVS, "T=3")
    assert bundle.timesteps == 3 and train.shape[0] == 3


@pytest.mark.parametrize("knob,value,direction", [
    ("contrast_threshold", 0.5, "fewer"),  # a larger log-intensity step per event
    ("noise_rate", 0.0, "fewer"),  # no background events
    ("threshold_sigma", 0.1, "other"),
    ("log_eps", 0.5, "other"),
    ("steps_per_saccade", 6, "other"),
    ("seed", 1, "other"),  # thresholds mismatch and noise drawn anew
    ("saccade_px", 3, "other"),  # the digit is drawn at img_size - saccade_px
])
def test_event_generator_knobs_change_the_frames(monkeypatch, knob, value, direction):
    _, _, base, _ = _seen(monkeypatch, *DVS)
    _, _, other, _ = _seen(monkeypatch, *DVS, f"dataset.{knob}={value}")
    assert other.shape == base.shape and not torch.equal(other, base)
    if direction == "fewer":
        assert _events(other) < _events(base)


def test_event_split_knobs(monkeypatch):
    base, _, test, _ = _seen(monkeypatch, *DVS)
    record, _, more, _ = _seen(monkeypatch, *DVS, "dataset.test_fraction=0.1")
    assert base["data"]["n_test"] == test.shape[1] == 360 and record["data"]["n_test"] == more.shape[1] == 180
    _, _, other, _ = _seen(monkeypatch, *DVS, "dataset.split_seed=1")
    assert other.shape == test.shape and not torch.equal(other, test)


# ---- digits-seq: images read as sequences ---------------------------------------------------
SEQ = ("dataset=digits-seq", "dataset.img_size=8", "dataset.test_fraction=0.05")


def test_sequence_mode_img_size_and_permutation(monkeypatch):
    _, _, pixel, bundle = _seen(monkeypatch, *SEQ)
    assert pixel.shape[2:] == (64, 1)  # [T, B, L = 8 x 8 pixels, 1 channel]
    image = bundle.test.images[0][0]  # the first test image, [1, 8, 8]
    assert torch.equal(pixel[0, 0, :, 0], image.flatten())  # pixel by pixel, row-major
    _, _, row, _ = _seen(monkeypatch, *SEQ, "dataset.mode=row")
    assert row.shape[2:] == (8, 8) and torch.equal(row[0, 0], image[0])  # one row per step
    _, _, bigger, _ = _seen(monkeypatch, "dataset=digits-seq", "dataset.img_size=12", "dataset.test_fraction=0.05")
    assert bigger.shape[2:] == (144, 1)
    _, _, permuted, _ = _seen(monkeypatch, *SEQ, "dataset.permute=true")
    _, _, permuted_1, _ = _seen(monkeypatch, *SEQ, "dataset.permute=true", "dataset.permutation_seed=1")
    for p in (permuted, permuted_1):  # the same pixels of every image, in another order
        assert torch.equal(p.sort(dim=2).values, pixel.sort(dim=2).values) and not torch.equal(p, pixel)
    assert not torch.equal(permuted, permuted_1)
    # one fixed permutation for every image: find it on the first image, check it on all
    first = pixel[0, :, :, 0]
    order = [int((first[0] == v).nonzero()[0]) for v in permuted[0, 0, :, 0]] if first[0].unique().numel() == 64 else None
    if order is not None:
        assert torch.equal(permuted[0, :, :, 0], first[:, order])


def test_sequence_split_knobs(monkeypatch):
    _, _, test, _ = _seen(monkeypatch, *SEQ)
    record, _, more, _ = _seen(monkeypatch, *SEQ, "dataset.test_fraction=0.1")
    assert test.shape[1] == 90 and more.shape[1] == record["data"]["n_test"] == 180
    _, _, other, _ = _seen(monkeypatch, *SEQ, "dataset.split_seed=1")
    assert not torch.equal(other, test)


# ---- digits-scenes: canvases for the dense tasks ---------------------------------------------
SCENES = ("dataset=digits-scenes", "task=detection", "task.tower_depth=1", "task.neck_dim=8", "T=1",
          "trainer.batch_size=4", "trainer.max_batches=2", "energy.enabled=false", "dataset.img_size=32",
          "dataset.n_train=8", "dataset.n_test=5", "dataset.min_digits=2", "dataset.max_digits=2",
          "dataset.min_scale=10", "dataset.max_scale=10")


def _scenes(monkeypatch, *overrides):
    from step.tasks.detection import Detection

    targets: list = []
    real = Detection.loss
    monkeypatch.setattr(Detection, "loss", lambda self, out, y: (targets.extend(y), real(self, out, y))[1])
    seen: list = []
    on_model(monkeypatch, lambda m: record_inputs(m, seen))
    record = tiny_run(*SCENES, *overrides)
    return record, [x for training, x in seen if training], [x for training, x in seen if not training], targets


def test_scene_knobs_shape_the_canvases_and_their_boxes(monkeypatch):
    record, train, test, targets = _scenes(monkeypatch)
    assert train[0].shape == (1, 4, 1, 32, 32)  # img_size
    assert (record["data"]["n_train"], record["data"]["n_test"]) == (8, 5)
    assert sum(x.shape[1] for x in test) == 5  # the final test reads n_test scenes
    train_targets = targets[:8]  # the loss sees training targets first (2 batches of 4)
    assert all(len(t["boxes"]) == 2 for t in train_targets)  # min_digits = max_digits = 2
    sides = torch.cat([torch.cat([t["boxes"][:, 2] - t["boxes"][:, 0], t["boxes"][:, 3] - t["boxes"][:, 1]])
                       for t in train_targets])
    assert sides.max() <= 10 and sides.min() >= 3  # each digit drawn at 10 x 10 (its box is the ink inside)
    _, wider, _, more = _scenes(monkeypatch, "dataset.max_digits=3", "dataset.min_scale=11", "dataset.max_scale=12",
                                "dataset.seed=1")
    counts = [len(t["boxes"]) for t in more[:8]]
    assert max(counts) == 3  # (a digit with no free place left is skipped, so a scene may hold fewer)
    sides = torch.cat([t["boxes"][:, 2] - t["boxes"][:, 0] for t in more[:8]] +
                      [t["boxes"][:, 3] - t["boxes"][:, 1] for t in more[:8]])
    assert sides.max() > 10 and sides.max() <= 12
    assert not torch.equal(wider[0], train[0])


def test_scene_seed_changes_the_scenes(monkeypatch):
    _, a, _, _ = _scenes(monkeypatch)
    _, b, _, _ = _scenes(monkeypatch, "dataset.seed=7")
    _, c, _, _ = _scenes(monkeypatch)
    assert torch.equal(a[0], c[0]) and not torch.equal(a[0], b[0])

