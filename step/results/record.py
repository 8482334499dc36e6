"""The run record: everything needed to trust, compare and reproduce one run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

RECORD_VERSION = 1
_PACKAGES = ("step-bench", "torch", "torchvision", "spikingjelly", "braincog", "timm", "hydra-core", "numpy")


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """``<sha>`` of HEAD, with ``+dirty`` if tracked files changed; ``unknown`` outside git."""
    from step.config.paths import project_root

    where = str(cwd or project_root())
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=where, capture_output=True, text=True, timeout=10
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def command_line() -> str:
    prog = os.path.basename(sys.argv[0]) if sys.argv else "python"
    return " ".join([prog, *sys.argv[1:]])


def write_record(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` as JSON atomically (temp file, then rename)."""
    from step.fileio import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps({"record_version": RECORD_VERSION, **record}, indent=2, default=str))


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def record_file(row_path: str | os.PathLike, output_root: str | os.PathLike | None = None) -> Path:
    """The record.json a leaderboard row points to: ``record_path`` is relative to the output root
    (``output_root``, default ``$STEP_OUT`` or ``outputs/``); an absolute one (schema 1) is kept."""
    from step.config.paths import output_root as default_root

    path = Path(row_path)
    return path if path.is_absolute() else Path(output_root or default_root()) / path
