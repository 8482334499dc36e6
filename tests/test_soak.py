"""Issue 15, the soak: N step-train processes run tiny runs side by side on one board, a third of them
are killed with SIGKILL at random moments, then ``step-board --rebuild``. The board reads with
pandas, has no partial line, every record has exactly one row, and no temporary file is left. The
nine-process version also resumes the killed runs (``trainer.resume=auto``) and checks that every
seed ends with exactly one ``ok`` row.

Both are slow (one tiny step-train process costs about 12 s of CPU here, most of it importing
torch and scikit-learn). The fast twin runs three light processes that write what a run writes
at its end (an ``ok`` record, then its row) in a loop, one killed at a random moment."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from step.results.cli import main as board_main
from step.results.leaderboard import scan

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.max_batches=2", "trainer.batch_size=16",
        "trainer.eval_batch_size=32", "trainer.progress=false", "dataset.test_fraction=0.05", "energy.enabled=false",
        "logger=none", "trainer.ckpt_every=1", "name=soak"]


def start(seed: int, epochs: int, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "step.train", *TINY, f"trainer.epochs={epochs}", f"seed={seed}", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def soak(tmp_path: Path, n: int, epochs: int, window: float, rng: random.Random) -> tuple[dict, list[int]]:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "STEP_OUT": str(tmp_path / "out"),
           "STEP_RESULTS": str(tmp_path / "results"), "STEP_DATA": str(tmp_path / "data")}
    procs = {seed: start(seed, epochs, env) for seed in range(n)}
    victims = rng.sample(range(n), max(1, n // 3))
    kill_at = {seed: time.monotonic() + rng.uniform(0.5, window) for seed in victims}
    deadline = time.monotonic() + 900  # a failsafe against a hang, not a timing assertion
    while any(p.poll() is None for p in procs.values()):
        assert time.monotonic() < deadline
        for seed, when in kill_at.items():
            if procs[seed].poll() is None and time.monotonic() >= when:
                procs[seed].send_signal(signal.SIGKILL)
        time.sleep(0.02)
    for seed, proc in procs.items():
        err = proc.stderr.read()
        proc.stderr.close()
        if seed not in victims:
            assert proc.returncode == 0, err[-2000:]
    return env, victims


def check_board(tmp_path: Path) -> pd.DataFrame:
    board = tmp_path / "results" / "leaderboard.csv"
    assert board_main(["--rebuild", "--csv", str(board), "--out-root", str(tmp_path / "out")]) == 0
    assert board.read_bytes().endswith(b"\n") and not scan(board).partial  # no partial row
    df = pd.read_csv(board)
    assert df["run_id"].is_unique
    records = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("record.json")]
    ids = [r["run_id"] for r in records] + [a["run_id"] for r in records for a in r.get("previous_attempts", [])]
    assert sorted(df["run_id"]) == sorted(ids)  # every record (and earlier attempt) has exactly one row
    assert not [p for p in (tmp_path / "out").rglob("*") if ".tmp" in p.name]  # rebuild cleared what kills left
    return df


WRITER = """
import sys
from pathlib import Path
from step.results.leaderboard import append_row
from step.results.record import write_record
out, board, w, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    folder = f"runs/w{w}-{i}"
    row = {"run_id": f"w{w}-{i}", "status": "ok", "seed": w, "metric": i, "command": 'step-train x=1, "q"\\nline',
           "record_path": folder + "/record.json"}
    write_record(out / folder / "record.json", {"run_id": row["run_id"], "status": "ok", "leaderboard": board,
                                                "leaderboard_row": row})
    append_row(board, row)
"""


def test_soak_fast_twin_three_writers_one_killed(tmp_path):
    """Three processes commit runs (record, then row) to one board; one is SIGKILLed at a random moment."""
    out, board = tmp_path / "out", tmp_path / "results" / "leaderboard.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(board), str(w), "60"], env=env,
                              stderr=subprocess.PIPE, text=True) for w in range(3)]
    rng = random.Random()
    victim = rng.randrange(3)
    while not board.exists() or procs[victim].poll() is not None:  # kill it while it writes
        if procs[victim].poll() is not None:
            break
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 1.0))
    procs[victim].send_signal(signal.SIGKILL)
    for w, proc in enumerate(procs):
        _, err = proc.communicate(timeout=300)
        assert w == victim or proc.returncode == 0, err[-2000:]
    df = check_board(tmp_path)
    for w in set(range(3)) - {victim}:
        assert sorted(df.loc[df["seed"] == w, "run_id"]) == sorted(f"w{w}-{i}" for i in range(60))
    assert (df["command"] == 'step-train x=1, "q"\nline').all()


@pytest.mark.slow
def test_soak_three_processes_one_killed(tmp_path):
    """The soak at its smallest: 3 step-train processes, one SIGKILLed at a random moment."""
    _, victims = soak(tmp_path, n=3, epochs=2, window=12.0, rng=random.Random())
    df = check_board(tmp_path)
    survivors = {0, 1, 2} - set(victims)
    assert survivors <= set(df.loc[df["status"] == "ok", "seed"])


@pytest.mark.slow
def test_soak_nine_processes_a_third_killed_then_resumed(tmp_path):
    env, victims = soak(tmp_path, n=9, epochs=3, window=40.0, rng=random.Random())
    check_board(tmp_path)
    for seed in victims:  # each killed run continues from its last epoch (or starts again: killed before any)
        proc = start(seed, 3, env, "trainer.resume=auto")
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-2000:]
    df = check_board(tmp_path)
    ok = df[df["status"] == "ok"]
    assert sorted(ok["seed"]) == list(range(9))  # every seed finished exactly once
