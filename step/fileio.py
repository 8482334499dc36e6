"""Files written whole or not at all: a temporary name in the same folder, then one ``os.replace``.

Temporary files are named ``.<name>.tmp-<pid>``; one left behind by a killed process is removed by
:func:`remove_stale_tmp` (the run folder's next holder of its lock, and ``step-board --rebuild``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

TMP_MARK = ".tmp-"


def tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)``, then rename ``tmp`` to ``path``; on any error the temporary file is removed
    and ``path`` keeps its old content."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp(folder: str | os.PathLike) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>`` files in ``folder`` whose process is gone; return what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.glob(f".*{TMP_MARK}*"):
        pid = path.name.rsplit(TMP_MARK, 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
