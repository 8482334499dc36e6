"""The leaderboard CSV: checked before a run trains, appended whole or not at all, once per run.

Guarantees (tests in tests/test_board_file.py; docs/reliability.md):

- **Whole or absent.** A row is one line written by one ``os.write`` under a file lock, then
  flushed and fsynced. If the write fails or is short (a full disk), the file is cut back to its
  length before the write, so no half row stays behind.
- **Once per run.** Rows are keyed by ``run_id``: a row whose ``run_id`` is already in the file is
  not appended again (a retry, a resume or ``step-board --rebuild`` cannot duplicate it).
- **Checked first.** :func:`check_board` runs in the preflight, before any training: a header of
  another schema, a row with the wrong number of fields, or a file that is not UTF-8 CSV stops the
  run with one message. A partial last line (a writer killed mid-line by an older STEP, a copy cut
  short) is cut back to the last complete row, with a warning that prints the bytes dropped.
- **Spreadsheet-proof.** A byte-order mark and CRLF line ends (as spreadsheets save) are read; new
  rows follow the file's line ends.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from step.errors import StepError
from step.results.schema import COLUMNS, SCHEMA_VERSION

BOM = b"\xef\xbb\xbf"


class BoardError(StepError):
    """The leaderboard file cannot be read or appended to as it is."""


class BoardWriteError(BoardError):
    """Appending to the leaderboard failed (full or read-only disk); the file was left as it was."""


@dataclass
class Scan:
    """What :func:`scan` found in a leaderboard file."""

    header: list[str] | None = None
    run_ids: set[str] = field(default_factory=set)
    rows: int = 0
    complete: int = 0  # byte length of the file up to the end of its last complete line
    size: int = 0
    newline: str = "\n"
    partial: bytes = b""


def lock(path: str | os.PathLike) -> FileLock:
    return FileLock(str(path) + ".lock", timeout=120)


def _records(data: bytes, start: int) -> Iterable[tuple[int, int, int]]:
    """``(begin, end, line)`` of each complete CSV record (a newline outside quotes ends one)."""
    begin, quotes, line, first_line = start, 0, 1, 1
    pos = start
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return
        quotes += data.count(b'"', pos, nl)
        pos = nl + 1
        if quotes % 2 == 0:
            yield begin, pos, first_line
            begin, quotes = pos, 0
            first_line = line + 1
        line += 1


def _fields(chunk: bytes, path: Path, line: int) -> list[str]:
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        raise BoardError(f"{path}, line {line}: not UTF-8 text; the file is damaged or not a STEP leaderboard. "
                         "Move it aside (step-board --rebuild re-creates its rows from the runs' records).") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return rows[0] if rows else []


def scan(path: str | os.PathLike, columns: list[str] | None = COLUMNS) -> Scan:
    """Read the file's header, its run_ids and where its last complete line ends.

    Raises :class:`BoardError` for a header other than ``columns`` (None: any header) or a row
    with another number of fields than the header.
    """
    path = Path(path)
    data = path.read_bytes() if path.exists() else b""
    out = Scan(size=len(data))
    start = len(BOM) if data.startswith(BOM) else 0
    out.complete = start
    idx = None
    for begin, end, line in _records(data, start):
        out.complete = end
        chunk = data[begin:end]
        if not chunk.strip(b"\r\n"):
            continue  # a blank line: pandas skips it too
        fields = _fields(chunk, path, line)
        if out.header is None:
            out.header = fields
            out.newline = "\r\n" if chunk.endswith(b"\r\n") else "\n"
            if columns is not None and fields != columns:
                raise BoardError(_header_message(path, fields, columns))
            idx = fields.index("run_id") if "run_id" in fields else None
            continue
        if len(fields) != len(out.header):
            raise BoardError(
                f"{path}, line {line}: a row with {len(fields)} fields, the header has {len(out.header)}; the file "
                "was edited or damaged. Fix or delete that line (step-board --rebuild re-creates missing rows "
                "from the runs' record.json files), then re-run. Nothing was trained or written.")
        out.rows += 1
        if idx is not None:
            out.run_ids.add(fields[idx])
    out.partial = data[out.complete:]
    return out


def _header_message(path: Path, found: list[str], want: list[str]) -> str:
    missing = [c for c in want if c not in found]
    extra = [c for c in found if c not in want]
    what = "; ".join(x for x in (f"missing {', '.join(missing)}" if missing else "",
                                 f"not in the schema: {', '.join(extra)}" if extra else "") if x) or "another order"
    return (f"{path} has the columns of another leaderboard schema ({what}); this STEP writes schema "
            f"version {SCHEMA_VERSION}. Rewrite it with `step-board --migrate {path}` (the old file is kept "
            "beside it), then re-run. Nothing was trained or written.")


def repair_tail(path: Path, found: Scan) -> None:
    """Cut a partial last line off (it is printed, so nothing is lost silently)."""
    if not found.partial:
        return
    shown = found.partial.decode("utf-8", "replace")
    shown = shown if len(shown) <= 400 else shown[:200] + " ... " + shown[-200:]
    print(f"step: warning: {path} ended in a partial line ({len(found.partial)} bytes, dropped): {shown!r}. "
          "If it was a row, `step-board --rebuild` re-creates it from its record.json.", file=sys.stderr, flush=True)
    with path.open("r+b") as fh:
        fh.truncate(found.complete)
        fh.flush()
        os.fsync(fh.fileno())
    found.size, found.partial = found.complete, b""


def check_board(path: str | os.PathLike) -> Scan:
    """The preflight: the board reads as this schema's CSV (a partial last line is cut back, with a
    warning); raises :class:`BoardError` otherwise. A missing file is fine (it will be created)."""
    path = Path(path)
    if not path.exists():
        return Scan()
    try:
        with lock(path):
            found = scan(path)
            repair_tail(path, found)
    except OSError as err:
        raise BoardError(f"the leaderboard {path} cannot be read or repaired ({type(err).__name__}: "
                         f"{err.strerror or err}); fix its permissions or move it aside. Nothing was trained.") from None
    return found


def format_row(row: Mapping[str, Any], newline: str = "\n") -> str:
    """One CSV line of the schema's columns (missing keys empty, ``schema_version`` filled in)."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"leaderboard row has keys outside the schema: {sorted(unknown)}")
    full = {c: row.get(c, "") for c in COLUMNS}
    full["schema_version"] = SCHEMA_VERSION
    buf = io.StringIO()
    # Written with a CRLF terminator whatever ``newline`` is: csv quotes a field holding any character of
    # the terminator, and with "\n" alone a bare "\r" inside a field (an error message) went out unquoted
    # and split the row in two for every reader.
    csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\r\n").writerow(
        {k: ("" if v is None else v) for k, v in full.items()})
    return buf.getvalue()[:-2] + newline


