"""Which run folder a run writes to, and that only one process writes to it.

- ``trainer.resume=never``: a new folder. ``auto``: the latest unfinished run of the same config
  under ``paths.output_root`` (:func:`step.engine.checkpoint.find_latest`), else a new folder.
  ``<path>``: that ``last.pt`` or run folder; a finished run is refused (:func:`checkpoint.load`).
- A run whose record says ``ok`` but whose sidecar does not (killed between its record and its
  sidecar) is *settled* when ``auto`` meets it: its row is appended if missing (rows are keyed by
  ``run_id``) and its sidecar set to ``ok``; it is never trained again.
- :func:`hold` takes the run folder's lock (``<run_dir>/.step.lock``, not waiting): a second
  process on the same folder stops with a message instead of training beside the first. The
  holder removes temporary files a killed process left in the folder.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Iterator

from filelock import Timeout
from omegaconf import DictConfig

from step.engine import checkpoint, distributed
from step.errors import StepError
from step.fileio import LOCK_FILE, folder_lock, is_locked, remove_stale_tmp

class RunInUseError(StepError):
    """Another process holds the run folder's lock."""


@contextlib.contextmanager
def hold(run_dir: Path, info: distributed.DistInfo, output_root: str | Path | None = None) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the run (rank 0; other ranks write nothing there). A folder made
    here and left empty (the run stopped before writing anything) is removed again, up to ``output_root``."""
    if not info.is_main:
        yield
        return
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = folder_lock(run_dir)
    try:
        lock.acquire()
    except Timeout:
        raise RunInUseError(
            f"the run folder {run_dir} is in use by another step-train process (it holds {run_dir / LOCK_FILE}); "
            "two processes must not train one run. Wait for it to finish, or start a new run with "
            "trainer.resume=never.") from None
    try:
        for stale in remove_stale_tmp(run_dir):
            print(f"step: removed {stale}, left by a killed process.", file=sys.stderr, flush=True)
        yield
    finally:
        lock.release()
        if created:  # a folder this run made and left empty (it stopped before writing) goes again
            remove_unused_run_dir(run_dir, output_root)


def settle(run_dir: Path) -> bool:
    """Finish the commit of a run killed after its ``ok`` record: append its row if missing, mark
    its sidecar ``ok``. True when the folder holds such a finished run."""
    from step.results.leaderboard import BoardError, append_row

    try:
        record = json.loads((Path(run_dir) / checkpoint.RECORD_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("status") != "ok" or is_locked(run_dir):
        return False
    row, board = record.get("leaderboard_row"), record.get("leaderboard")
    if row and board:
        try:
            if append_row(board, row):
                print(f"step: added the missing leaderboard row of the finished run {run_dir} to {board}.",
                      file=sys.stderr, flush=True)
        except (BoardError, ValueError) as err:
            print(f"step: warning: could not add the row of the finished run {run_dir}: {err}", file=sys.stderr)
    if checkpoint.read_sidecar(run_dir).get("status") != "ok":
        with contextlib.suppress(OSError):
            checkpoint.write_sidecar(run_dir, None, "ok")
    return True


def resume_path(cfg: DictConfig, resolved: dict[str, Any], info: distributed.DistInfo) -> Path | None:
    """Where this run continues from: ``never`` -> None, ``auto`` -> the latest unfinished run of
    the same config under ``paths.output_root`` (None when there is none), else the given path.
    Rank 0 decides and every rank gets its answer."""
    choice = str(cfg.trainer.resume)
    found: Path | None = None
    if info.is_main and choice == "auto":
        found = checkpoint.find_latest(cfg.paths.output_root, resolved, settle=settle)
        print(f"step: resuming from {found}" if found else "step: trainer.resume=auto found no unfinished "
              "run of this config; starting fresh.", flush=True)
    elif choice not in ("never", "auto"):
        found = Path(choice)
        folder = found if found.is_dir() else found.parent
        if info.is_main and checkpoint.read_status(folder) == "ok":
            settle(folder)  # a finished run is refused by checkpoint.load; its row is made sure of first
    found = distributed.broadcast_object(str(found) if found else None)
    if found is None:
        return None
    path = Path(found)
    return path / checkpoint.STATE_FILE if path.is_dir() else path


#: what a run folder holds when nothing of the run was written (Hydra's config copy and log, the lock)
_SCAFFOLD = {".hydra", LOCK_FILE}


def remove_unused_run_dir(run_dir: str | Path, stop_at: str | Path | None = None) -> bool:
    """Remove ``run_dir`` when it holds nothing but Hydra's scaffolding and the lock (a run refused or
    stopped before it wrote anything), then its parents up to ``stop_at`` while they are empty."""
    import shutil

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return False
    entries = list(run_dir.iterdir())
    if any(e.name not in _SCAFFOLD and not (e.is_file() and e.suffix == ".log") for e in entries):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    parent, stop = run_dir.parent, Path(stop_at).resolve() if stop_at else None
    for _ in range(3):  # runs/<date>/, multirun/<date>/<sweep>/
        if stop is not None and parent.resolve() == stop:
            break
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break
        parent = parent.parent
    return True
