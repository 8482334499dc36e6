"""Bad input fails before training with one clear message; divergence keeps the last good checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from step.config import compose
from step.engine import run
from step.errors import ConfigError, DivergedError, UnknownNameError
from step.results.record import record_file

TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.max_batches=2",
        "trainer.batch_size=16", "trainer.eval_batch_size=32", "trainer.progress=false",
        "dataset.test_fraction=0.05", "energy.enabled=false", "logger=none", "trainer.epochs=1"]


def _nothing_written(root: Path) -> bool:
    return not (root / "results" / "leaderboard.csv").exists() and not (root / "outputs" / "runs").exists()


@pytest.mark.parametrize(("override", "message"), [
    ("T=0", r"T must be >= 1.*T=0"),
    ("optim.lr=-0.001", r"optim.lr must be > 0, got -0.001"),
    ("trainer.batch_size=0", r"trainer.batch_size must be >= 1, got 0"),
    ("trainer.max_batches=0", r"trainer.max_batches must be >= 1"),
    ("trainer.precision=fp8", r"trainer.precision must be 32, bf16 or fp16"),
    ("neuron.name=lfi", r"lfi"),
])
def test_out_of_range_or_unknown_values_fail_before_anything_is_written(isolated_roots, override, message):
    with pytest.raises(ConfigError, match=message):
        run(compose([*TINY, override]))
    assert _nothing_written(isolated_roots)


def test_unknown_component_names_the_valid_choices(isolated_roots):
    with pytest.raises(UnknownNameError, match=r"'lfi'.*lif"):
        run(compose([*TINY, "neuron.name=lfi"]))


def test_head_with_another_class_count_than_the_dataset_is_refused(isolated_roots):
    # digits has 10 classes; a model config that fixes 3 would silently get a 10-way head otherwise
    with pytest.raises(ConfigError, match=r"model.num_classes=3 but dataset 'digits' has 10 classes"):
        run(compose([*TINY, "+model.num_classes=3"]))
    assert _nothing_written(isolated_roots)


def test_unwritable_output_root_fails_before_training(isolated_roots, monkeypatch):
    blocker = isolated_roots / "afile"
    blocker.write_text("a file, so nothing can be created below it (even by root)")
    monkeypatch.setenv("STEP_OUT", str(blocker / "sub"))
    with pytest.raises(ConfigError, match=rf"paths.output_root {blocker / 'sub'} is not a writable folder"):
        run(compose(TINY))
    assert not (isolated_roots / "results" / "leaderboard.csv").exists()


def test_unwritable_leaderboard_folder_fails_before_training(isolated_roots, monkeypatch):
    blocker = isolated_roots / "afile"
    blocker.write_text("x")
    monkeypatch.setenv("STEP_RESULTS", str(blocker / "results"))
    with pytest.raises(ConfigError, match=r"the leaderboard folder .*afile/results is not a writable folder"):
        run(compose(TINY))
    assert not (isolated_roots / "outputs" / "runs").exists()


def test_fp16_without_cuda_is_refused(isolated_roots):
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        run(compose([*TINY, "trainer.precision=fp16", "trainer.device=cpu"]))
    assert _nothing_written(isolated_roots)


def test_nan_in_a_later_epoch_keeps_the_last_good_checkpoint(isolated_roots, monkeypatch):
    from step.tasks.criterion import CrossEntropy  # the training criterion (step.engine.recipe)

    real_loss = CrossEntropy.forward
    calls = {"n": 0}

    def loss(self, out, y):  # finite for epoch 0 (2 batches), NaN at the first step of epoch 1
        calls["n"] += 1
        value = real_loss(self, out, y)
        return value * float("nan") if calls["n"] > 2 and torch.is_grad_enabled() else value

    monkeypatch.setattr(CrossEntropy, "forward", loss)
    with pytest.raises(DivergedError, match="epoch 1, step 0"):
        run(compose([*TINY, "trainer.epochs=3", "trainer.ckpt_every=1", "trainer.eval_every=5"]))
    board = pd.read_csv(isolated_roots / "results" / "leaderboard.csv")
    assert list(board["status"]) == ["diverged"] and "epoch 1, step 0" in board["error"][0]
    record = json.loads(record_file(board["record_path"][0]).read_text())
    assert record["epochs_done"] == 1
    state = torch.load(record["state"], weights_only=True)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    sidecar = json.loads(Path(record["state"]).with_name("last.json").read_text())
    assert sidecar["status"] == "diverged"  # resume=auto will not re-run a diverged run
