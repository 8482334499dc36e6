"""Appending rows to the leaderboard CSV safely, and reading it back with pandas."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Mapping

from filelock import FileLock

from step.errors import StepError
from step.results.schema import COLUMNS, SCHEMA_VERSION


def _lock(path: Path) -> FileLock:
    return FileLock(str(path) + ".lock", timeout=120)


def append_row(path: str | os.PathLike, row: Mapping[str, Any]) -> None:
    """Append one row under a file lock, so parallel jobs never interleave or lose rows.

    Unknown keys are an error (the schema is the contract); missing ones are left empty. The
    header is written when the file is new; a file with another header is never touched.
    """
    path = Path(path)
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"leaderboard row has keys outside the schema: {sorted(unknown)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {c: row.get(c, "") for c in COLUMNS}
    full["schema_version"] = SCHEMA_VERSION
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    with _lock(path):
        new = not path.exists() or path.stat().st_size == 0
        if not new:
            with path.open(newline="") as fh:
                header = next(csv.reader(fh), [])
            if header != COLUMNS:
                raise StepError(
                    f"{path} has columns of another schema version; move it aside, then re-run. "
                    f"Nothing was written."
                )
        else:
            writer.writeheader()
        writer.writerow({k: ("" if v is None else v) for k, v in full.items()})
        with path.open("a", newline="") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())


def read_leaderboard(path: str | os.PathLike):
    """The leaderboard as a pandas DataFrame (what ``pandas.read_csv(path)`` gives)."""
    import pandas as pd

    return pd.read_csv(path)
