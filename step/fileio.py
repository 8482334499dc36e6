"""Files written whole or not at all, and the lock that keeps one process per run folder.

A file is written under a temporary name in the same folder, then renamed with one ``os.replace``.
Temporary files are named ``.<name>.tmp-<pid>``; one left behind by a killed process is removed by
:func:`remove_stale_tmp` (the run folder's next holder of its lock, and ``step-board --rebuild``).
A run folder's lock is ``<run_dir>/.step.lock`` (:func:`folder_lock`, never waited for).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from filelock import FileLock, Timeout

TMP_MARK = ".tmp-"
LOCK_FILE = ".step.lock"


def folder_lock(run_dir: str | os.PathLike) -> FileLock:
    return FileLock(str(Path(run_dir) / LOCK_FILE), timeout=0)


def is_locked(run_dir: str | os.PathLike) -> bool:
    """True when a live process holds the run folder's lock (a folder without one is free)."""
    if not (Path(run_dir) / LOCK_FILE).exists():
        return False
    lock = folder_lock(run_dir)
    try:
        lock.acquire()
    except Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False


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
