"""Where a run's per-epoch rows go: ``metrics.csv``, one log line per epoch, and optionally wandb.

The ``logger`` group composes (``conf/logger/``): ``logger=csv`` (the default) writes
``<run_dir>/metrics.csv``; ``logger=wandb`` (or ``logger=[csv,wandb]``) adds Weights & Biases beside
it, never instead of it; ``logger=none`` writes no metrics file. Every rank-0 run also prints one line
per epoch when no progress bar is shown (:mod:`step.engine.epoch_log`). docs/logging.md has the keys.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig


class RunLogger:
    def log(self, row: dict[str, Any]) -> None: ...
    def resume(self, history: list[dict[str, Any]]) -> None: ...
    def finish(self, record: dict[str, Any]) -> None: ...


class Loggers(RunLogger):
    """Several loggers as one: each row and the final record go to every one of them, in order."""

    def __init__(self, loggers: list[RunLogger]):
        self.loggers = loggers

    def log(self, row: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.log(row)

    def resume(self, history: list[dict[str, Any]]) -> None:
        for logger in self.loggers:
            logger.resume(history)

    def finish(self, record: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.finish(record)


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


def make_logger(cfg: DictConfig, run_dir: Path, config: dict[str, Any], run_name: str, *, epochs: int,
                metric_name: str, console: bool) -> RunLogger:
    """The run's loggers: the epoch line, then ``metrics.csv`` and wandb as ``cfg.logger`` asks."""
    from step.engine.epoch_log import EpochLine

    loggers: list[RunLogger] = [EpochLine(epochs, metric_name, console=console)]
    if cfg.logger.get("csv", True):
        loggers.append(CSVLogger(run_dir))
    if cfg.logger.get("wandb", False):
        from step.engine.wandb_logger import WandbLogger

        loggers.append(WandbLogger(cfg.logger, run_dir, config, run_name))
    return Loggers(loggers)


def env_or(value: Any, variable: str, default: Any = None) -> Any:
    """A config value when set, else the environment variable, else ``default``."""
    if value not in (None, ""):
        return value
    return os.environ.get(variable) or default
