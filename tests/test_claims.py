"""Behaviours README and docs/*.md promise that had no test of their own (docs/claims.md maps every
promise to its test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from knob_runs import run_module, tiny_run
from step.engine import checkpoint
from step.engine.commit import RunFiles

ROOT = Path(__file__).resolve().parents[1]


def test_build_reference_writes_each_published_number_as_a_paper_row(tmp_path, monkeypatch):
    """README / docs/leaderboard.md: ``results/reference.csv`` is built from the experiments'
    ``reference:`` blocks (source=paper), never typed twice. Checked against the YAML read directly."""
    from step.results import reference

    files = [ROOT / "experiments" / "experiment" / f"{n}.yaml" for n in ("spikformer-cifar10", "sdt-cifar10")]
    monkeypatch.setattr(reference, "experiment_files", lambda: files)
    n, failed = reference.build_reference(tmp_path / "reference.csv")
    rows = pd.read_csv(tmp_path / "reference.csv")
    expected = []
    for f in files:
        ref = yaml.safe_load(f.read_text())["reference"]
        expected += [(f.stem, float(r["value"])) for r in ref["results"]]
    assert failed == {} and n == len(rows) == len(expected)
    assert list(zip(rows["experiment"], rows["metric"])) == expected
    assert set(rows["source"]) == {"paper"} and set(rows["status"]) == {"ok"}
    assert (rows["record_path"] == [f"experiments/experiment/{e}.yaml" for e, _ in expected]).all()


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_git_commit_marks_changed_tracked_files_dirty(tmp_path):
    """docs/leaderboard.md: ``git_commit`` is the commit that ran, ``+dirty`` when tracked files changed."""
    from step.results.record import git_commit

    assert git_commit(tmp_path) == "unknown"  # not a repository
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    (tmp_path / "untracked.txt").write_text("not tracked")
    assert git_commit(tmp_path) == sha  # untracked files do not count
    (tmp_path / "a.txt").write_text("two")
    assert git_commit(tmp_path) == sha + "+dirty"


def test_signals_are_held_off_while_a_checkpoint_is_written():
    """docs/distributed.md: further signals are ignored while the runner writes; a periodic
    checkpoint (defer=True) still stops after the write."""
    from step.engine.signals import graceful_stop, shielded

    with graceful_stop():
        with shielded():
            os.kill(os.getpid(), signal.SIGTERM)  # dropped: the run is already stopping
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            with shielded(defer=True):
                os.kill(os.getpid(), signal.SIGTERM)
                written = True  # the block runs to its end first
        assert written
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # outside a shield: the clean stop
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_sync_bn_on_cpu_under_ddp_is_a_config_error():
    """docs/distributed.md: ``trainer.sync_bn=true`` is CUDA only."""
    from step.engine.distributed import DistInfo, wrap
    from step.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.sync_bn=true needs CUDA"):
        wrap(torch.nn.BatchNorm1d(2), DistInfo(rank=0, world_size=2), torch.device("cpu"), sync_bn=True)


def test_a_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    """README / docs/distributed.md: ``last.pt`` is written atomically (temporary file, then rename)."""
    state = {"epoch": 1, "fingerprint": "f", "model": {"w": torch.ones(3)}}
    checkpoint.save(tmp_path, state)
    before = (tmp_path / "last.pt").read_bytes()
    real = torch.save

    def crash_half_way(obj, f, *args, **kwargs):
        real(obj, f, *args, **kwargs)
        Path(f).write_bytes(Path(f).read_bytes()[:10])  # a torn write
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tmp_path, {**state, "epoch": 2})
    assert (tmp_path / "last.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json", "last.pt"]  # no temporary left
    assert json.loads((tmp_path / "last.json").read_text())["epoch"] == 1


def test_a_run_killed_without_grace_is_continued_from_its_periodic_checkpoint(monkeypatch, isolated_roots):
    """docs/distributed.md: SIGKILL leaves the last periodic ``last.pt`` with status ``running``;
    ``resume=auto`` continues from it. The kill is simulated in-process as tests/test_commit_order.py
    does: an exception out of the loop while the runner's stop handler is switched off (a SIGKILL
    runs no handler); the real signal is tests/test_soak.py."""
    same = ("trainer.epochs=3", "trainer.max_batches=1", "trainer.ckpt_every=1", "energy.enabled=false", "name=kill")
    real = run_module.train_one_epoch

    def killed_in_epoch_2(*args, **kwargs):
        if kwargs["epoch"] == 2:
            raise SystemExit("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_one_epoch", killed_in_epoch_2)
    with pytest.MonkeyPatch.context() as no_handler, pytest.raises(SystemExit):
        no_handler.setattr(RunFiles, "stop", lambda self, err: None)
        tiny_run(*same)
    monkeypatch.setattr(run_module, "train_one_epoch", real)
    sidecars = list((isolated_roots / "outputs").rglob("last.json"))
    assert len(sidecars) == 1 and json.loads(sidecars[0].read_text())["status"] == "running"
    assert not (isolated_roots / "results" / "leaderboard.csv").exists()  # nothing was recorded
    resumed = tiny_run(*same, "trainer.resume=auto")
    assert resumed["resumed_from"] == {"checkpoint": str(sidecars[0].parent / "last.pt"), "epoch": 2}
    assert resumed["status"] == "ok" and resumed["epochs_done"] == 3


def test_the_claims_map_names_tests_that_exist():
    """docs/claims.md: every ``file::test`` it cites is a test function of that file."""
    import re

    text = (ROOT / "docs" / "claims.md").read_text()
    cited = re.findall(r"`(test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)`", text)
    assert len(cited) > 100
    missing = [(f, t) for f, t in cited if f"def {t}(" not in (ROOT / "tests" / f).read_text()]
    assert missing == []
    for f in set(re.findall(r"`(test_[a-z0-9_]+\.py)`", text)):
        assert (ROOT / "tests" / f).exists(), f
