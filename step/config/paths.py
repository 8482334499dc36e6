"""Where data, outputs and results live: environment variables first, then folders in the project.

``STEP_DATA`` (data root), ``STEP_OUT`` (run outputs), ``STEP_RESULTS`` (leaderboard and figures).
Defaults are ``data/``, ``outputs/`` and ``results/`` under the project root (the folder holding
``pyproject.toml`` above the package), else under the current directory.
"""

from __future__ import annotations

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
