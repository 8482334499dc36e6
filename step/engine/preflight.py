"""Checks that need the file system or the data, run before any training starts.

(:func:`step.config.validate.validate_config` checks the config alone; these check the world.)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from step.errors import ConfigError
from step.results.leaderboard import check_board  # noqa: F401 (the board's header and rows, before training)


def check_writable(folder: str | os.PathLike, what: str, hint: str) -> None:
    """Create ``folder`` if needed and write a probe file in it, or raise one clear ConfigError.

    A probe (not ``os.access``) is used because root passes ``os.access`` on read-only mounts and
    permission bits, but a real write fails.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".step-write-probe-"):
            pass
    except OSError as err:
        raise ConfigError(f"{what} {folder} is not a writable folder ({type(err).__name__}: {err.strerror or err}); "
                          f"{hint}. Nothing was trained or written.") from None


def check_output_paths(cfg: DictConfig) -> None:
    check_writable(cfg.paths.output_root, "paths.output_root",
                   "set STEP_OUT (or paths.output_root=...) to a folder you can write")
    check_writable(Path(cfg.paths.leaderboard).parent, "the leaderboard folder",
                   "set STEP_RESULTS (or paths.leaderboard=...) to a file in a folder you can write")


def check_num_classes(cfg: DictConfig, num_classes: int, dataset: str) -> None:
    """A model or task config that fixes the head's class count must agree with the dataset."""
    for group in ("model", "task"):
        fixed: Any = cfg[group].get("num_classes")
        if fixed is not None and int(fixed) != num_classes:
            raise ConfigError(
                f"{group}.num_classes={fixed} but dataset '{dataset}' has {num_classes} classes; the head "
                f"would not fit the labels. Remove {group}.num_classes (the runner takes it from the data) "
                f"or pick a dataset with {fixed} classes."
            )
