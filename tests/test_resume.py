"""Checkpoints and resume: a run stopped after epoch k and resumed ends exactly like an
uninterrupted one (CPU); corrupt or foreign checkpoints fail with the file and the mismatch."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch

import importlib

run_module = importlib.import_module("step.engine.run")
from step.config import compose
from step.engine import checkpoint, run
from step.engine.evaluate import evaluate_checkpoint
from step.errors import CheckpointError
from step.results.record import record_file

TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.max_batches=2",
        "trainer.batch_size=16", "trainer.eval_batch_size=32", "trainer.progress=false",
        "dataset.test_fraction=0.05",
        "energy.enabled=false", "logger=none", "trainer.epochs=2"]


def tiny(*extra):
    return compose([*TINY, *extra])


def _interrupt_in_epoch(monkeypatch, epoch: int, how: str = "raise"):
    """Make the real loop train one batch of ``epoch`` (weights, optimiser and RNG move on), then stop."""
    real = run_module.train_one_epoch

    def patched(*args, **kwargs):
        if kwargs["epoch"] == epoch:
            real(*args, **{**kwargs, "max_batches": 1})
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)  # the handler raises KeyboardInterrupt here
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_one_epoch", patched)
    return real


def test_interrupted_then_resumed_run_equals_uninterrupted_run(isolated_roots, monkeypatch):
    # the rate (Bernoulli) encoder draws from torch's global RNG: equality needs its state restored
    full = run(tiny("name=resume", "encoder=rate"))

    real = _interrupt_in_epoch(monkeypatch, epoch=1)
    with pytest.raises(KeyboardInterrupt):
        run(tiny("name=resume", "encoder=rate"))
    monkeypatch.setattr(run_module, "train_one_epoch", real)

    board = pd.read_csv(isolated_roots / "results" / "leaderboard.csv")
    assert list(board["status"]) == ["ok", "interrupted"]
    stopped = json.loads(record_file(board["record_path"][1]).read_text())
    assert stopped["status"] == "interrupted" and stopped["epochs_done"] == 1
    run_dir = Path(stopped["record_path"]).parent
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 1  # the finished epoch, not the partial one
    assert json.loads((run_dir / "last.json").read_text())["status"] == "interrupted"

    resumed = run(tiny("name=resume", "encoder=rate", "trainer.resume=auto"))
    assert resumed["resumed_from"]["epoch"] == 1
    assert Path(resumed["record_path"]).parent == run_dir
    assert resumed["metrics"] == full["metrics"]
    assert resumed["test_loss"] == full["test_loss"]
    assert resumed["history"] == full["history"]
    assert [a["status"] for a in resumed["previous_attempts"]] == ["interrupted"]
    board = pd.read_csv(isolated_roots / "results" / "leaderboard.csv")
    assert list(board["status"]) == ["ok", "interrupted", "ok"]


def test_sigterm_saves_a_checkpoint_and_writes_an_interrupted_record(isolated_roots, monkeypatch):
    _interrupt_in_epoch(monkeypatch, epoch=1, how="sigterm")
    with pytest.raises(KeyboardInterrupt):
        run(tiny("name=term"))
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the runner put the handler back
    board = pd.read_csv(isolated_roots / "results" / "leaderboard.csv")
    assert list(board["status"]) == ["interrupted"]
    record = json.loads(record_file(board["record_path"][0]).read_text())
    assert "trainer.resume=auto" in record["error"]
    state = checkpoint.load(record["state"], record["config"])
    assert state["epoch"] == 1 and len(state["history"]) == 1


def test_auto_with_nothing_to_resume_starts_fresh_and_final_checkpoints_serve_step_eval(isolated_roots):
    record = run(tiny("trainer.resume=auto", "trainer.epochs=1"))
    assert record["status"] == "ok" and "resumed_from" not in record
    run_dir = Path(record["record_path"]).parent
    assert json.loads((run_dir / "last.json").read_text())["status"] == "ok"
    for name in ("last.pt", "model.pt"):
        assert evaluate_checkpoint(run_dir / name, energy=False)["test_top1"] == record["metrics"]["top1"]
    # a finished run is never continued: the next auto run starts its own folder
    again = run(tiny("trainer.resume=auto", "trainer.epochs=1"))
    assert "resumed_from" not in again and Path(again["record_path"]).parent != run_dir


def test_corrupt_checkpoint_is_named_and_left_untouched(isolated_roots, tmp_path):
    record = run(tiny("trainer.epochs=1", "trainer.ckpt_every=1"))
    last = Path(record["state"])
    good = last.read_bytes()
    last.write_bytes(good[: len(good) // 2])  # truncated, as by a crash during a copy
    _as_if_killed_before_its_record(last.parent)
    truncated = last.read_bytes()
    rows = len(pd.read_csv(isolated_roots / "results" / "leaderboard.csv"))
    for resume in (str(last), "auto"):
        with pytest.raises(CheckpointError, match=f"{last}.*cannot be read"):
            run(tiny("trainer.epochs=1", "trainer.ckpt_every=1", f"trainer.resume={resume}"))
    assert last.read_bytes() == truncated
    assert len(pd.read_csv(isolated_roots / "results" / "leaderboard.csv")) == rows


def _as_if_killed_before_its_record(run_dir: Path) -> None:
    """What a run killed with SIGKILL after its last checkpoint, before its record, leaves: no record, sidecar running."""
    sidecar = run_dir / "last.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "status": "running"}))
    (run_dir / "record.json").unlink()


def test_checkpoint_of_another_config_names_the_differing_keys(isolated_roots):
    record = run(tiny("trainer.epochs=1"))
    _as_if_killed_before_its_record(Path(record["state"]).parent)
    with pytest.raises(CheckpointError, match=r"model\.dim: checkpoint 16, this run 32"):
        run(tiny("trainer.epochs=1", "model.dim=32", f"trainer.resume={record['state']}"))
    with pytest.raises(CheckpointError, match=r"does not exist"):
        run(tiny(f"trainer.resume={isolated_roots / 'nowhere' / 'last.pt'}"))


def test_identity_ignores_where_and_how_but_not_what():
    cfg = {"model": {"dim": 16}, "trainer": {"epochs": 2, "resume": "never", "device": "cpu"},
           "paths": {"output_root": "/a"}}
    moved = {**cfg, "trainer": {**cfg["trainer"], "resume": "auto", "device": "cuda"}, "paths": {"output_root": "/b"}}
    longer = {**cfg, "trainer": {**cfg["trainer"], "epochs": 3}}
    assert checkpoint.fingerprint(cfg) == checkpoint.fingerprint(moved)
    assert checkpoint.fingerprint(cfg) != checkpoint.fingerprint(longer)
    assert checkpoint.config_mismatch(cfg, longer) == ["trainer.epochs: checkpoint 2, this run 3"]


@pytest.mark.slow
def test_sigterm_to_a_step_train_process_leaves_a_resumable_run(isolated_roots):
    """A real process: wait for its first checkpoint (polling the file), SIGTERM it, resume it."""
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    args = [*TINY, "trainer.epochs=40", "trainer.ckpt_every=1", "name=sigterm"]
    proc = subprocess.Popen([sys.executable, "-m", "step.train", *args], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600  # a failsafe against a hang, not a timing assertion
    while not list((isolated_roots / "outputs").rglob("last.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 143 and "trainer.resume=auto" in err  # 128 + SIGTERM
    board = pd.read_csv(isolated_roots / "results" / "leaderboard.csv")
    assert list(board["status"]) == ["interrupted"]
    record = json.loads(record_file(board["record_path"][0]).read_text())
    state = checkpoint.load(record["state"], record["config"])
    assert state["epoch"] == record["epochs_done"] >= 1
