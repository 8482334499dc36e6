"""Issue 15, cases 3, 4 (output disk) and 6: a finished run cannot vanish, a full disk still leaves a
record and a ``failed`` row, and nothing duplicates a run.

A kill -9 is simulated in-process: the patched step raises an exception no handler of the runner
sees (as SIGKILL runs none), so the files on disk are exactly what a killed process leaves. The real
thing (processes killed with SIGKILL) is tests/test_soak.py."""

from __future__ import annotations

import errno
import importlib
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from step.config import compose
from step.engine import checkpoint, run
from step.engine.commit import RunFiles
from step.engine.resume import RunInUseError, folder_lock, settle
from step.errors import CheckpointError, OutputError
from step.results.rebuild import rebuild

run_module = importlib.import_module("step.engine.run")
recording = importlib.import_module("step.engine.recording")
TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.max_batches=2", "trainer.batch_size=16",
        "trainer.eval_batch_size=32", "trainer.progress=false", "dataset.test_fraction=0.05", "energy.enabled=false",
        "logger=none", "trainer.epochs=1"]


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, and the runner's stop handler is switched off while it flies."""


def killed_at(target, name: str, when=lambda *a, **k: True) -> None:
    """Run ``run(compose(TINY))`` with ``target.name`` standing for a SIGKILL."""
    real = getattr(target, name)

    def killer(*args, **kwargs):
        if when(*args, **kwargs):
            raise Killed(name)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(Killed):
        patch.setattr(target, name, killer)
        patch.setattr(RunFiles, "stop", lambda self, err: None)  # a killed process runs no handler
        run(compose(TINY))


def board(root: Path) -> pd.DataFrame:
    path = root / "results" / "leaderboard.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["run_id", "status"])


def only_run_dir(root: Path) -> Path:
    (folder,) = [p.parent for p in (root / "outputs" / "runs").rglob("last.json")]
    return folder


def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a finished training was run again")

    monkeypatch.setattr(run_module, "train_one_epoch", refuse)


def test_killed_after_the_final_state_before_model_resumes_without_training_again(isolated_roots, monkeypatch):
    killed_at(checkpoint, "save_model")
    run_dir = only_run_dir(isolated_roots)
    assert checkpoint.read_sidecar(run_dir)["status"] == "running" and checkpoint.read_sidecar(run_dir)["epoch"] == 1
    assert not (run_dir / "model.pt").exists() and not (run_dir / "record.json").exists() and board(isolated_roots).empty
    no_training(monkeypatch)
    resumed = run(compose([*TINY, "trainer.resume=auto"]))  # re-evaluates only
    assert resumed["status"] == "ok" and resumed["resumed_from"]["epoch"] == 1 and Path(resumed["record_path"]).parent == run_dir
    assert list(board(isolated_roots)["run_id"]) == [resumed["run_id"]]
    assert checkpoint.read_sidecar(run_dir)["status"] == "ok" and (run_dir / "model.pt").exists()


def test_killed_after_the_ok_record_before_the_row_loses_no_row_and_is_never_trained_again(isolated_roots, monkeypatch):
    killed_at(recording, "append_row")
    run_dir = only_run_dir(isolated_roots)
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "ok" and board(isolated_roots).empty
    assert checkpoint.read_sidecar(run_dir)["status"] == "running"  # ok is written last
    assert rebuild(isolated_roots / "results" / "leaderboard.csv", isolated_roots / "outputs").appended == 1
    no_training(monkeypatch)
    with pytest.raises(CheckpointError, match="has finished"):  # the finished run is refused, not re-run
        run(compose([*TINY, f"trainer.resume={run_dir}"]))
    assert list(board(isolated_roots)["run_id"]) == [record["run_id"]]  # still exactly one row
    assert checkpoint.read_sidecar(run_dir)["status"] == "ok"  # settled


def test_resume_auto_settles_a_run_killed_after_its_row_and_does_not_continue_it(isolated_roots):
    killed_at(checkpoint, "write_sidecar", when=lambda run_dir, state, status: status == "ok")
    run_dir = only_run_dir(isolated_roots)
    assert checkpoint.read_sidecar(run_dir)["status"] == "running" and len(board(isolated_roots)) == 1
    resolved = OmegaConf.to_container(compose([*TINY, "trainer.resume=auto"]), resolve=True)
    assert checkpoint.find_latest(isolated_roots / "outputs", resolved, settle=settle) is None
    assert checkpoint.read_sidecar(run_dir)["status"] == "ok" and len(board(isolated_roots)) == 1


