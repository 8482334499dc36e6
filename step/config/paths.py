"""Where data, outputs and results live: environment variables first, then folders in the project.

``STEP_DATA`` (data root), ``STEP_OUT`` (run outputs), ``STEP_RESULTS`` (the curated leaderboard and
figures). Defaults are ``data/``, ``outputs/`` and ``results/`` under the project root (the folder
holding ``pyproject.toml`` above the package), else under the current directory.

Runs append to the *user board* ``<output root>/leaderboard.csv`` unless ``STEP_RESULTS`` is set
(then ``$STEP_RESULTS/leaderboard.csv``) or ``paths.leaderboard`` is given: the curated
``results/leaderboard.csv`` is written only when asked (``conf/paths/default.yaml`` says the same
for runs; these functions say it for ``step-board``).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def project_root() -> Path:
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").exists() else Path.cwd()


def conf_dir() -> Path:
    return project_root() / "conf"


def experiments_dir() -> Path:
    return project_root() / "experiments"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("step_root"):
        OmegaConf.register_new_resolver("step_root", lambda: str(project_root()))


def output_root() -> Path:
    """``$STEP_OUT``, else ``outputs/`` in the project (``paths.output_root``'s default)."""
    return Path(os.environ.get("STEP_OUT") or project_root() / "outputs")


def curated_dir() -> Path:
    """``$STEP_RESULTS``, else ``results/`` in the project: the curated board, reference and figures."""
    return Path(os.environ.get("STEP_RESULTS") or project_root() / "results")


def default_board() -> Path:
    """The board a run appends to by default: ``$STEP_RESULTS/leaderboard.csv`` when STEP_RESULTS
    is set, else the user board ``<output root>/leaderboard.csv``."""
    if os.environ.get("STEP_RESULTS"):
        return Path(os.environ["STEP_RESULTS"]) / "leaderboard.csv"
    return output_root() / "leaderboard.csv"
