"""A multirun ends non-zero when any of its jobs did not finish ``ok``, once every job has run.

Jobs of a sweep keep going when one fails (its record and ``failed`` row say what happened, see
:mod:`step.results.failed`); :class:`SweepStatus`, a Hydra callback named in ``conf/train.yaml``,
counts the job folders of the sweep whose record is missing or not ``ok`` when the sweep ends (in
the launching process, for every launcher), and ``step-train`` then exits 1 naming them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

#: (job folder, status) of the last sweep's jobs that did not end ``ok``; None before a sweep ended
FAILED: list[tuple[Path, str]] | None = None


def unfinished_jobs(sweep_dir: str | Path) -> list[tuple[Path, str]]:
    """Each job folder under ``sweep_dir`` (it holds Hydra's ``.hydra``) whose record is not ``ok``."""
    out = []
    for marker in sorted(Path(sweep_dir).rglob(".hydra")):
        job = marker.parent
        try:
            status = json.loads((job / "record.json").read_text()).get("status", "unknown")
        except (OSError, ValueError, AttributeError):
            status = "no record"
        if status != "ok":
            out.append((job, str(status)))
    return out


class SweepStatus(Callback):
    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        global FAILED
        FAILED = unfinished_jobs(config.hydra.sweep.dir)
