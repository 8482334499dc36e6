"""Run every benchmark, append the rows to results/bench.csv, print one table, flag regressions.

    WANDB_MODE=disabled .venv/bin/python tests/benchmarks/run_all.py [--quick] [--compile] \
        [--csv results/bench.csv] [--only train inference startup neuron energy]

What ``make bench`` runs. Benchmarks (issue 10): neuron (bench_neuron.py, goal >= 3x SpikingJelly
eager and bit-identical), training step and peak memory (bench_train_step.py), inference
throughput (bench_inference.py), energy-counting overhead (bench_energy.py, goal <= 1.2x) and
start-up (bench_startup.py, goal < 3 s). Ours and the peer always run in the same process,
alternating, after a warm-up. The exit status is 1 and a ``REGRESSION`` line is printed for every
ratio below its goal (or a benchmark that failed to run), so CI can gate on it.

``--quick`` uses the small sizes meant for a loaded 2-core CPU (training batch 4, fewer repeats);
the default sizes are the issue's (training batch 32, T = 4).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _timing import DEFAULT_CSV, Row, append_csv, table  # noqa: E402

NEURON_GOAL = 3.0
ENERGY_MAX_OVERHEAD = 1.2


def _run_script(script: str, args: list[str]) -> str:
    out = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{script} exited {out.returncode}: {out.stderr.strip()[-800:]}")
    return out.stdout


def neuron_rows(quick: bool, compile_: bool) -> list[Row]:
    """Parse bench_neuron.py's report (it owns its CSV format; we re-express it as rows)."""
    args = ["--reps", "7" if quick else "20"] + ([] if compile_ else ["--no-compile"])
    return parse_neuron(_run_script("bench_neuron.py", args))


def parse_neuron(text: str) -> list[Row]:
    """Rows from bench_neuron.py's printed report (the goal is on the default path, native-eager)."""
    shape = re.search(r"LIF fwd\+bwd (\[[^\]]*\])", text)
    base = float(re.search(r"spikingjelly-eager\s+([\d.]+) ms", text).group(1)) / 1e3
    rows = []
    paths = re.findall(r"^\s+(native-\w+)\s+([\d.]+) ms\s+speed-up x([\d.]+)\s+bit-identical=(\w+)", text, re.M)
    for name, ms, _, identical in paths:
        ok = identical == "True"
        row = Row(f"neuron/lif-fwd-bwd/{name}", f"{shape.group(1) if shape else ''} float32; seconds",
                  float(ms) / 1e3, base, base / (float(ms) / 1e3), NEURON_GOAL if name == "native-eager" else None,
                  f"bit-identical={identical}")
        if not ok:
            row.extra["failed"] = "not bit-identical to SpikingJelly"
        rows.append(row)
    return rows


def energy_rows(quick: bool) -> list[Row]:
    args = ["--rounds", "3", "--batch-size", "8"] if quick else []
    return parse_energy(_run_script("bench_energy.py", args), " ".join(args) or "defaults")


def parse_energy(text: str, sizes: str = "") -> list[Row]:
    """A row from bench_energy.py's printed report: ours = with counting, peer = without."""
    m = re.search(r"device (\S+): without counting ([\d.]+) s, with counting ([\d.]+) s", text)
    plain, counted = float(m.group(2)), float(m.group(3))
    return [Row("energy/counting-overhead", f"{m.group(1)} eval, {sizes}; seconds",
                counted, plain, plain / counted, 1 / ENERGY_MAX_OVERHEAD,
                f"ours=with counting, peer=without; overhead {counted / plain:.3f}x (goal <= {ENERGY_MAX_OVERHEAD}x)")]


def regressions(rows: list[Row]) -> list[str]:
    """One ``REGRESSION: ...`` line per row below its goal or marked failed."""
    lines = []
    for r in rows:
        if r.status == "REGRESSION":
            lines.append(f"REGRESSION: {r.benchmark}: ratio {r.ratio:.3f} below its goal {r.goal:g}")
        if r.extra.get("failed"):
            lines.append(f"REGRESSION: {r.benchmark}: {r.extra['failed']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a loaded CPU (see the module doc)")
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile paths (cold compiles)")
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--only", nargs="+", default=["neuron", "train", "inference", "energy", "startup"])
    args = ap.parse_args(argv)

    import bench_inference
    import bench_startup
    import bench_train_step

    train = ["--batch", "4", "--repeats", "3"] if args.quick else ["--batch", "32", "--repeats", "5"]
    jobs = {
        "neuron": lambda: neuron_rows(args.quick, args.compile),
        "train": lambda: bench_train_step.main(train + ["--memory"] + (["--compile"] if args.compile else [])),
        "inference": lambda: bench_inference.main(["--batch", "4" if args.quick else "16",
                                                   "--repeats", "3" if args.quick else "5"]),
        "energy": lambda: energy_rows(args.quick),
        "startup": lambda: bench_startup.main(["--repeats", "3"]),
    }
    rows: list[Row] = []
    failures: list[str] = []
    for name in args.only:
        print(f"== {name}", flush=True)
        try:
            rows += jobs[name]()
        except Exception as err:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            failures.append(f"REGRESSION: benchmark '{name}' failed to run: {err}")
    if rows:
        append_csv(rows, args.csv)
    print()
    print(table(rows))
    print(f"\nappended {len(rows)} rows to {args.csv}")
    failures += regressions(rows)
    for line in failures:
        print(line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
