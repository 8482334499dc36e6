"""The run record and its leaderboard row: built at the start, finished once whatever happens."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from step.results.leaderboard import append_row
from step.results.record import write_record


def model_label(cfg: DictConfig) -> str:
    """The model's registry name, plus the settings that differ from what that name fixes.

    ``spikformer-4-384`` shrunk by ``scale=cpu`` reads ``spikformer-4-384[depth=1,dim=64,heads=4]``,
    so a leaderboard row never claims a size that did not run.
    """
    from step.registry import MODELS

    name = str(cfg.model.name)
    fixed = MODELS.entry(name).defaults if name in MODELS else {}
    changed = [f"{k}={cfg.model[k]}" for k, v in fixed.items() if k in cfg.model and cfg.model[k] != v]
    return f"{name}[{','.join(changed)}]" if changed else name


def components(cfg: DictConfig) -> dict[str, Any]:
    return {
        "model": model_label(cfg), "attention": cfg.attention.name, "neuron": cfg.neuron.name,
        "surrogate": cfg.surrogate.name, "alpha": cfg.surrogate.get("alpha"), "encoder": cfg.encoder.name,
        "backend": cfg.backend.name, "dataset": cfg.dataset.name, "task": cfg.task.name,
    }


def leaderboard_row(record: dict[str, Any]) -> dict[str, Any]:
    comp = record["components"]
    return {
        "run_id": record["run_id"], "time": record["finished_at"], "git_commit": record["git_commit"],
        "source": "run", "experiment": record["name"], "task": comp["task"], "dataset": comp["dataset"],
        "model": comp["model"], "attention": comp["attention"], "neuron": comp["neuron"],
        "surrogate": comp["surrogate"], "encoder": comp["encoder"], "backend": comp["backend"],
        "T": record["T"], "seed": record["seed"], "params": record.get("params"),
        "metric_name": record.get("metric_name"), "metric": record.get("metrics", {}).get(record.get("metric_name") or ""),
        **record.get("energy_columns", {}),
        "spike_driven": (record.get("energy") or {}).get("spike_driven", {}).get("verdict", ""),
        "epochs": record.get("epochs_done"), "wall_time_s": round(record["wall_time_s"], 2),
        "device": record.get("device"), "status": record["status"], "error": record.get("error", ""),
        "record_path": record["record_path"], "command": record["command"],
    }


def previous_attempts(record_path: Path) -> list[dict[str, Any]]:
    """The records a resumed run folder already holds (kept inside the new record, minus configs)."""
    if not record_path.is_file():
        return []
    try:
        old = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return []
    earlier = old.pop("previous_attempts", [])
    for key in ("config", "leaderboard_row", "versions"):
        old.pop(key, None)
    return [*earlier, old]


def finish(cfg: DictConfig, record: dict[str, Any], started: float, logger=None) -> dict[str, Any]:
    """Stamp the end time, write record.json and append the leaderboard row (rank 0 only)."""
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["wall_time_s"] = time.time() - started
    row = leaderboard_row(record)
    record["leaderboard_row"] = row
    write_record(record["record_path"], record)
    append_row(cfg.paths.leaderboard, row)
    if logger is not None:
        with contextlib.suppress(Exception):
            logger.finish(record)
    return record
