"""``trainer.init_from``: a run that starts from the weights of a checkpoint (a fine-tune).

Through real tiny runs: the weights the run trains from are the checkpoint's (a run whose training
steps are skipped writes them back unchanged and evaluates to the same accuracy); a model with more tensors than the
checkpoint (Meta-SpikeFormer with its distillation head, started from a plain checkpoint at another
T, as the released T=4 fine-tune starts from T=1) keeps its own initialisation there and the record
lists them; a checkpoint that does not fit fails before anything is written.
"""

from __future__ import annotations

import pytest
import torch

import importlib

from step.config import compose
from step.engine import run
from step.errors import CheckpointError, ConfigError

run_module = importlib.import_module("step.engine.run")

BASE = ["trainer.max_batches=2", "trainer.batch_size=16", "trainer.progress=false", "dataset.test_fraction=0.05",
        "energy.enabled=false", "logger=none"]
SPIKFORMER = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2"]
META = ["model=meta-spikeformer-tiny", "model.dims=[8,16,16,16,16]"]


def _no_training(monkeypatch):
    """The run skips its training steps (``trainer.epochs=0`` is refused since an untrained model has
    no place on the board): what it evaluates and saves are exactly the weights it started from."""
    from step.engine.loop import EpochResult

    monkeypatch.setattr(run_module, "train_one_epoch", lambda *a, **k: EpochResult(0.0, {}, 0))


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_a_run_starts_from_the_checkpoint_weights_with_a_fresh_schedule(isolated_roots, monkeypatch):
    first = run(compose([*BASE, *SPIKFORMER, "trainer.epochs=2", "name=first"]))
    start = _weights(first["checkpoint"])
    with monkeypatch.context() as patch:
        _no_training(patch)
        same = run(compose([*BASE, *SPIKFORMER, "trainer.epochs=1", f"trainer.init_from={first['checkpoint']}"]))
    assert all(torch.equal(v, _weights(same["checkpoint"])[k]) for k, v in start.items())
    assert same["metrics"]["top1"] == first["metrics"]["top1"]
    assert same["init_from"] == {"checkpoint": first["checkpoint"], "loaded": len(start), "kept_initialisation": []}
    tuned = run(compose([*BASE, *SPIKFORMER, "trainer.epochs=1", f"trainer.init_from={first['checkpoint']}"]))
    assert [row["epoch"] for row in tuned["history"]] == [0]  # not a resume: epoch 0, fresh optimiser and schedule
    fresh = run(compose([*BASE, *SPIKFORMER, "trainer.epochs=1"]))
    assert fresh["init_from"] is None and tuned["history"][0]["train_loss"] != fresh["history"][0]["train_loss"]


def test_a_distillation_head_missing_from_the_checkpoint_keeps_its_initialisation(isolated_roots, monkeypatch):
    t1 = run(compose([*BASE, *META, "T=1", "trainer.epochs=1", "name=t1"]))
    start = _weights(t1["checkpoint"])
    kd = ["kd=deit", "kd.teacher=meta-spikeformer-tiny", "model.distill_head=true"]
    _no_training(monkeypatch)
    t2 = run(compose([*BASE, *META, *kd, "T=2", "trainer.epochs=1", f"trainer.init_from={t1['checkpoint']}"]))
    out = _weights(t2["checkpoint"])
    assert t2["init_from"]["kept_initialisation"] == ["head_kd.weight", "head_kd.bias"]
    assert t2["init_from"]["loaded"] == len(start) == len(out) - 2
    assert all(torch.equal(v, out[k]) for k, v in start.items())
    # the head keeps the initialisation the model gives it: not zero, not the class head's
    assert out["head_kd.weight"].abs().sum() > 0 and not torch.equal(out["head_kd.weight"], out["head.weight"])


def test_a_checkpoint_that_does_not_fit_fails_before_anything_is_written(isolated_roots):
    wide = run(compose([*BASE, "model.depth=1", "model.dim=32", "model.heads=2", "T=2", "trainer.epochs=1"]))
    runs = sorted((isolated_roots / "outputs").rglob("record.json"))
    with pytest.raises(CheckpointError, match=r"'patch_embed\.stages\.0\.conv\.0\.weight' of .* has shape \(4, 1, 3, 3\) but the model's is \(2, 1, 3, 3\)"):
        run(compose([*BASE, *SPIKFORMER, f"trainer.init_from={wide['checkpoint']}"]))
    with pytest.raises(CheckpointError, match="has no place in model.*step-convert"):
        run(compose([*BASE, *META, "T=1", f"trainer.init_from={wide['checkpoint']}"]))
    with pytest.raises(CheckpointError, match="does not exist"):
        run(compose([*BASE, *SPIKFORMER, f"trainer.init_from={isolated_roots / 'nowhere.pt'}"]))
    assert sorted((isolated_roots / "outputs").rglob("record.json")) == runs


def test_a_value_left_to_the_user_is_asked_for_by_name():
    with pytest.raises(ConfigError, match=r"trainer\.init_from must be given on the command line.*trainer\.init_from=<value>"):
        run(compose([*BASE, *SPIKFORMER, "trainer.init_from=???"]))
    with pytest.raises(ConfigError, match="trainer.init_from must be the path"):  # `make ... INIT=` left empty
        run(compose([*BASE, *SPIKFORMER, "trainer.init_from="]))
