"""One line per epoch, for logs read without a terminal (nohup, SLURM, the joblib launcher).

A progress bar needs a terminal; without one (or with ``trainer.progress=false``) a week-long run
would be silent until it ends. So each epoch end prints, flushed::

    epoch 3/100 | train_loss 1.2345 | test_top1 45.6700 | lr 9.8e-04 | 12.3 s | ETA 0:19:55

The metric is the task's (``test_<metric>`` on epochs that evaluate, else ``train_<metric>``). ETA is
the mean epoch time so far times the epochs left. The same line goes to every file handler of the
root logger, which under ``step-train`` is Hydra's ``<run_dir>/cli.log``: there it is written on
every epoch, with or without a bar.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta
from typing import Any

from step.engine.loggers import RunLogger


def bar_shown(progress: bool) -> bool:
    """Whether tqdm draws a bar (it does only on a terminal, see :func:`step.engine.loop._progress`)."""
    return bool(progress) and sys.stderr.isatty() and sys.stdout.isatty()


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_epoch(row: dict[str, Any], epochs: int, metric_name: str, seconds: float, eta_s: float) -> str:
    metric = next((k for k in (f"test_{metric_name}", f"train_{metric_name}") if row.get(k) is not None), None)
    parts = [f"epoch {row['epoch'] + 1}/{epochs}", f"train_loss {_number(row.get('train_loss'))}"]
    if metric:
        parts.append(f"{metric} {_number(row[metric])}")
    parts += [f"lr {row.get('lr', float('nan')):.3g}", f"{seconds:.1f} s",
              f"ETA {timedelta(seconds=round(max(eta_s, 0.0)))}"]
    return " | ".join(parts)


def emit(line: str, console: bool) -> None:
    """``line`` into the root logger's files (cli.log), and onto stdout when ``console``.

    Under Hydra the root logger also has a stdout handler: the console copy goes through it (same
    format as the file); without handlers (``step.engine.run`` called from Python) it is printed.
    """
    root = logging.getLogger()
    record = logging.LogRecord("step", logging.INFO, __file__, 0, line, None, None)
    handlers = [h for h in root.handlers if record.levelno >= h.level]
    files = [h for h in handlers if isinstance(h, logging.FileHandler)]
    streams = [h for h in handlers if not isinstance(h, logging.FileHandler)]
    for handler in files:
        handler.handle(record)
    if not console:
        return
    if streams:
        for handler in streams:
            handler.handle(record)
            handler.flush()
    else:
        print(line, flush=True)


class EpochLine(RunLogger):
    """Writes :func:`format_epoch` at each epoch end; ``console``: also to stdout (no bar shown)."""

    def __init__(self, epochs: int, metric_name: str, console: bool):
        self.epochs, self.metric_name, self.console = epochs, metric_name, console
        self.last = time.perf_counter()
        self.times: list[float] = []

    def log(self, row: dict[str, Any]) -> None:
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        self.times.append(seconds)
        left = self.epochs - (row["epoch"] + 1)
        emit(format_epoch(row, self.epochs, self.metric_name, seconds, left * sum(self.times) / len(self.times)),
             self.console)
