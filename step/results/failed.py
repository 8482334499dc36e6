"""A sweep job that failed before training started still leaves a record and a ``failed`` row.

``step.engine.run`` writes the record and row itself for failures once training has begun. A job
of a multirun can also fail earlier (an invalid value in the sweep, a missing dataset, a model that
rejects a size): then this module writes them, so a sweep of N jobs yields N rows. A single run
with a config error writes nothing; it stops with the error message instead (step.cli).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from step.config.identity import config_hash
from step.results.leaderboard import append_row
from step.results.record import command_line, git_commit, package_versions

_GROUPS = ("task", "dataset", "model", "attention", "neuron", "surrogate", "encoder", "backend")


def _name(cfg: DictConfig, group: str) -> str:
    node = cfg.get(group)
    return str(node.get("name", "")) if isinstance(node, DictConfig) else ""


def record_setup_failure(cfg: DictConfig, error: BaseException, run_dir: str | Path) -> dict[str, Any] | None:
    """Write ``record.json`` and one ``status=failed`` row for a job that stopped before training.

    Does nothing (returns None) when ``run_dir`` already holds a record: the runner wrote it.
    """
    from step.engine.recording import row_record_path, write_record_or_fallback

    run_dir = Path(run_dir)
    record_path = run_dir / "record.json"
    if record_path.exists():
        return None
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - an unresolvable config is itself the failure being recorded
        resolved = OmegaConf.to_container(cfg, resolve=False)
    message = f"{type(error).__name__}: {error}"
    components = {group: _name(cfg, group) for group in _GROUPS}
    output_root = str(OmegaConf.select(cfg, "paths.output_root", default=run_dir.parent))
    record: dict[str, Any] = {
        "run_id": f"{run_dir.name}-{uuid.uuid4().hex[:6]}", "name": str(cfg.get("name", "run")),
        "status": "failed", "error": message, "stage": "setup", "started_at": now, "finished_at": now,
        "command": command_line(), "git_commit": git_commit(), "versions": package_versions(),
        "seed": cfg.get("seed"), "T": cfg.get("T"), "components": components, "config": resolved,
        "record_path": str(record_path), "epochs_done": 0, "wall_time_s": 0.0,
        "output_root": output_root, "leaderboard": str(cfg.paths.leaderboard),
    }
    row = {
        "run_id": record["run_id"], "time": now, "git_commit": record["git_commit"], "source": "run",
        "experiment": record["name"], **components, "T": record["T"], "seed": record["seed"],
        "config_hash": config_hash(resolved) if isinstance(resolved, dict) else "",
        "epochs": 0, "wall_time_s": 0.0, "status": "failed", "error": message,
        "record_path": row_record_path(record_path, output_root), "command": record["command"],
    }
    record["leaderboard_row"] = row
    write_record_or_fallback(record)
    append_row(record["leaderboard"], row)
    return record
