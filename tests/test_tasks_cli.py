"""``step-train task=segmentation|detection dataset=digits-scenes`` end to end through the real CLI (tiny)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from step.results.record import record_file

TINY = ["dataset=digits-scenes", "dataset.n_train=8", "dataset.n_test=4", "dataset.img_size=32", "dataset.min_scale=8",
        "dataset.max_scale=12", "task.neck_dim=8", "T=1", "trainer.epochs=1", "trainer.max_batches=2",
        "trainer.batch_size=4", "trainer.progress=false"]
SPIKFORMER = ["model=spikformer", "model.depth=1", "model.dim=16", "model.heads=2"]


def _step_train(args, roots: Path) -> dict:
    env = {**os.environ, "STEP_OUT": str(roots / "out"), "STEP_RESULTS": str(roots / "res"), "WANDB_MODE": "disabled"}
    exe = Path(sys.executable).parent / "step-train"
    proc = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(roots / "res" / "leaderboard.csv")
    assert len(df) == 1 and df["status"][0] == "ok"
    return {"row": df.iloc[0], "record": json.loads(record_file(df["record_path"][0], roots / "out").read_text())}


@pytest.mark.slow
def test_cli_segmentation_on_hierarchical_backbone(isolated_roots):
    out = _step_train(["task=segmentation", "model=meta-spikeformer-tiny", "task.head_dim=8", *TINY], isolated_roots)
    row, record = out["row"], out["record"]
    assert row["task"] == "segmentation" and row["metric_name"] == "miou"
    assert row["metric"] == pytest.approx(record["metrics"]["miou"]) and 0.0 <= row["metric"] <= 100.0
    assert 0.0 <= record["metrics"]["pixel_acc"] <= 100.0
    parts = record["energy"]["by_part_pj"]
    assert parts["backbone"] > 0 and parts["head"] > 0
    assert parts["total"] == pytest.approx(sum(r["energy_pj"] for r in record["energy"]["per_layer"]))


@pytest.mark.slow
def test_cli_detection_on_spikformer(isolated_roots):
    out = _step_train(["task=detection", "task.tower_depth=1", *SPIKFORMER, *TINY, "energy.enabled=false"], isolated_roots)
    row, record = out["row"], out["record"]
    assert row["task"] == "detection" and row["metric_name"] == "map50"
    assert set(record["metrics"]) == {"map50", "map50_95", "map75"}
    assert 0.0 <= record["metrics"]["map50"] <= 100.0
