"""Every config composes and validates; bad keys and names fail with the valid choices."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from step.config import compose, validate_config
from step.config.paths import conf_dir, experiments_dir
from step.errors import ConfigError

GROUPS = sorted(p.name for p in conf_dir().iterdir() if p.is_dir())
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((conf_dir() / g).glob("*.yaml"))]
EXPERIMENTS = sorted(p.stem for p in (experiments_dir() / "experiment").glob("*.yaml")) if (experiments_dir() / "experiment").is_dir() else []
STEP_TRAIN = str(Path(sys.executable).with_name("step-train"))


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes_and_validates(group, option):
    cfg = compose([f"{group}={option}"])
    validate_config(cfg)


#: values an experiment may leave to the user ('???'), with a stand-in for validation
USER_VALUES = {"trainer.init_from": "t1/model.pt"}


def user_values(cfg) -> list[str]:
    """Overrides giving the '???' values of ``cfg`` (only those of ``USER_VALUES`` are allowed)."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    assert set(missing) <= set(USER_VALUES), f"only {sorted(USER_VALUES)} may be left to the user, got {missing}"
    return [f"{key}={USER_VALUES[key]}" for key in missing]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_validates(experiment):
    cfg = compose([f"experiment={experiment}"])
    given = user_values(cfg)
    if given:  # a value only the user has (a fine-tune's starting checkpoint): refused by name until given
        with pytest.raises(ConfigError, match=f"{given[0].split('=')[0]} must be given on the command line"):
            validate_config(cfg)
    validate_config(compose([f"experiment={experiment}", *given]))


def test_no_machine_paths_in_configs():
    bad = []
    for base in (conf_dir(), experiments_dir()):
        for path in base.rglob("*.yaml"):
            for line in path.read_text().splitlines():
                value = line.split("#", 1)[0]
                if any(f"{q}/{d}/" in f" {value}" for q in (" ", ":", "'", '"') for d in ("home", "mnt", "data", "scratch", "root", "tmp", "work")):
                    bad.append(f"{path}: {line}")
    assert not bad, bad


def test_misspelled_engine_key_fails_at_composition():
    with pytest.raises(Exception) as info:
        compose(["trainer.epoks=3"])
    assert "epoks" in str(info.value)


def test_misspelled_component_key_fails_validation_with_valid_keys():
    cfg = compose(["+model.dpth=3"])
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert "'dpth'" in str(info.value) and "Did you mean 'depth'?" in str(info.value)


@pytest.mark.parametrize(
    "override,fragment",
    [("T=0", "T must be >= 1"), ("optim.lr=-0.1", "optim.lr must be > 0"), ("trainer.batch_size=0", "batch_size must be >= 1")],
)
def test_out_of_range_values_fail(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        validate_config(compose([override]))


def run_cli(*args, cwd):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run([STEP_TRAIN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "arg,expected",
    [("modle=x", ["'modle' is not a config group", "Did you mean 'model'?"]),
     ("neuron=nope", ["'nope' is not an option of group 'neuron'", "lif"]),
     ("trainer.epoks=1", ["epoks"])],
)
def test_cli_rejects_bad_names_without_traceback(arg, expected, tmp_path):
    proc = run_cli(arg, cwd=tmp_path)
    assert proc.returncode != 0
    for fragment in expected:
        assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
