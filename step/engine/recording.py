"""The run record and its leaderboard row: built at the start, finished once whatever happens."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from step.errors import OutputError
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


def row_record_path(record_path: str | os.PathLike, output_root: str | os.PathLike) -> str:
    """``record_path`` as a row holds it: relative to the output root (never a machine's absolute path)."""
    return Path(os.path.relpath(Path(record_path).resolve(), Path(output_root).resolve())).as_posix()


def leaderboard_row(record: dict[str, Any]) -> dict[str, Any]:
    comp = record["components"]
    return {
        "run_id": record["run_id"], "time": record["finished_at"], "git_commit": record["git_commit"],
        "source": "run", "experiment": record["name"], "task": comp["task"], "dataset": comp["dataset"],
        "model": comp["model"], "attention": comp["attention"], "neuron": comp["neuron"],
        "surrogate": comp["surrogate"], "encoder": comp["encoder"], "backend": comp["backend"],
        "T": record["T"], "seed": record["seed"], "params": record.get("params"),
        "config_hash": record.get("config_hash", ""),
        "metric_name": record.get("metric_name"), "metric": record.get("metrics", {}).get(record.get("metric_name") or ""),
        **record.get("energy_columns", {}),
        "spike_driven": (record.get("energy") or {}).get("spike_driven", {}).get("verdict", ""),
        "epochs": record.get("epochs_done"), "wall_time_s": round(record["wall_time_s"], 2),
        "device": record.get("device"), "status": record["status"], "error": record.get("error", ""),
        "record_path": row_record_path(record["record_path"], record["output_root"]), "command": record["command"],
    }


def previous_attempts(record_path: Path) -> list[dict[str, Any]]:
    """The records a resumed run folder already holds (kept inside the new record, minus configs)."""
    if not record_path.is_file():
        return []
    try:
        old = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(old, dict):
        return []
    earlier = old.pop("previous_attempts", [])
    for key in ("config", "versions"):
        old.pop(key, None)
    return [*earlier, old]


def write_record_or_fallback(record: dict[str, Any]) -> Path:
    """Write record.json in the run folder; when that folder cannot be written (a full or read-only
    disk), write it next to the leaderboard instead (``<board folder>/records/<run_id>.json``) and say so."""
    try:
        return write_record(record["record_path"], record)
    except OSError as err:
        fallback = Path(record["leaderboard"]).parent / "records" / f"{record['run_id']}.json"
        print(f"step: warning: could not write {record['record_path']} ({type(err).__name__}: "
              f"{err.strerror or err}); the record is written to {fallback} instead.", file=sys.stderr, flush=True)
        record["record_path"] = str(fallback)
        record["leaderboard_row"]["record_path"] = row_record_path(fallback, record["output_root"])
        try:
            return write_record(fallback, record)
        except OSError as again:
            raise OutputError(f"the record of run {record['run_id']} could not be written to the run folder "
                              f"({err.strerror or err}) nor next to the leaderboard ({again.strerror or again}); "
                              "free space on either disk.") from None


def finish(cfg: DictConfig, record: dict[str, Any], started: float, logger=None, on_recorded=None) -> dict[str, Any]:
    """Stamp the end time, write record.json (or its fallback), then append the row (rank 0 only).

    The row is keyed by ``run_id``: appending it again (a retry, ``step-board --rebuild``) adds nothing.
    """
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["wall_time_s"] = time.time() - started
    record["leaderboard_row"] = leaderboard_row(record)
    write_record_or_fallback(record)
    if on_recorded is not None:
        on_recorded()
    append_row(record["leaderboard"], record["leaderboard_row"])
    if logger is not None:
        with contextlib.suppress(Exception):
            logger.finish(record)
    return record
