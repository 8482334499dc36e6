"""Suites and sweeps: every suite composes at every scale (and every job of its CPU grid validates),
multiruns through the real CLI write one row per job, a failing job writes a failed row while the
sweep goes on, and the temporal probe reorders time as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from step.config import validate_config
from step.config.paths import conf_dir, experiments_dir
from step.engine.time_order import reorder_time, time_order
from step.errors import ConfigError

SUITES = sorted(p.stem for p in (experiments_dir() / "suite").glob("*.yaml"))
SCALES = sorted(p.stem for p in (experiments_dir() / "scale").glob("*.yaml"))
STEP_TRAIN = str(Path(sys.executable).with_name("step-train"))
TINY = ["trainer.epochs=1", "trainer.max_batches=2", "model.depth=1", "model.dim=16", "model.heads=2", "T=2",
        "trainer.progress=false"]


def compose_full(overrides: list[str]):
    """The composed config including its ``hydra`` node (sweeper params, mode)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def grid(params: dict) -> list[list[str]]:
    """Every job's overrides of a sweeper ``params`` mapping, as Hydra's basic sweeper expands it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    jobs = [[]]
    for override in parsed:
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        jobs = [job + [f"{override.key_or_group}={v}"] for job in jobs for v in values]
    return jobs


def test_every_ablation_axis_has_a_suite():
    assert {"attention", "neuron", "surrogate", "encoder", "shortcut", "timesteps", "temporal"} <= set(SUITES)
    assert {"cpu", "full"} <= set(SCALES)


@pytest.mark.parametrize("scale", [None, "cpu", "full"])
@pytest.mark.parametrize("suite", SUITES)
def test_suite_composes_validates_and_is_a_multirun(suite, scale):
    cfg = compose_full([f"suite={suite}"] + ([f"scale={scale}"] if scale else []))
    validate_config(cfg)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    params = dict(cfg.hydra.sweeper.params)
    assert params["seed"] == ("0,1,2" if scale != "cpu" else ("0" if suite == "surrogate" else "0,1"))
    if scale == "cpu":
        assert cfg.dataset.name == "digits" and cfg.model.depth == 1 and cfg.trainer.device == "cpu"


@pytest.mark.parametrize("suite", SUITES)
def test_every_job_of_the_cpu_grid_validates(suite):
    """Each job of ``suite=<suite> scale=cpu`` (seeds aside) composes and validates: no missing name."""
    params = dict(compose_full([f"suite={suite}", "scale=cpu"]).hydra.sweeper.params)
    params.pop("seed")
    jobs = grid(params)
    assert len(jobs) >= 2  # a suite compares at least two settings
    for job in jobs:
        cfg = compose_full([f"suite={suite}", "scale=cpu", *job])
        validate_config(cfg)
        if suite == "temporal":
            assert cfg.dataset.name == "digits-dvs"  # time structure; scale=cpu's digits has none


def run_cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "STEP_OUT": str(tmp_path / "out"),
           "STEP_RESULTS": str(tmp_path / "results"), "STEP_DATA": str(tmp_path / "data")}
    return subprocess.run([STEP_TRAIN, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


def rows(tmp_path: Path) -> pd.DataFrame:
    return pd.read_csv(tmp_path / "results" / "leaderboard.csv")


def test_two_job_multirun_through_the_cli_writes_exactly_two_rows(tmp_path):
    proc = run_cli(["-m", "attention=ssa", "neuron=lif", "seed=0,1", "name=sweep2", *TINY], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    df = rows(tmp_path)
    assert len(df) == 2 and df["run_id"].nunique() == 2
    assert sorted(df["seed"]) == [0, 1] and set(df["status"]) == {"ok"} and set(df["experiment"]) == {"sweep2"}
    assert all(Path(p).exists() for p in df["record_path"])


def test_a_failing_job_writes_a_failed_row_and_the_sweep_goes_on(tmp_path):
    proc = run_cli(["-m", "optim.lr=-1.0,0.005", "name=sweepfail", *TINY], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    df = rows(tmp_path)
    assert df["status"].tolist() == ["failed", "ok"]  # job 0 failed, job 1 still ran
    assert "optim.lr must be > 0" in df["error"].iloc[0]
    assert Path(df["record_path"].iloc[0]).exists()


def test_a_single_run_with_a_config_error_writes_no_row(tmp_path):
    proc = run_cli(["optim.lr=-1.0", *TINY], tmp_path)
    assert proc.returncode != 0 and "optim.lr must be > 0" in proc.stderr
    assert not (tmp_path / "results" / "leaderboard.csv").exists()


@pytest.mark.slow
def test_joblib_launcher_runs_two_jobs_in_parallel_processes(tmp_path):
    proc = run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", "name=joblib2", *TINY], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    df = rows(tmp_path)
    assert len(df) == 2 and sorted(df["seed"]) == [0, 1] and set(df["status"]) == {"ok"}


@pytest.mark.slow
def test_one_cpu_suite_job_runs_end_to_end(tmp_path):
    proc = run_cli(["suite=timesteps", "scale=cpu", "hydra.sweeper.params.T=2", "hydra.sweeper.params.seed=0",
                    "trainer.epochs=1", "trainer.max_batches=2", "model.dim=16", "model.heads=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    df = rows(tmp_path)
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["experiment"], row["dataset"], row["model"], row["T"], row["status"]) == (
        "abl-timesteps", "digits", "spikformer-4-384", 2, "ok")


def test_time_order_reversed_and_shuffled_by_hand():
    x = torch.arange(4.0).view(4, 1, 1) * torch.ones(4, 2, 3)  # x[t] == t everywhere
    assert reorder_time(x, "reversed")[:, 0, 0].tolist() == [3.0, 2.0, 1.0, 0.0]
    assert time_order("normal") is None
    first = time_order("shuffled", seed=3)(x)[:, 0, 0].tolist()
    assert sorted(first) == [0.0, 1.0, 2.0, 3.0]  # a permutation of the timesteps, nothing lost
    assert time_order("shuffled", seed=3)(x)[:, 0, 0].tolist() == first  # repeatable for one seed
    with pytest.raises(ConfigError, match="normal, reversed, shuffled"):
        time_order("backwards")


def test_record_setup_failure_writes_once(tmp_path, monkeypatch):
    from step.config import compose
    from step.results.failed import record_setup_failure

    monkeypatch.setenv("STEP_RESULTS", str(tmp_path / "results"))
    cfg = compose(["name=broken", "seed=3"])
    record = record_setup_failure(cfg, ConfigError("no such thing"), tmp_path / "job0")
    assert record is not None and (tmp_path / "job0" / "record.json").exists()
    assert record_setup_failure(cfg, ConfigError("again"), tmp_path / "job0") is None  # record exists: no second row
    df = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["status"], row["experiment"], row["seed"], row["error"]) == ("failed", "broken", 3, "ConfigError: no such thing")


@pytest.mark.parametrize("launcher,target", [("joblib", "JoblibLauncher"), ("step_slurm", "SlurmLauncher")])
def test_launcher_configs_compose(launcher, target):
    cfg = compose_full([f"hydra/launcher={launcher}", "suite=attention"])
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "step_slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.partition is None