def test_a_finished_run_given_to_resume_is_refused_and_left_as_it_was(isolated_roots):
    record = run(compose(TINY))
    run_dir = Path(record["record_path"]).parent
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    for given in (run_dir, run_dir / "last.pt"):
        with pytest.raises(CheckpointError, match=r"has finished.*step-eval .*model.pt"):
            run(compose([*TINY, f"trainer.resume={given}"]))
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    assert list(board(isolated_roots)["status"]) == ["ok"]


def test_a_second_process_on_the_same_run_folder_is_refused(isolated_roots, monkeypatch):
    killed_at(checkpoint, "save_model")  # an unfinished run: killed after its last state, before its model
    run_dir = only_run_dir(isolated_roots)
    other = folder_lock(run_dir)  # another process training this run holds the folder's lock
    other.acquire()
    try:
        with pytest.raises(RunInUseError, match=r"in use by another step-train process"):
            run(compose([*TINY, "trainer.resume=auto"]))
    finally:
        other.release()
    assert board(isolated_roots).empty and not (run_dir / "metrics.csv").exists()
    assert run(compose([*TINY, "trainer.resume=auto"]))["status"] == "ok"  # once the folder is free


def full_output_disk(monkeypatch, root: Path, only: str | None = None) -> None:
    """Every file written under ``root`` (or only those named ``only``) fails with ENOSPC after a partial temp file."""
    real_save, real_write_text = torch.save, Path.write_text

    def hits(path) -> bool:
        path = Path(path)
        return str(path).startswith(str(root)) and (only is None or only in path.name)

    def enospc(path):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: enospc(f) if hits(f) else real_save(obj, f, *a, **k))
    monkeypatch.setattr(Path, "write_text",
                        lambda self, *a, **k: enospc(self) if hits(self) else real_write_text(self, *a, **k))


@pytest.mark.parametrize(("extra", "only"), [(["trainer.ckpt_every=1"], None), ([], "model.pt")])
def test_a_full_output_disk_ends_in_a_failed_record_next_to_the_board_and_a_failed_row(
        isolated_roots, monkeypatch, capsys, extra, only):
    """Periodic save (ckpt_every=1, everything fails) or only the final model save: the run ends with a record
    (next to the board when its folder is full too) and a failed row, and leaves no temporary file."""
    with pytest.MonkeyPatch.context() as patch, pytest.raises(OutputError, match=r"No space left.*recorded as failed"):
        full_output_disk(patch, isolated_roots / "outputs" / "runs", only)
        run(compose([*TINY, *extra]))
    df = board(isolated_roots)
    assert list(df["status"]) == ["failed"] and "No space left on device" in df["error"][0]
    if only is None:  # nothing could be written in the run folder: the record went next to the board
        fallback = isolated_roots / "results" / "records" / f"{df['run_id'][0]}.json"
        assert f"the record is written to {fallback} instead" in capsys.readouterr().err
        assert json.loads(fallback.read_text())["status"] == "failed"
        assert df["record_path"][0] == "../results/records/" + fallback.name  # relative to the output root
    else:
        assert json.loads((only_run_dir(isolated_roots) / "record.json").read_text())["status"] == "failed"
    assert not [p for p in (isolated_roots / "outputs").rglob("*") if ".tmp" in p.name]  # no temporary file left


def test_a_full_results_disk_keeps_the_board_whole_and_rebuild_adds_the_row_later(isolated_roots):
    import os

    from step.errors import StepError
    from step.results import leaderboard as lb

    first = run(compose([*TINY, "name=first"]))
    before = (isolated_roots / "results" / "leaderboard.csv").read_bytes()
    real_write = os.write

    def full_disk(fd, data):
        real_write(fd, data[: len(data) // 3])
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as patch, pytest.raises(StepError, match=r"could not append.*--rebuild"):
        patch.setattr(lb.os, "write", full_disk)
        run(compose([*TINY, "name=second"]))
    assert (isolated_roots / "results" / "leaderboard.csv").read_bytes() == before  # no half row
    second_dir = next(p for p in (isolated_roots / "outputs" / "runs").glob("*/*_second_*"))
    second = json.loads((second_dir / "record.json").read_text())
    assert second["status"] == "ok"  # the run itself finished: its record says so
    third = run(compose([*TINY, "name=third"]))  # the next run appends onto a whole file
    assert rebuild(isolated_roots / "results" / "leaderboard.csv", isolated_roots / "outputs").appended == 1
    df = board(isolated_roots)
    assert sorted(df["run_id"]) == sorted([first["run_id"], second["run_id"], third["run_id"]])
    assert set(df["status"]) == {"ok"}
