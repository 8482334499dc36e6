"""``step-board --rebuild``: re-create missing leaderboard rows from the runs' ``record.json`` files.

Every record a run writes holds its row (``leaderboard_row``, also for earlier attempts of a resumed
run under ``previous_attempts``). Rebuilding reads every record under the output root (and the
records a run wrote next to the board when its own folder could not be written), brings each row
to the current schema (:func:`step.results.migrate.upgrade_row`) and appends the ones whose
``run_id`` the board does not hold (:func:`step.results.leaderboard.append_rows`): running it
twice adds nothing the second time. Only records made for this board are taken (a record names
its board), unless ``any_board``. Temporary files that killed processes left in run folders no
process holds are removed.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from step.results.leaderboard import append_rows
from step.results.migrate import upgrade_row


@dataclass
class Rebuild:
    board: Path
    records: int = 0
    appended: int = 0
    other_boards: int = 0
    unreadable: list[Path] = field(default_factory=list)
    removed_tmp: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"read {self.records} records; appended {self.appended} missing rows to {self.board}")
        if self.other_boards:
            text += f"; skipped {self.other_boards} records made for another board (--any-board takes them)"
        if self.unreadable:
            text += f"; {len(self.unreadable)} records could not be read ({', '.join(map(str, self.unreadable[:3]))})"
        if self.removed_tmp:
            text += f"; removed {len(self.removed_tmp)} temporary files left by killed processes"
        return text + "."


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def record_files(out_root: Path, board: Path) -> list[Path]:
    found = sorted(out_root.rglob("record.json")) if out_root.is_dir() else []
    fallback = board.parent / "records"
    return found + (sorted(fallback.glob("*.json")) if fallback.is_dir() else [])


def rows_of(record: dict[str, Any], path: Path, out_root: Path) -> list[dict[str, Any]]:
    """The rows a record holds (its own and its earlier attempts'), in the current schema."""
    rel = Path(os.path.relpath(path.resolve(), out_root.resolve())).as_posix()
    out = []
    for attempt in [*record.get("previous_attempts", []), record]:
        row = attempt.get("leaderboard_row") if isinstance(attempt, dict) else None
        if isinstance(row, dict) and row.get("run_id"):
            source = {**attempt, "config": record.get("config")}
            out.append(upgrade_row(row, source, out_root, record_path=rel))
    return out


def _clean_run_folders(out_root: Path) -> list[Path]:
    """Remove the temporary files killed processes left in folders no live process holds."""
    from step.fileio import TMP_MARK, is_locked, remove_stale_tmp

    folders = {p.parent for p in out_root.rglob(f".*{TMP_MARK}*")}
    removed: list[Path] = []
    for folder in sorted(folders):
        if not is_locked(folder):
            removed += remove_stale_tmp(folder)
    return removed


def rebuild(board: str | os.PathLike, out_root: str | os.PathLike, any_board: bool = False) -> Rebuild:
    board, out_root = Path(board), Path(out_root)
    result = Rebuild(board)
    rows: list[dict[str, Any]] = []
    for path in record_files(out_root, board):
        try:
            record = json.loads(path.read_text())
            assert isinstance(record, dict)
        except (OSError, ValueError, AssertionError):
            result.unreadable.append(path)
            continue
        result.records += 1
        if not any_board and record.get("leaderboard") and not _same_file(record["leaderboard"], board):
            result.other_boards += 1
            continue
        rows += rows_of(record, path, out_root)
    result.appended = append_rows(board, rows) if rows else 0
    result.removed_tmp = _clean_run_folders(out_root) if out_root.is_dir() else []
    for path in result.unreadable:
        print(f"step-board: warning: {path} is not a readable record; skipped.", file=sys.stderr)
    return result