def _write_whole(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` in one ``os.write``, fsync; on failure cut the file back to ``offset``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
        os.fsync(fd)
    except OSError:
        try:
            os.ftruncate(fd, offset)
        except OSError:
            pass
        raise
    finally:
        os.close(fd)


def append_rows(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> int:
    """Append the rows whose ``run_id`` the board does not hold yet; return how many were appended.

    Under the board's file lock: the file is checked (and a partial last line cut back), the new
    lines are written in one write and fsynced. A failed write leaves the file as it was and raises
    :class:`BoardWriteError`.
    """
    path = Path(path)
    rows = list(rows)
    for r in rows:
        format_row(r)  # unknown keys fail before the lock is taken
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with lock(path):
            found = scan(path)
            repair_tail(path, found)
            new, seen = [], set(found.run_ids)
            for r in rows:
                rid = str(r.get("run_id") or "")
                if rid and rid in seen:
                    continue
                seen.add(rid)
                new.append(r)
            if not new:
                return 0
            text = "".join(format_row(r, found.newline) for r in new)
            if found.header is None:  # a new (or empty) file: the header goes in the same write
                buf = io.StringIO()
                csv.writer(buf, lineterminator=found.newline).writerow(COLUMNS)
                text = buf.getvalue() + text
            _write_whole(path, found.complete, text.encode("utf-8"))
            return len(new)
    except OSError as err:
        raise BoardWriteError(
            f"could not append to the leaderboard {path} ({type(err).__name__}: {err.strerror or err}); the file "
            "was left as it was. Free space or fix permissions, then add the missing rows with "
            f"`step-board --rebuild --csv {path}`.") from None


def append_row(path: str | os.PathLike, row: Mapping[str, Any]) -> bool:
    """Append one row unless its ``run_id`` is already on the board; True when it was appended."""
    return append_rows(path, [row]) == 1


def read_leaderboard(path: str | os.PathLike):
    """The leaderboard as a pandas DataFrame (what ``pandas.read_csv(path)`` gives; BOM and CRLF read)."""
    import pandas as pd

    return pd.read_csv(path, encoding="utf-8-sig")
