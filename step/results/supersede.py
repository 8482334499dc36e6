"""Move the rows a re-run replaces from the leaderboard to ``superseded.csv``, never deleting one.

``make reproduce-cpu`` re-runs a suite, then calls ``step-board --supersede suite=<s> scale=cpu
--since <start>``: every row whose command holds all the given tokens and that finished before
``<start>`` moves to ``superseded.csv`` with the reason in ``superseded_because``. It refuses (and
moves nothing) unless the re-run left at least one ``ok`` row with those tokens at or after
``<start>``, so a suite that failed to run never empties the board.

Rows are moved as text (the csv module, not pandas), so the numbers that stay are byte-for-byte
what the runs wrote. ``superseded.csv`` keeps the union of the columns it has seen: rows of an
older schema version keep their columns and leave newer ones empty. Both files are rewritten
atomically under the leaderboard's lock.
"""

from __future__ import annotations

import csv
import os
import tempfile
from datetime import datetime
from pathlib import Path

from filelock import FileLock

from step.errors import StepError

REASON = "superseded_because"


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.exists() or path.stat().st_size == 0:
        return [], []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _write(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    with os.fdopen(fd, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: row.get(c, "") for c in header} for row in rows)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _time(text: str, what: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise StepError(f"{what} {text!r} is not an ISO 8601 time such as 2026-12-03T09:00:00+00:00.") from None
    if stamp.tzinfo is None:
        raise StepError(f"{what} {text!r} has no time zone; rows are stamped in UTC (add +00:00).")
    return stamp


def supersede(board: str | os.PathLike, archive: str | os.PathLike, tokens: list[str], since: str,
              because: str) -> int:
    """Move the rows of ``board`` made by a command holding every token in ``tokens`` and finished
    before ``since`` to ``archive``; returns how many moved (see the module doc)."""
    board, archive = Path(board), Path(archive)
    start = _time(since, "--since")
    if not tokens:
        raise StepError("--supersede needs the tokens of the command whose old rows to move (e.g. suite=attention scale=cpu).")

    def matches(row: dict[str, str]) -> bool:
        return set(tokens) <= set(str(row.get("command", "")).split())

    with FileLock(str(board) + ".lock", timeout=120):
        header, rows = _read(board)
        if not header:
            raise StepError(f"no leaderboard at {board}; nothing to supersede.")
        new = [r for r in rows if matches(r) and _time(r.get("time", ""), "row time") >= start and r.get("status") == "ok"]
        if not new:
            raise StepError(f"no ok row of a command with {' '.join(tokens)} finished at or after {since} in {board}: "
                            "the re-run did not happen (or failed), so no row was moved.")
        old = [r for r in rows if matches(r) and _time(r.get("time", ""), "row time") < start]
        if not old:
            return 0
        kept = [r for r in rows if not (matches(r) and _time(r.get("time", ""), "row time") < start)]
        old_header, archived = _read(archive)
        union = [c for c in old_header if c != REASON]
        union += [c for c in header if c not in union]
        _write(archive, union + [REASON], archived + [{**r, REASON: because} for r in old])
        _write(board, header, kept)
    return len(old)
