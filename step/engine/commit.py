"""What a run leaves behind, in an order that a kill at any moment cannot make lie.

A finished run writes, in this order (rank 0 only, signals held off):

1. ``last.pt`` of the last epoch (sidecar ``running``) right after training, before the final
   evaluation, so a kill during that evaluation resumes without training again;
2. ``model.pt``, 3. ``record.json`` with ``status=ok``, 4. its leaderboard row (keyed by
   ``run_id``, appended once), 5. the sidecar ``last.json`` with ``status=ok``.

A kill before 3 leaves an unfinished run that ``trainer.resume=auto`` continues (re-evaluating
only); a kill between 3 and 5 leaves a finished run whose row ``resume=auto`` or
``step-board --rebuild`` adds if it is missing. ``ok`` in the sidecar is written last.

A run that stops (error, NaN, Ctrl-C / SIGTERM, a full disk) goes through :meth:`RunFiles.stop`:
the newest good state for an interrupt, then the record with its status and error and a row. Each
of these is tried on its own, and a record the run folder cannot take is written next to the
leaderboard (:func:`step.engine.recording.write_record_or_fallback`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from step.engine import checkpoint
from step.engine.recording import finish
from step.engine.signals import shielded
from step.errors import DivergedError, OutputError


@dataclass
class RunFiles:
    """The files of one run: its newest snapshot, what was saved, and how the run ends (rank 0 writes)."""

    cfg: DictConfig
    record: dict[str, Any]
    started: float
    run_dir: Path
    is_main: bool
    logger: Any = None
    snapshot: dict[str, Any] | None = None
    saved_epoch: int = -1
    recorded_ok: bool = False

    def save_state(self, status: str = "running", defer: bool = True) -> None:
        """Write the newest snapshot to ``last.pt`` unless that epoch is saved already."""
        if not self.is_main or self.snapshot is None or self.snapshot["epoch"] <= self.saved_epoch:
            return
        with shielded(defer=defer):
            checkpoint.save(self.run_dir, self.snapshot, status)
        self.saved_epoch = self.snapshot["epoch"]

    def commit(self, model, config: dict[str, Any]) -> None:
        """Steps 2-5 of a finished run (see the module docstring)."""
        if not self.is_main:
            return
        with shielded():
            self.save_state(defer=False)
            path = checkpoint.save_model(self.run_dir, model, config, self.record["epochs_done"], self.record["run_id"])
            self.record.update(checkpoint=str(path), state=str(self.run_dir / checkpoint.STATE_FILE))
            self.record["status"] = "ok"
            self._finish(ok=True)
            checkpoint.write_sidecar(self.run_dir, None, "ok")

    def _finish(self, ok: bool = False) -> None:
        def recorded() -> None:  # record.json says ok from here on: a failing append does not undo that
            self.recorded_ok = ok

        finish(self.cfg, self.record, self.started, self.logger, on_recorded=recorded)

    def stop(self, err: BaseException) -> None:
        """Leave a record and a row saying how the run ended; never raises (the caller re-raises ``err``)."""
        if self.recorded_ok:  # finished: only the row (or the sidecar) is missing, and err says so
            return
        if isinstance(err, KeyboardInterrupt):
            epoch = self.snapshot["epoch"] if self.snapshot else 0
            status, error = "interrupted", ("interrupted by the user or a signal; continue with "
                                            f"trainer.resume=auto (from epoch {epoch})")
        elif isinstance(err, DivergedError):
            status, error = "diverged", str(err)
        else:
            status, error = "failed", f"{type(err).__name__}: {err}"
        self.record.update(status=status, error=error)
        if not self.is_main:
            return
        with shielded():
            try:
                saved = self.saved_epoch
                if status == "interrupted":
                    self.save_state(status, defer=False)
                if self.saved_epoch >= 0 and self.saved_epoch == saved:  # nothing new saved: say how it ended
                    checkpoint.write_sidecar(self.run_dir, None, status)
            except OSError as exc:
                self.record["error"] += f" (the checkpoint could not be saved: {exc.strerror or exc})"
            if self.saved_epoch >= 0:
                self.record["state"] = str(self.run_dir / checkpoint.STATE_FILE)
            try:
                self._finish()
            except Exception as exc:  # noqa: BLE001 - report, then let the run's own error through
                print(f"step: warning: the {status} run's record or row could not be written: {exc}",
                      file=sys.stderr, flush=True)

    def reported(self, err: BaseException) -> BaseException:
        """The error the user sees: a file-system error (a full or read-only disk) becomes one message
        saying what was kept; anything else is ``err`` itself."""
        if not isinstance(err, OSError):
            return err
        if self.recorded_ok:
            what = f"it finished: its record {self.record['record_path']} says ok"
        else:
            what = f"it is recorded as {self.record.get('status')} in {self.record['record_path']} and on the leaderboard"
        new = OutputError(f"the run stopped writing its files ({err}); {what}.")
        new.__cause__ = err
        return new
