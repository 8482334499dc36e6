"""Shared timing and reporting helpers for the benchmarks in ``tests/benchmarks/``.

Every comparison runs ours and the peer in the same process, round-robin (ours, peer, ours,
peer, ...) after a warm-up, so that load from other processes hits both sides alike; the
reported figure is the median of each side and ``ratio = peer / ours`` for times (how many times
faster we are; > 1 is better) or ``ours / peer`` for throughputs. Results are appended to
``results/bench.csv`` with the columns in :data:`COLUMNS`.
"""

from __future__ import annotations

import csv
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

COLUMNS = ["machine", "torch", "threads", "benchmark", "shapes", "ours", "peer", "ratio", "goal", "status"]
DEFAULT_CSV = Path(__file__).resolve().parents[2] / "results" / "bench.csv"


def machine() -> str:
    """``<cpu model or arch> <n> cpus`` plus the accelerator when one is used."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu} ({os.cpu_count()} cpus)"


def torch_info() -> tuple[str, int]:
    import torch

    return torch.__version__, torch.get_num_threads()


def status(ratio: float | None, goal: float | None) -> str:
    """``ok`` when the ratio reaches its goal, ``REGRESSION`` when it falls below, ``info`` when
    there is no goal (or nothing was measured)."""
    if goal is None or ratio is None:
        return "info"
    return "ok" if ratio >= goal else "REGRESSION"


@dataclass
class Row:
    """One benchmark result; ``ours``/``peer`` are medians in the unit ``unit`` (in ``shapes``)."""

    benchmark: str
    shapes: str
    ours: float | None
    peer: float | None
    ratio: float | None
    goal: float | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict)
    machine: str | None = None  # default: :func:`machine` (the GPU benchmark names its GPU here)

    @property
    def status(self) -> str:
        return status(self.ratio, self.goal)

    def as_csv(self) -> list[str]:
        version, threads = torch_info()

        def fmt(v: float | None) -> str:
            return "" if v is None else f"{v:.6g}"

        return [self.machine or machine(), version, str(threads), self.benchmark, self.shapes, fmt(self.ours), fmt(self.peer),
                fmt(self.ratio), fmt(self.goal), self.status]


def use_runner_cpu_allocator() -> str:
    """Give this benchmark process the CPU allocator setting ``step-train`` uses by default
    (``trainer.cpu_allocator=keep``: freed memory is reused, not returned to the kernel). Ours and
    the peer run in the same process, so both sides get it; returns the mode in effect."""
    from step.engine.allocator import configure_cpu_allocator

    return configure_cpu_allocator("keep")


def time_ratio(benchmark: str, shapes: str, ours_s: float, peer_s: float, goal: float | None, notes: str = "") -> Row:
    """A row for a time comparison: ratio = peer / ours (speed-up of ours)."""
    return Row(benchmark, shapes, ours_s, peer_s, peer_s / ours_s if ours_s > 0 else None, goal, notes)


def alternate(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
              sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Median wall time in seconds of each callable, run round-robin ``repeats`` times after
    ``warmup`` untimed rounds. ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each stop."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if sync is not None:
                sync()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in samples.items()}


def append_csv(rows: list[Row], path: Path | str = DEFAULT_CSV) -> Path:
    """Append ``rows`` to the CSV at ``path`` (writing the header when the file is new)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(row.as_csv())
    return path


def table(rows: list[Row]) -> str:
    """A fixed-width text table of ``rows`` (benchmark, shapes, ours, peer, ratio, goal, status)."""
    head = f"{'benchmark':42s} {'ours':>11s} {'peer':>11s} {'ratio':>7s} {'goal':>6s}  status      shapes / notes"
    lines = [head, "-" * len(head)]

    def num(v: float | None, w: int, p: int = 4) -> str:
        return f"{'-':>{w}s}" if v is None else f"{v:>{w}.{p}g}"

    for r in rows:
        note = r.shapes + (f"  [{r.notes}]" if r.notes else "")
        lines.append(f"{r.benchmark:42s} {num(r.ours, 11)} {num(r.peer, 11)} {num(r.ratio, 7, 3)} "
                     f"{num(r.goal, 6, 3)}  {r.status:10s}  {note}")
    return "\n".join(lines)
