"""Mutation score per core module with mutmut (``make mutate``, ``make mutate MODULE=attention``).

For one module: copy the project into ``build/mutation/<module>/`` with a ``[tool.mutmut]`` section
naming the module's source files and the test files that cover them, run ``mutmut run`` there
(forkserver isolation: torch is not fork-safe, and with plain fork every mutant hangs into a
timeout), read every mutant's status, and write one row per module to ``results/mutation.csv``::

    module, mutants, killed, survived, equivalent, score, seconds, commit, date

``killed`` counts mutants a test failed on (timeouts and crashes included); ``equivalent`` the
survivors listed in ``tests/mutation/equivalent.txt`` with the reason they cannot be killed (they
behave exactly like the original); ``score`` = killed / (mutants - equivalent), in percent. The
survivors that are not listed, with their diffs, go to ``build/mutation/<module>/survivors.md``.

Not part of ``make test``: one module takes minutes to hours on 2 cores (see results/mutation.csv).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CSV_COLUMNS = ["module", "mutants", "killed", "survived", "equivalent", "score", "seconds", "commit", "date"]
MUTMUT = "mutmut==3.8.1"

#: module -> (source files mutated, test files run against each mutant)
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "ssa": (["step/attention/ssa.py"], ["tests/test_attention_ssa.py", "tests/test_spikformer.py"]),
    "attention": (["step/attention/*.py"],
                  ["tests/test_attention_ssa.py", "tests/test_attention_sdsa.py", "tests/test_attention_qk_semm_bipolar.py",
                   "tests/test_spikformer.py", "tests/test_models_qkformer_semm_twins.py"]),
    "neurons": (["step/neurons/*.py", "step/neurons/backends/*.py", "step/native/__init__.py"],
                ["tests/test_neurons.py", "tests/test_native_lif.py", "tests/test_backends.py", "tests/test_fast_twins.py",
                 "tests/test_knob_reach.py", "tests/test_energy_reduce.py"]),
    "energy": (["step/energy/*.py"],
               ["tests/test_energy_meter.py", "tests/test_energy_reduce.py", "tests/test_energy_vectors.py",
                "tests/test_energy_cli.py", "tests/test_knob_effects_energy.py"]),
    "engine": (["step/engine/loop.py", "step/engine/run.py", "step/engine/builders.py", "step/engine/checkpoint.py"],
               ["tests/test_runner.py", "tests/test_resume.py", "tests/test_failures.py", "tests/test_precision.py",
                "tests/test_claims.py", "tests/test_knob_effects_trainer.py", "tests/test_knob_effects_optim.py",
                "tests/test_knob_effects_sched.py", "tests/test_knob_effects_dataset.py", "tests/test_knob_effects_task.py"]),
    "results": (["step/results/leaderboard.py", "step/results/schema.py"],
                ["tests/test_leaderboard_lock.py", "tests/test_runner.py", "tests/test_board.py"]),
}
#: what ``make mutate`` without MODULE runs (``ssa`` is inside ``attention``)
CORE = ["attention", "neurons", "energy", "engine", "results"]
DETECTED = {"killed", "timeout", "segfault", "caught by type check"}


def equivalents() -> dict[str, str]:
    """Mutant name -> why it behaves exactly like the original (``tests/mutation/equivalent.txt``)."""
    out = {}
    for line in (HERE / "equivalent.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, reason = line.partition("\t")
            out[name.strip()] = reason.strip()
    return out


def ensure_mutmut() -> Path:
    exe = Path(sys.executable).with_name("mutmut")
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", MUTMUT], check=True)
    return exe


def workspace(module: str) -> Path:
    """A copy of the project in build/mutation/<module>/ whose pyproject names what to mutate."""
    sources, tests = MODULES[module]
    ws = ROOT / "build" / "mutation" / module
    if ws.exists():
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "benchmarks", "mutation")
    for folder in ("step", "tests", "conf", "experiments", "hydra_plugins"):
        shutil.copytree(ROOT / folder, ws / folder, ignore=ignore)
    quoted = lambda items: ", ".join(f'"{i}"' for i in items)  # noqa: E731
    config = (ROOT / "pyproject.toml").read_text() + f"""
[tool.mutmut]
source_paths = ["step/"]
only_mutate = [{quoted(sources)}]
pytest_add_cli_args_test_selection = [{quoted(tests)}]
pytest_add_cli_args = ["-p", "no:cacheprovider"]
also_copy = ["conf/", "experiments/", "hydra_plugins/"]
process_isolation = "forkserver"
"""
    (ws / "pyproject.toml").write_text(config)
    return ws


def statuses(exe: Path, ws: Path, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([str(exe), "results", "--all", "true"], cwd=ws, env=env, capture_output=True, text=True)
    found = {}
    for line in out.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status
    return found


def commit() -> str:
    from step.results.record import git_commit

    return git_commit(ROOT)


def write_row(row: dict[str, object], path: Path) -> None:
    """One row per module: a module's new score replaces its previous row."""
    rows = []
    if path.exists():
        with path.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["module"] != row["module"]]
    rows.append({k: str(v) for k, v in row.items()})
    rows.sort(key=lambda r: r["module"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def mutate(module: str, jobs: int, out_csv: Path) -> dict[str, object]:
    exe = ensure_mutmut()
    ws = workspace(module)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the mutated copy, not the checkout
    env.update(WANDB_MODE="disabled", STEP_TEST_DATA=str(ROOT / "build" / "mutation" / "data"))
    started = time.time()
    proc = subprocess.run([str(exe), "run", "--max-children", str(jobs)], cwd=ws, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = round(time.time() - started)
    if proc.returncode != 0:
        raise SystemExit(f"mutate: mutmut run failed for {module} (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    found = statuses(exe, ws, env)
    listed = equivalents()
    killed = sum(s in DETECTED for s in found.values())
    equivalent = sorted(n for n, s in found.items() if s not in DETECTED and n in listed)
    survivors = sorted(n for n, s in found.items() if s not in DETECTED and n not in listed)
    stale = sorted(n for n in listed if n in found and found[n] in DETECTED)
    scored = len(found) - len(equivalent)
    row = {"module": module, "mutants": len(found), "killed": killed, "survived": len(survivors),
           "equivalent": len(equivalent), "score": f"{100.0 * killed / scored:.1f}" if scored else "",
           "seconds": seconds, "commit": commit(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
    report = [f"# Surviving mutants of {module} ({len(survivors)})", ""]
    for name in survivors:
        diff = subprocess.run([str(exe), "show", name], cwd=ws, env=env, capture_output=True, text=True).stdout
        report += [f"## {name}: {found[name]}", "", "```diff", diff.strip(), "```", ""]
    (ws / "survivors.md").write_text("\n".join(report))
    write_row(row, out_csv)
    print(f"{module}: {row['mutants']} mutants, {killed} killed, {len(survivors)} survived, "
          f"{len(equivalent)} equivalent -> score {row['score']}% in {seconds} s")
    if survivors:
        print(f"  survivors and their diffs: {ws / 'survivors.md'}")
    if stale:
        print(f"  listed as equivalent but killed (remove from tests/mutation/equivalent.txt): {', '.join(stale)}")
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", choices=sorted(MODULES), action="append",
                        help="module to mutate (repeatable); default: every core module")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATE_JOBS", "2")),
                        help="mutants tested in parallel (default 2, or $MUTATE_JOBS)")
    parser.add_argument("--csv", type=Path, default=ROOT / "results" / "mutation.csv")
    args = parser.parse_args(argv)
    for module in args.module or CORE:
        mutate(module, args.jobs, args.csv)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
