"""logger=wandb logs the config, one row per epoch, the energy table and the final record."""

from __future__ import annotations

import sys
import types

import pytest

from step.config import compose
from step.engine import run

TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.epochs=2",
        "trainer.max_batches=2", "trainer.batch_size=16", "trainer.progress=false", "logger=wandb"]


class FakeRun:
    def __init__(self, **kwargs):
        self.init_kwargs, self.logged, self.summary, self.finished = kwargs, [], {}, False

    def log(self, row):
        self.logged.append(row)

    def finish(self):
        self.finished = True


def test_wandb_logger_sends_config_curves_energy_table_and_record(monkeypatch):
    runs = []
    fake = types.SimpleNamespace(
        init=lambda **kw: runs.append(FakeRun(**kw)) or runs[-1],
        Table=lambda columns, data: ("table", tuple(columns), len(data)),
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    record = run(compose([*TINY, "logger.project=step-test"]))
    (wb,) = runs
    assert wb.init_kwargs["project"] == "step-test"
    assert wb.init_kwargs["config"]["model"]["dim"] == 16  # the resolved config
    epochs = [row for row in wb.logged if "epoch" in row]
    assert [row["epoch"] for row in epochs] == [0, 1] and all("train_loss" in row for row in epochs)
    tables = [row["energy_per_layer"] for row in wb.logged if "energy_per_layer" in row]
    assert tables and tables[0][2] == len(record["energy"]["per_layer"])
    assert wb.summary["status"] == "ok" and wb.summary["run_id"] == record["run_id"]
    assert wb.summary["test_top1"] == pytest.approx(record["metrics"]["top1"])
    assert wb.summary["energy_mj"] == pytest.approx(record["leaderboard_row"]["energy_mj"])
    assert wb.finished


def test_wandb_offline_run_writes_its_files_locally(monkeypatch, isolated_roots):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    record = run(compose([*TINY, "trainer.epochs=1"]))
    from pathlib import Path

    run_dir = Path(record["record_path"]).parent
    assert record["status"] == "ok"
    assert list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
