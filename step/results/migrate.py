"""``step-board --migrate CSV``: rewrite a leaderboard of an older schema to the current one.

Every row keeps its values; a column the file lacks is filled from the run's ``record.json`` where
that can be found (``config_hash`` from the record's config; any other from the record's own
leaderboard row), else left empty. ``record_path`` becomes relative to the output root: below
``--out-root`` when given, else from its ``runs/`` or ``multirun/`` folder on (the layout of every
output root). Columns outside the schema are kept after the schema's, with a warning (runs will
not append to the file until they are removed or renamed). The old file is kept beside the new
one (``<name>.bak``) and the new one replaces it atomically. The same row upgrade serves
``step-board --rebuild`` (:func:`upgrade_row`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from step.config.identity import config_hash
from step.fileio import atomic_write_text
from step.results.leaderboard import BOM, BoardError, repair_tail, lock, scan
from step.results.schema import COLUMNS, SCHEMA_VERSION

#: the folders every output root holds runs in (conf/train.yaml: hydra.run.dir, hydra.sweep.dir)
RUN_FOLDERS = ("runs", "multirun")
#: columns computed from a record rather than copied from its row
DERIVED: dict[str, Callable[[dict[str, Any]], Any]] = {
    "config_hash": lambda record: config_hash(record["config"]) if isinstance(record.get("config"), dict) else "",
}


def relative_record_path(value: str, out_root: str | os.PathLike | None = None) -> str:
    """``record_path`` relative to the output root; a relative one is kept, an absolute one is cut at
    ``out_root`` or else at its last ``runs``/``multirun`` folder (unchanged when it has neither)."""
    if not value or not os.path.isabs(value):
        return value
    if out_root is not None:
        try:
            return Path(value).resolve().relative_to(Path(out_root).resolve()).as_posix()
        except ValueError:
            pass
    parts = PurePosixPath(Path(value).as_posix()).parts
    cuts = [i for i, part in enumerate(parts) if part in RUN_FOLDERS]
    return PurePosixPath(*parts[cuts[-1]:]).as_posix() if cuts else value


def find_record(value: str, out_root: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The record a row's ``record_path`` names, when it is on this machine and readable."""
    if not value:
        return None
    candidates = [Path(value)] if os.path.isabs(value) else []
    if out_root is not None:
        candidates.append(Path(out_root) / relative_record_path(value, out_root))
    for path in candidates:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            return record
    return None


def upgrade_row(old: dict[str, Any], record: dict[str, Any] | None, out_root: str | os.PathLike | None,
                record_path: str | None = None) -> dict[str, Any]:
    """``old`` in the current schema: its values kept, missing (or empty derived) columns filled from
    ``record``, ``record_path`` relative, ``schema_version`` current. Columns outside the schema are dropped."""
    new = {c: old.get(c, "") for c in COLUMNS}
    for column in COLUMNS:
        if record is None or (column in old and old[column] not in ("", None)):
            continue
        if column in DERIVED:
            new[column] = DERIVED[column](record)
        elif column not in old:
            new[column] = (record.get("leaderboard_row") or {}).get(column, "")
    new["record_path"] = relative_record_path(record_path or str(old.get("record_path") or ""), out_root)
    new["schema_version"] = SCHEMA_VERSION
    return {k: ("" if v is None else v) for k, v in new.items()}


@dataclass
class Migration:
    path: Path
    backup: Path | None = None
    rows: int = 0
    from_version: str = ""
    added: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    relative: int = 0
    derived: int = 0
    unchanged: bool = False

    def summary(self) -> str:
        if self.unchanged:
            return f"{self.path} is already at schema version {SCHEMA_VERSION} with relative record paths; nothing to do."
        text = (f"migrated {self.rows} rows of {self.path} from schema version {self.from_version or '?'} to "
                f"{SCHEMA_VERSION}: added {', '.join(self.added) or 'no columns'}; record_path made relative in "
                f"{self.relative} rows; {self.derived} rows filled from their record.json")
        if self.extra:
            text += (f"; kept columns outside the schema at the end ({', '.join(self.extra)}): runs will not append "
                     "to this file until they are removed or renamed")
        return text + (f". The old file is {self.backup}." if self.backup else ".")


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    found = scan(path, columns=None)  # raises for rows with another field count than the header
    if found.partial:
        repair_tail(path, found)
    text = path.read_bytes()[: found.complete]
    text = text[len(BOM):] if text.startswith(BOM) else text
    reader = csv.DictReader(io.StringIO(text.decode("utf-8"), newline=""))
    return list(reader.fieldnames or []), [dict(r) for r in reader]


def migrate(path: str | os.PathLike, out_root: str | os.PathLike | None = None, backup: bool = True) -> Migration:
    """Rewrite the leaderboard ``path`` to the current schema (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise BoardError(f"no leaderboard at {path} to migrate.")
    result = Migration(path)
    with lock(path):
        header, rows = _read(path)
        result.rows = len(rows)
        result.added = [c for c in COLUMNS if c not in header]
        result.extra = [c for c in header if c not in COLUMNS]
        versions = sorted({r.get("schema_version", "") for r in rows} - {""})
        result.from_version = ",".join(versions)
        out: list[dict[str, Any]] = []
        for row in rows:
            record = find_record(row.get("record_path", ""), out_root) if result.added or not row.get("config_hash") else None
            new = upgrade_row(row, record, out_root)
            result.relative += new["record_path"] != (row.get("record_path") or "")
            result.derived += record is not None
            out.append({**new, **{c: row.get(c, "") for c in result.extra}})
        changed = (header != COLUMNS or result.relative
                   or any(str(a.get("schema_version")) != str(SCHEMA_VERSION) for a in rows)
                   or any(str(n[c]) != str(o.get(c, "")) for n, o in zip(out, rows) for c in COLUMNS))
        if not changed:
            result.unchanged = True
            return result
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS + result.extra, lineterminator="\n")
        writer.writeheader()
        writer.writerows(out)
        if backup:
            result.backup = path.with_name(path.name + ".bak")
            shutil.copy2(path, result.backup)
        atomic_write_text(path, buf.getvalue())
    return result
