"""Start-up time: ``import step``, ``step-train --help`` and composing a config (goal: < 3 s each).

    WANDB_MODE=disabled .venv/bin/python tests/benchmarks/bench_startup.py [--repeats 3] [--csv results/bench.csv]

Each command runs in a fresh interpreter (median of ``--repeats``). There is no peer: the row's
ratio is 3 s / measured time, so it falls below its goal of 1 exactly when start-up exceeds 3 s.
``python -X importtime -c "import step"`` shows where the import time goes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import Row, append_csv, table  # noqa: E402

LIMIT_S = 3.0
ROOT = Path(__file__).resolve().parents[2]


def commands() -> dict[str, list[str]]:
    py = sys.executable
    train = Path(py).with_name("step-train")
    help_cmd = [str(train), "--help"] if train.exists() else [py, "-c", "import sys; sys.argv = ['step-train', '--help']; "
                                                               "from step.cli import train_main; train_main()"]
    return {
        "import step": [py, "-c", "import step"],
        "step-train --help": help_cmd,
        "compose config": [py, "-c", "from step.config.compose import compose; compose(['model=spikformer-4-384'])"],
    }


def wall(cmd: list[str]) -> float:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    baseline = statistics.median(wall([sys.executable, "-c", "pass"]) for _ in range(args.repeats))
    rows = []
    for label, cmd in commands().items():
        t = statistics.median(wall(cmd) for _ in range(args.repeats))
        rows.append(Row(f"startup/{label}", f"fresh interpreter, median of {args.repeats}; seconds "
                        f"(bare python: {baseline:.2f} s)", t, None, LIMIT_S / t, 1.0,
                        f"ratio = {LIMIT_S:g} s / measured"))
        print(table(rows[-1:]), flush=True)
    if args.csv:
        append_csv(rows, args.csv)
    return rows


if __name__ == "__main__":
    main()
