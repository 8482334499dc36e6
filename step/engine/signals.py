"""Turning SIGTERM into the same clean stop as Ctrl-C, and shielding saves from both.

Clusters send SIGTERM before pre-empting or cancelling a job (SLURM: ``--signal`` or the grace
period of ``scancel``; Kubernetes: the pod's termination grace period). Inside
:func:`graceful_stop` a SIGTERM raises :class:`KeyboardInterrupt` in the main thread, so the
runner's one interrupt path saves a checkpoint and writes the record with ``status=interrupted``.
:func:`shielded` holds off SIGINT/SIGTERM while a checkpoint or record is written.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


@contextlib.contextmanager
def graceful_stop() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in here (a no-op outside the main thread)."""
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def shielded(defer: bool = False) -> Iterator[None]:
    """Hold off SIGINT and SIGTERM while a checkpoint or record is being written.

    With ``defer=True`` a signal that arrives meanwhile raises KeyboardInterrupt once the block is
    done (a periodic checkpoint during training: the stop request is not lost); otherwise it is
    dropped (the run is already stopping or finishing).
    """
    if not _in_main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if defer and pending:
        raise KeyboardInterrupt(f"received {signal.Signals(pending[0]).name}")


#: signals that arrived while ``step-train`` was setting up (before its job started)
_PENDING: list[int] = []


def hold_until_job() -> None:
    """Keep SIGINT/SIGTERM until :func:`start_job`: a stop while Hydra makes the run folder and writes
    its ``.hydra`` files is taken where the job can still remove that folder again."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda signum, frame: _PENDING.append(signum))


def start_job() -> None:
    """From here SIGTERM (and SIGINT) raise KeyboardInterrupt; one that came meanwhile is raised now."""
    signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if _PENDING:
        raise KeyboardInterrupt(f"received {signal.Signals(_PENDING.pop(0)).name}")
