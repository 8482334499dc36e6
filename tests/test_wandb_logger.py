"""Issue 19, wandb beside the CSV: an offline sweep through ``step-train -m`` keeps ``metrics.csv``,
honours WANDB_DIR / WANDB_PROJECT, logs the final test metrics and the energy columns to the history and
the summary, groups the jobs by their sweep and tags each with its swept values, and warns of nothing
deprecated. The offline run files are read back (tests/wandb_offline.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from wandb_offline import read_run

STEP_TRAIN = str(Path(sys.executable).with_name("step-train"))
TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.max_batches=2", "trainer.batch_size=16",
        "trainer.eval_batch_size=32", "dataset.test_fraction=0.05", "trainer.epochs=2", "trainer.progress=false"]


def test_an_offline_wandb_sweep_keeps_the_csv_and_is_grouped_and_tagged(tmp_path):
    pytest.importorskip("wandb")
    wandb_dir = tmp_path / "wandb-home"
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SILENT"}  # let wandb print its warnings
    env.update(WANDB_MODE="offline", WANDB_DIR=str(wandb_dir), WANDB_PROJECT="from-env",
               STEP_OUT=str(tmp_path / "out"), STEP_RESULTS=str(tmp_path / "results"), STEP_DATA=str(tmp_path / "data"),
               PYTHONWARNINGS="always::DeprecationWarning")
    proc = subprocess.run([STEP_TRAIN, "-m", *TINY, "logger=[csv,wandb]", "neuron=lif,if", "name=wb"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = (proc.stdout + proc.stderr).lower().splitlines()  # wandb's own notices and Python warnings from it
    assert not [line for line in said if "wandb" in line and "deprecat" in line]

    (sweep_dir,) = (tmp_path / "out" / "multirun").glob("*/*_wb")
    records = {json.loads(p.read_text())["components"]["neuron"]: json.loads(p.read_text())
               for p in sweep_dir.glob("*/record.json")}
    assert set(records) == {"lif", "if"}
    files = sorted(wandb_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 2 and not list(sweep_dir.rglob("*.wandb"))  # WANDB_DIR, not the run folders
    for path in files:
        run = read_run(path)
        record = next(r for r in records.values() if r["run_id"] == run["name"])
        run_dir = Path(record["record_path"]).parent
        assert (run_dir / "metrics.csv").read_text().count("\n") == 1 + 2  # header + one row per epoch
        assert run["project"] == "from-env"
        assert run["group"] == sweep_dir.name
        assert run["tags"] == [f"neuron={record['components']['neuron']}"]  # the swept key only
        assert [row["epoch"] for row in run["history"] if "epoch" in row] == [0, 1]
        final = run["history"][-1]  # the final test and energy: the last history row
        top1 = record["metrics"]["top1"]
        assert final["test_top1"] == pytest.approx(top1) and run["summary"]["test_top1"] == pytest.approx(top1)
        energy = record["leaderboard_row"]["energy_mj"]
        assert final["energy_mj"] == pytest.approx(energy) and run["summary"]["energy_mj"] == pytest.approx(energy)
        assert final["energy_per_layer/nrows"] == len(record["energy"]["per_layer"])
        assert run["summary"]["status"] == "ok" and run["summary"]["run_id"] == record["run_id"]
        assert run["config"]["neuron"]["name"] == record["components"]["neuron"]


def test_config_values_win_over_the_environment_which_wins_over_the_defaults(monkeypatch, tmp_path):
    from step.engine.wandb_logger import wandb_settings

    for var in ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_DIR", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    plain = OmegaConf.create({"project": None, "entity": None, "dir": None, "mode": "offline", "group": None, "tags": []})
    got = wandb_settings(plain, tmp_path)
    assert (got["project"], got["entity"], got["dir"], got["mode"], got["group"], got["tags"]) == \
        ("step", None, str(tmp_path), "offline", None, None)
    monkeypatch.setenv("WANDB_PROJECT", "p-env")
    monkeypatch.setenv("WANDB_ENTITY", "e-env")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "env"))
    got = wandb_settings(plain, tmp_path)
    assert (got["project"], got["entity"], got["dir"]) == ("p-env", "e-env", str(tmp_path / "env"))
    mine = OmegaConf.merge(plain, {"project": "p-cfg", "entity": "e-cfg", "dir": "/x", "group": "g", "tags": ["a"]})
    got = wandb_settings(mine, tmp_path, ["paper"])
    assert (got["project"], got["entity"], got["dir"], got["group"], got["tags"]) == ("p-cfg", "e-cfg", "/x", "g", ["a", "paper"])
