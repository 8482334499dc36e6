"""Issue 15, cases 2, 7 and 8: names stay inside the output root, an untrained model never reaches the
board, every user mistake is one line (no traceback) and leaves no folder, and exit codes follow
convention (143 on SIGTERM, 130 on Ctrl-C; a sweep with a failed job: tests/test_sweeps.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from step.config import compose
from step.config.names import check_override_names, path_part_problem
from step.engine import run
from step.errors import ConfigError, DatasetCorruptError

STEP_TRAIN = str(Path(sys.executable).with_name("step-train"))
TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.max_batches=2", "trainer.batch_size=16",
        "trainer.eval_batch_size=32", "trainer.progress=false", "dataset.test_fraction=0.05", "energy.enabled=false",
        "logger=none", "trainer.epochs=1"]


def step_train(args: list[str], root: Path, **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "WANDB_MODE": "disabled", "STEP_OUT": str(root / "out"),
               "STEP_RESULTS": str(root / "results"), "STEP_DATA": str(root / "data"), **env}
    return subprocess.run([STEP_TRAIN, *args], cwd=root, env=environ, capture_output=True, text=True, timeout=600)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("name", ["/../../../../ESCAPED", "/../VICTIM", "..", "a/b", "x\\y", "tab\there", ""])
def test_names_that_would_leave_the_output_root_are_refused(name):
    assert path_part_problem(name) is not None
    with pytest.raises(ConfigError, match="becomes part of the run's folder name"):
        check_override_names([f"name={name}"])


def test_unicode_names_and_ordinary_ones_are_fine():
    for name in ("demo", "abl-surrogate-a1.0", "Versuch-ä", "実験_1", "run.v2"):
        assert path_part_problem(name) is None
    check_override_names(["-m", "name=a,b", "model.name=spikformer"])
    with pytest.raises(ConfigError, match=r"model.name='\.\./x'"):
        check_override_names(["model.name=../x"])
    with pytest.raises(ConfigError, match=r"name='\.\.'"):
        check_override_names(["-m", "name=ok,.."])  # every value of a sweep list


def test_traversal_names_through_the_cli_write_nothing_anywhere(tmp_path):
    """The issue's two commands: the run neither lands outside STEP_OUT nor overwrites another run."""
    victim = tmp_path / "out" / "VICTIM"
    victim.mkdir(parents=True)
    (victim / "record.json").write_text("{}")
    for name in ("/../../../../ESCAPED", "/../VICTIM"):
        proc = step_train(["experiment=demo", "trainer.epochs=1", f"name={name}"], tmp_path)
        assert proc.returncode == 2 and "becomes part of the run's folder name" in proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert files_under(tmp_path / "out") == [victim / "record.json"] and (victim / "record.json").read_text() == "{}"
    assert not list(tmp_path.rglob("*ESCAPED*")) and not Path("/ESCAPED").exists()


def test_a_unicode_name_runs_and_names_its_folder(isolated_roots):
    record = run(compose([*TINY, "name='Versuch-ä'"]))  # Hydra's grammar wants unicode quoted
    assert record["status"] == "ok" and "_Versuch-ä_" in Path(record["record_path"]).parent.name


def test_run_checks_names_of_a_composed_config_too(isolated_roots):
    with pytest.raises(ConfigError, match="becomes part of the run's folder name"):
        run(compose([*TINY, "name=../../x"]))
    assert not (isolated_roots / "outputs" / "runs").exists()


def test_zero_epochs_is_refused():
    with pytest.raises(ConfigError, match=r"trainer.epochs must be >= 1, got 0: an untrained model"):
        run(compose([*TINY, "trainer.epochs=0"]))


@pytest.mark.parametrize(("override", "message"), [
    ("dataset.img_size=100000", r"dataset.img_size=100000: the 1,797 digits at that size need 71,880.0 GB, more than"),
    ("model.dim=30 model.heads=4", r"model 'spikformer' cannot be built with .*model.dim=30, model.heads=4.*divisible"),
])
def test_values_a_builder_cannot_build_are_one_config_error(isolated_roots, override, message):
    with pytest.raises(ConfigError, match=message):
        run(compose([*TINY, *override.split()]))
    assert not (isolated_roots / "outputs" / "runs").exists()


def test_a_corrupt_dataset_cache_under_step_data_is_named(isolated_roots, tmp_path, monkeypatch):
    monkeypatch.setenv("STEP_DATA", str(tmp_path / "data"))
    events = [*TINY, "dataset=digits-dvs", "dataset.timesteps=2"]
    run(compose(events))  # writes the cache
    cache = next((tmp_path / "data").rglob("*.npz"))
    cache.write_bytes(cache.read_bytes()[:100])  # truncated
    with pytest.raises(DatasetCorruptError, match=rf"the dataset cache {cache} cannot be read.*Delete it"):
        run(compose(events))


def test_config_errors_through_the_cli_are_one_line_and_leave_no_run_folder(tmp_path):
    proc = step_train([*TINY, "model.dim=30", "model.heads=4"], tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("step: error: model 'spikformer' cannot be built")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert files_under(tmp_path / "out") == []  # Hydra's folder for the refused run was removed again


def test_an_unwritable_step_out_is_one_line_before_hydra_makes_a_folder(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("a file, so nothing can be created below it (even by root)")
    proc = step_train(TINY, tmp_path, STEP_OUT=str(blocker / "out"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"paths.output_root {blocker / 'out'} is not a writable folder" in proc.stderr


def test_sigterm_exits_143_and_a_stop_before_training_leaves_nothing(tmp_path):
    """SIGTERM whenever it comes: exit 143; a run it stopped either wrote an interrupted record or no folder."""
    env = {**os.environ, "WANDB_MODE": "disabled", "STEP_OUT": str(tmp_path / "out"),
           "STEP_RESULTS": str(tmp_path / "results"), "STEP_DATA": str(tmp_path / "data")}
    proc = subprocess.Popen([STEP_TRAIN, *TINY, "trainer.epochs=500", "trainer.max_batches=20"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # a failsafe against a hang, not a timing assertion
    while not list((tmp_path / "out").rglob(".hydra")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    runs = [p for p in (tmp_path / "out" / "runs").rglob("*_run_*")] if (tmp_path / "out" / "runs").exists() else []
    for folder in runs:  # a folder that stayed holds the interrupted run's record
        assert (folder / "record.json").exists()
    assert not [p for p in (tmp_path / "out").rglob("*tmp*")]
