"""Issue 19, logs under a scheduler: with no terminal (a pipe, nohup, SLURM) ``step-train`` prints one
flushed line per epoch as the epoch ends, and the run's ``cli.log`` holds the same lines."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

STEP_TRAIN = str(Path(sys.executable).with_name("step-train"))
TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.max_batches=2", "trainer.batch_size=16",
        "trainer.eval_batch_size=32", "dataset.test_fraction=0.05", "energy.enabled=false", "trainer.epochs=3"]
LINE = re.compile(r"epoch (\d+)/3 \| train_loss (\d+\.\d+) \| (test|train)_top1 (\d+\.\d+) \| lr (\S+) \| "
                  r"(\d+\.\d) s \| ETA (\d+):(\d\d):(\d\d)$")


def test_a_run_without_a_terminal_prints_one_flushed_line_per_epoch_and_logs_it(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "STEP_OUT": str(tmp_path / "out"),
           "STEP_RESULTS": str(tmp_path / "results"), "STEP_DATA": str(tmp_path / "data")}
    # the progress bar is on (the default): with stdout and stderr pipes tqdm draws none, so the lines print
    proc = subprocess.Popen([STEP_TRAIN, *TINY], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines, running_when_read = [], []
    assert proc.stdout is not None
    for raw in proc.stdout:
        if " - epoch " in raw:
            lines.append(raw.rstrip("\n"))
            running_when_read.append(proc.poll() is None)
    assert proc.wait(timeout=600) == 0, proc.stderr.read() if proc.stderr else ""
    assert len(lines) == 3
    assert running_when_read[0], "the first epoch's line came only when the run ended (not flushed)"
    found = [LINE.search(line) for line in lines]
    assert all(found), lines
    assert [int(m.group(1)) for m in found] == [1, 2, 3]
    assert [m.group(3) for m in found] == ["test", "test", "train"]  # the last epoch's test is the final one
    assert [int(m.group(7)) * 3600 + int(m.group(8)) * 60 + int(m.group(9)) for m in found][-1] == 0

    (run_dir,) = (tmp_path / "out" / "runs").glob("*/*")
    with open(run_dir / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    for m, row in zip(found, rows):  # the line says what metrics.csv holds for that epoch
        assert float(m.group(2)) == round(float(row["train_loss"]), 4)
        assert float(m.group(4)) == round(float(row[f"{m.group(3)}_top1"]), 4)
        assert m.group(5) == f"{float(row['lr']):.3g}"
    logged = [line for line in (run_dir / "cli.log").read_text().splitlines() if " - epoch " in line]
    assert logged == lines  # the same lines, in the same format, in the run's cli.log


def test_the_line_names_a_running_estimate_of_the_time_left():
    from step.engine.epoch_log import format_epoch

    row = {"epoch": 1, "lr": 1e-3, "train_loss": 0.5, "train_top1": 80.0, "test_loss": 0.6, "test_top1": 75.5}
    line = format_epoch(row, epochs=10, metric_name="top1", seconds=12.04, eta_s=8 * 12.0)
    assert line == "epoch 2/10 | train_loss 0.5000 | test_top1 75.5000 | lr 0.001 | 12.0 s | ETA 0:01:36"
