"""conf/dataset/*.yaml: one per registered dataset, exactly the builder's keywords (plus the batch
recipe the training loop applies), no machine paths."""

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from step.config.validate import DATASET_RECIPE_KEYS
from step.registry import DATASETS

CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"
FILES = sorted(CONF.glob("*.yaml"))


def test_every_registered_dataset_has_a_config():
    names = {OmegaConf.load(f).name for f in FILES}
    assert set(DATASETS.names()) <= names


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_config_holds_exactly_the_builder_keywords(path):
    cfg = OmegaConf.load(path)
    entry = DATASETS.entry(cfg.name)
    keys = set(cfg) - {"name"}
    assert keys - set(DATASET_RECIPE_KEYS) == entry.accepted_keywords() - {"root"}
    recipe = keys & set(DATASET_RECIPE_KEYS)
    # image and event classification sets carry the whole batch recipe, sequences only label smoothing
    assert recipe in (set(DATASET_RECIPE_KEYS), {"label_smoothing"}, set()), path.name
    # event sets take their frame count from the run's T
    if "timesteps" in keys:
        assert OmegaConf.to_container(cfg)["timesteps"] == "${T}"
        resolved = OmegaConf.merge({"T": 6}, {"d": cfg}).d
        assert resolved.timesteps == 6


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_no_absolute_path_in_config(path):
    for key, value in OmegaConf.to_container(OmegaConf.load(path)).items():
        if isinstance(value, str):
            assert not value.startswith(("/", "~", "\\")), (path.name, key, value)
            assert not re.match(r"^[A-Za-z]:[\\/]", value), (path.name, key, value)
    # comments too: no machine-specific roots anywhere in the file
    assert not re.search(r"(^|\s)(/data|/home|/mnt|/raid)/", path.read_text())
