"""End-to-end runs of the one runner at tiny size: records, rows, determinism, failures."""

from __future__ import annotations

import json
import multiprocessing as mp
import os

import pandas as pd
import pytest
import torch

from step.config import compose
from step.engine import run
from step.errors import DivergedError
from step.results.leaderboard import append_row
from step.results.schema import COLUMNS
from step.results.record import record_file

TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.epochs=1",
        "trainer.max_batches=3", "trainer.batch_size=16", "trainer.progress=false"]


def tiny_run(*extra):
    return run(compose([*TINY, *extra]))


def test_one_epoch_run_writes_a_record_and_exactly_one_row(isolated_roots):
    record = tiny_run("name=e2e")
    board = isolated_roots / "results" / "leaderboard.csv"
    df = pd.read_csv(board)
    assert len(df) == 1
    row = df.iloc[0]
    assert list(df.columns) == COLUMNS
    assert row["status"] == "ok" and row["experiment"] == "e2e" and row["source"] == "run"
    assert (row["model"], row["neuron"], row["surrogate"], row["encoder"], row["backend"]) == ("spikformer", "lif", "atan", "direct", "native")
    assert row["T"] == 2 and row["seed"] == 0 and row["metric_name"] == "top1"
    saved = json.loads(record_file(row["record_path"]).read_text())
    assert saved["metrics"]["top1"] == pytest.approx(row["metric"])
    assert saved["params"] == row["params"] == record["params"] > 0
    assert saved["config"]["model"]["dim"] == 16 and saved["seed"] == 0
    assert saved["git_commit"] and saved["versions"]["torch"].startswith(torch.__version__.split("+")[0])
    assert 0.0 <= saved["metrics"]["top1"] <= 100.0
    assert os.path.exists(saved["checkpoint"])


def test_same_seed_gives_identical_metrics():
    a = tiny_run("seed=3", "trainer.max_batches=4")
    b = tiny_run("seed=3", "trainer.max_batches=4")
    assert a["metrics"] == b["metrics"]
    assert a["history"] == b["history"]
    assert a["test_loss"] == b["test_loss"]


def test_different_seed_changes_the_run():
    a = tiny_run("seed=1")
    b = tiny_run("seed=2")
    assert a["history"][0]["train_loss"] != b["history"][0]["train_loss"]


def test_nan_loss_stops_with_status_diverged(isolated_roots, monkeypatch):
    from step.tasks.criterion import CrossEntropy  # the training criterion (step.engine.recipe)

    monkeypatch.setattr(CrossEntropy, "forward", lambda self, out, y: (out.sum() * float("nan")))
    with pytest.raises(DivergedError, match="epoch 0, step 0"):
        tiny_run()
    df = pd.read_csv(isolated_roots / "results" / "leaderboard.csv")
    assert list(df["status"]) == ["diverged"]
    assert "epoch 0" in df["error"][0]


def _append_many(path: str, worker: int, n: int) -> None:
    for i in range(n):
        append_row(path, {"run_id": f"w{worker}-{i}", "status": "ok", "metric": i, "command": "x, \"quoted\"\nline"})


def test_parallel_appends_keep_every_row_intact(tmp_path):
    path = str(tmp_path / "board.csv")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, w, 50)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    df = pd.read_csv(path)
    assert len(df) == 100
    assert sorted(df["run_id"]) == sorted(f"w{w}-{i}" for w in range(2) for i in range(50))
    assert (df["command"] == "x, \"quoted\"\nline").all()


def test_row_with_unknown_column_is_refused(tmp_path):
    with pytest.raises(ValueError, match="outside the schema"):
        append_row(tmp_path / "b.csv", {"accuracy": 1})


def test_model_label_names_settings_that_differ_from_the_registered_variant():
    from step.engine.recording import model_label

    assert model_label(compose(["model=spikformer-4-384"])) == "spikformer-4-384"
    assert model_label(compose(["model=spikformer-4-384", "model.depth=1", "model.dim=64"])) == "spikformer-4-384[depth=1,dim=64]"
    assert model_label(compose(["model=spikformer", "model.depth=2"])) == "spikformer"  # the generic entry fixes nothing
