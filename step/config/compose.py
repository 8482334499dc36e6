"""Compose a run config from Python (tests, notebooks) exactly as ``step-train`` does."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """The composed (not yet validated) config for ``overrides``, e.g. ``["model=spikformer"]``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from step.config.paths import conf_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))
