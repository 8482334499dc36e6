"""Metric loggers: ``csv`` (default, metrics.csv in the run folder), ``wandb`` (offline by default), ``none``."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any


class RunLogger:
    def log(self, row: dict[str, Any]) -> None: ...
    def resume(self, history: list[dict[str, Any]]) -> None: ...
    def finish(self, record: dict[str, Any]) -> None: ...


class CSVLogger(RunLogger):
    """One row per epoch in ``<run_dir>/metrics.csv`` (columns fixed by the first row)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "metrics.csv"
        self._fields: list[str] | None = None

    def log(self, row: dict[str, Any]) -> None:
        new = self._fields is None
        if new:
            self._fields = list(row)
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def resume(self, history: list[dict[str, Any]]) -> None:
        """Start metrics.csv again from a checkpoint's history (drops epochs the checkpoint lacks)."""
        if self.path.exists():
            self.path.unlink()
        self._fields = None
        for row in history:
            self.log(row)

    def finish(self, record: dict[str, Any]) -> None:
        pass


class WandbLogger(RunLogger):
    """Logs config, per-epoch curves, the energy table and the final record to Weights & Biases."""

    def __init__(self, run_dir: Path, project: str, mode: str, config: dict[str, Any], name: str):
        import wandb  # lazy: heavy import, only when asked for

        self.wandb = wandb
        self.run = wandb.init(
            project=project, mode=os.environ.get("WANDB_MODE", mode), dir=str(run_dir),
            config=config, name=name, reinit=True,
        )

    def log(self, row: dict[str, Any]) -> None:
        self.run.log(row)

    def finish(self, record: dict[str, Any]) -> None:
        layers = (record.get("energy") or {}).get("per_layer")
        if layers:
            cols = list(layers[0])
            cell = lambda v: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)  # noqa: E731
            rows = [[cell(r.get(c)) for c in cols] for r in layers]
            self.run.log({"energy_per_layer": self.wandb.Table(columns=cols, data=rows)})
        # the final record: its leaderboard row (metric, energy, params, status, ...) and the metrics
        self.run.summary.update({k: v for k, v in record.get("leaderboard_row", {}).items() if v not in (None, "")})
        self.run.summary.update({f"test_{k}": v for k, v in record.get("metrics", {}).items()})
        self.run.summary["record_path"] = record.get("record_path")
        self.run.finish()


def make_logger(name: str, run_dir: Path, project: str, mode: str, config: dict[str, Any], run_name: str) -> RunLogger:
    if name == "csv":
        return CSVLogger(run_dir)
    if name == "wandb":
        return WandbLogger(run_dir, project, mode, config, run_name)
    return RunLogger()
