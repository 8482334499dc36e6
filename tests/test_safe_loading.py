"""Issue 15, case 1: no file a tool reads can run code. A crafted pickle (one that would create a
marker file when unpickled) given to trainer.resume, step-eval, step-energy or placed as a CIFAR
batch under the data root is refused with one message, and the marker never appears."""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from step.config import compose
from step.engine import checkpoint, run
from step.errors import CheckpointError, DatasetCorruptError

TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.max_batches=2", "trainer.batch_size=16",
        "trainer.eval_batch_size=32", "trainer.progress=false", "dataset.test_fraction=0.05", "energy.enabled=false",
        "logger=none", "trainer.epochs=1"]


class Payload:
    """Unpickling this object runs ``os.system("touch <marker>")``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted(path: Path, marker: Path, **extra) -> Path:
    """A file that looks like a STEP training state and runs a command when unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "model": {}, "config": {},
                "payload": Payload(marker), **extra}, path)
    return path


def test_the_payload_really_runs_when_unpickled_unsafely(tmp_path):
    """The control: the same file loaded with weights_only=False creates the marker (so the tests below can fail)."""
    marker = tmp_path / "control"
    torch.load(crafted(tmp_path / "c.pt", marker), weights_only=False)
    assert marker.exists()


def test_crafted_last_pt_given_to_resume_is_refused_before_it_runs(isolated_roots, tmp_path):
    marker = tmp_path / "PWNED"
    last = crafted(isolated_roots / "outputs" / "elsewhere" / "last.pt", marker)
    with pytest.raises(CheckpointError, match=r"not loaded: it holds Python objects other than tensors.*posix.system"):
        run(compose([*TINY, f"trainer.resume={last}"]))
    assert not marker.exists()
    assert not (isolated_roots / "results" / "leaderboard.csv").exists()


def test_crafted_checkpoint_found_by_resume_auto_is_refused(isolated_roots, tmp_path):
    marker = tmp_path / "PWNED"
    resolved = compose(TINY)
    from omegaconf import OmegaConf

    fingerprint = checkpoint.fingerprint(OmegaConf.to_container(resolved, resolve=True))
    folder = isolated_roots / "outputs" / "runs" / "x" / "planted"
    crafted(folder / "last.pt", marker)
    (folder / "last.json").write_text(json.dumps({"fingerprint": fingerprint, "status": "running", "epoch": 1,
                                                  "checkpoint": "last.pt", "saved_at": 1e12}))
    with pytest.raises(CheckpointError, match="not loaded"):
        run(compose([*TINY, "trainer.resume=auto"]))
    assert not marker.exists()


def test_crafted_checkpoint_is_refused_by_step_eval_and_step_energy(tmp_path, capsys):
    from step.cli import eval_main
    from step.energy.cli import main as energy_main

    marker = tmp_path / "PWNED"
    path = crafted(tmp_path / "model.pt", marker)
    with pytest.raises(SystemExit) as stop:
        eval_main([str(path)])
    assert stop.value.code == 2 and "not loaded" in capsys.readouterr().err
    assert energy_main([str(path), "--model", "spikformer"]) == 2
    assert "not loaded" in capsys.readouterr().err
    assert not marker.exists()


def test_a_format_1_checkpoint_gets_one_message_naming_its_version(tmp_path):
    """Version 1 pickled numpy's RNG state as an ndarray: refused (it needs unpickling numpy objects) with its version."""
    path = tmp_path / "last.pt"
    torch.save({"format": checkpoint.FORMAT, "version": 1, "rng": {"numpy": np.random.get_state(),
                                                                     "python": random.getstate()}}, path)
    with pytest.raises(CheckpointError, match=r"old STEP format version 1.*this STEP reads version 2"):
        checkpoint.read(path)


def test_checkpoints_a_run_writes_load_weights_only_and_restore_every_rng(isolated_roots):
    record = run(compose([*TINY, "trainer.ckpt_every=1"]))
    state = torch.load(record["state"], weights_only=True)  # raises if anything but tensors and plain data
    model = torch.load(record["checkpoint"], weights_only=True)
    assert model["format"] == "step-model" and model["version"] == 2 and model["run_id"] == record["run_id"]
    assert state["version"] == 2 and state["run_id"] == record["run_id"]
    # the RNG states survive the weights-only round trip: restoring them replays the same draws
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    saved = checkpoint.rng_state(None)
    path = isolated_roots / "rng.pt"
    torch.save(saved, path)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoint.restore_rng(torch.load(path, weights_only=True), None)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_crafted_cifar_batch_under_the_data_root_is_refused(isolated_roots, tmp_path, monkeypatch):
    from step.engine import builders

    marker = tmp_path / "PWNED"
    root = tmp_path / "data"
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "x": Payload(marker)}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{k}" for k in range(10)]}, fh)
    monkeypatch.setenv("STEP_DATA", str(root))
    with pytest.raises(DatasetCorruptError, match=r"could not read its files under the data root.*posix.system"):
        builders.build_data(compose(["dataset=cifar10"]))
    assert not marker.exists()
