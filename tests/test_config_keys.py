"""Issue 19: a misspelled key in any group gets one message naming the closest key (``trainer.epoch`` ->
``trainer.epochs``), with exit code 2 and no folder, before Hydra runs; valid keys, ``+`` additions and
sweeps over groups whose options hold different keys still run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from step.cli import train_main

STEP_TRAIN = str(Path(sys.executable).with_name("step-train"))


def _train(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``step-train ARGS`` in this process; the signal handlers it holds until a job starts are put back."""
    monkeypatch.setattr(sys, "argv", ["step-train", *args])
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as stop:
            train_main()
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    return stop.value.code, capsys.readouterr().err


@pytest.mark.parametrize("given, meant", [
    ("trainer.epoch=1", "trainer.epochs"),
    ("optim.lrr=0.1", "optim.lr"),
    ("model.dimm=32", "model.dim"),
    ("sched.warmup_epoch=2", "sched.warmup_epochs"),
    ("surrogate.alpah=4.0", "surrogate.alpha"),
    ("dataset.batchsize=8", "trainer.batch_size"),  # not a dataset key: the closest key of any group
    ("trainr.epochs=2", "trainer"),
    ("epochs=3", "trainer.epochs"),  # a +-less unknown top-level key
    ("sede=1", "seed"),
])
def test_a_misspelled_key_names_the_closest_one(monkeypatch, capsys, isolated_roots, given, meant):
    code, err = _train(monkeypatch, capsys, given)
    assert code == 2
    assert err.startswith("step: error: ") and err.count("\n") == 1  # one message, no traceback
    assert f"Did you mean '{meant}'?" in err
    assert not (isolated_roots / "outputs").exists()  # refused before Hydra made a run folder


def test_the_keys_of_every_swept_choice_count(monkeypatch, capsys):
    """``model.layout`` is a QKFormer key: in a sweep over spikformer and qkformer it is known, and a
    misspelling of it is matched against the keys of both."""
    from step.config.keys import check_override_keys
    from step.errors import ConfigError

    check_override_keys(["-m", "model=spikformer,qkformer", "model.layout=cifar"], ["model"])
    check_override_keys(["+trainer.epoch=1", "~model.mlp_ratio", "hydra.job.chdir=false"], ["model"])
    with pytest.raises(ConfigError, match=r"Did you mean 'model.layout'\?"):
        check_override_keys(["-m", "model=spikformer,qkformer", "model.layoutt=cifar"], ["model"])
    with pytest.raises(ConfigError, match=r"Did you mean 'model.dims'\?"):  # meta-spikeformer's keys
        check_override_keys(["model=meta-spikeformer", "model.dimms=[8,16,32,32,32]"], ["model"])


def test_step_train_trainer_epoch_through_the_console_script(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "STEP_OUT": str(tmp_path / "out"),
           "STEP_RESULTS": str(tmp_path / "results"), "STEP_DATA": str(tmp_path / "data")}
    proc = subprocess.run([STEP_TRAIN, "trainer.epoch=1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.startswith("step: error: 'trainer.epoch' is not a key of config 'trainer'. "
                                  "Did you mean 'trainer.epochs'?")
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr
    assert not (tmp_path / "out").exists()
