"""Mutation score per core module with mutmut (``make mutate``, ``make mutate MODULE=sdsa``).

For one module: copy the project into ``build/mutation/<module>/`` with a ``[tool.mutmut]`` section
naming the module's source files and the test files that cover them, run ``mutmut run`` there
(forkserver isolation: torch is not fork-safe, and with plain fork every mutant hangs into a
timeout; one OpenMP thread, for the same reason), read every mutant's status, and write one row per
module to ``results/mutation.csv``::

    module, mutants, killed, survived, equivalent, score, seconds, commit, date

``killed`` counts mutants a test failed on (timeouts and crashes included); ``equivalent`` the
survivors listed in ``tests/mutation/equivalent.txt`` with the reason they cannot be killed (they
behave exactly like the original); ``score`` = killed / (mutants - equivalent), in percent. The
survivors that are not listed, with their diffs, go to ``build/mutation/<module>/survivors.md``.
Each mutant's tests run fastest first (``fastest_first.py``), so a mutant a unit test kills does
not wait for a training run.

After tests are added for the survivors, ``--again`` (``make mutate MODULE=x AGAIN=1``) re-tests
only the survivors and timeouts of the last run with the tests as they are now (the module's code
must be unchanged); ``seconds`` then adds both runs and ``commit`` is the checkout of the re-test.

Not part of ``make test``: one module takes minutes to an hour on 2 cores (see results/mutation.csv).
"""

from __future__ import annotations

import argparse
import csv
import filecmp
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

ENERGY_TESTS = ["tests/test_energy_meter.py", "tests/test_energy_reduce.py", "tests/test_energy_vectors.py",
                "tests/test_energy_exact.py", "tests/test_energy_cli.py", "tests/test_knob_effects_energy.py"]
ENGINE_TESTS = ["tests/test_runner.py", "tests/test_resume.py", "tests/test_failures.py", "tests/test_precision.py",
                "tests/test_claims.py", "tests/test_knob_effects_trainer.py", "tests/test_knob_effects_optim.py",
                "tests/test_knob_effects_sched.py", "tests/test_knob_effects_dataset.py",
                "tests/test_knob_effects_task.py"]
#: module -> (source files mutated, test files run against each mutant)
MODULES: dict[str, tuple[list[str], list[str]]] = {
    # attention
    "ssa": (["step/attention/ssa.py"], ["tests/test_attention_ssa.py", "tests/test_spikformer.py"]),
    "sdsa": (["step/attention/sdsa.py"],
             ["tests/test_attention_sdsa.py", "tests/test_erode.py", "tests/test_models_sdt.py",
              "tests/test_ablation_contract.py"]),
    "qk-bipolar-semm": (["step/attention/qk.py", "step/attention/bipolar.py", "step/attention/semm.py"],
                        ["tests/test_attention_qk_semm_bipolar.py", "tests/test_ablation_contract.py"]),
    # neurons and kernels
    "lif": (["step/neurons/lif.py", "step/neurons/base.py"],
            ["tests/test_neurons.py", "tests/test_native_lif.py", "tests/test_lif_op.py", "tests/test_fast_twins.py"]),
    "kernels": (["step/neurons/kernels.py", "step/neurons/lif_op.py"],
                ["tests/test_lif_op.py", "tests/test_native_lif.py", "tests/test_neurons.py", "tests/test_fast_twins.py"]),
    # energy counters and report
    "energy-counters": (["step/energy/counters.py", "step/energy/activity.py", "step/energy/tally.py"], ENERGY_TESTS),
    "energy-report": (["step/energy/report.py"],
                      ["tests/test_energy_report.py", "tests/test_energy_table.py", *ENERGY_TESTS]),
    # engine
    "checkpoint": (["step/engine/checkpoint.py"],
                   ["tests/test_checkpoint_unit.py", "tests/test_safe_loading.py", "tests/test_resume.py",
                    "tests/test_commit_order.py"]),
    "loop": (["step/engine/loop.py"], ENGINE_TESTS),
    "run": (["step/engine/run.py"], ENGINE_TESTS),
    "builders": (["step/engine/builders.py"], ENGINE_TESTS),
    # results
    "results": (["step/results/leaderboard.py", "step/results/schema.py"],
                ["tests/test_leaderboard_lock.py", "tests/test_leaderboard_messages.py", "tests/test_board.py",
                 "tests/test_board_file.py"]),
}
#: what ``make mutate`` without MODULE runs, the core modules of issue 21, smallest test cost first
CORE = ["results", "energy-report", "checkpoint", "ssa", "sdsa", "qk-bipolar-semm", "lif", "kernels",
        "energy-counters", "loop", "builders", "run"]
#: what a test may read besides the code: configs, docs it checks claims against, the shipped boards
FOLDERS = ("step", "tests", "conf", "experiments", "hydra_plugins", "docs", "results")
FILES = ["README.md", "Makefile"]
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
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, ws / folder, ignore=ignore)
    for name in FILES:
        shutil.copy2(ROOT / name, ws / name)
    shutil.copy2(HERE / "fastest_first.py", ws / "conftest.py")
    quoted = lambda items: ", ".join(f'"{i}"' for i in items)  # noqa: E731
    config = (ROOT / "pyproject.toml").read_text() + f"""
[tool.mutmut]
source_paths = ["step/"]
only_mutate = [{quoted(sources)}]
pytest_add_cli_args_test_selection = [{quoted(tests)}]
pytest_add_cli_args = ["-p", "no:cacheprovider"]
also_copy = [{quoted([f + "/" for f in FOLDERS if f not in ("step", "tests")] + FILES + ["conftest.py"])}]
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
    """HEAD of the checkout being copied (``+dirty`` when tracked files other than the score file differ)."""
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if sha.returncode != 0:
        return "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":(exclude)results/mutation.csv"], cwd=ROOT, capture_output=True, text=True)
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


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


def _undetected(exe: Path, ws: Path, env: dict[str, str]) -> list[str]:
    """What AGAIN re-tests: the survivors, and the timeouts (a hang may be the machine's, not the mutant's)."""
    return sorted(n for n, s in statuses(exe, ws, env).items() if s not in DETECTED or s == "timeout")


def mutate(module: str, jobs: int, out_csv: Path, again: bool = False) -> dict[str, object]:
    """Mutate ``module`` from scratch; with ``again``, re-test only the mutants that no test detected
    in the last run of this workspace (after tests were added), with the current tests."""
    exe = ensure_mutmut()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the mutated copy, not the checkout
    env.update(WANDB_MODE="disabled", STEP_TEST_DATA=str(ROOT / "build" / "mutation" / "data"),
               # one thread: every mutant's process is forked from one server, and a fork of a process whose
               # OpenMP pool has started hangs in the next parallel region (a conv): that was a "timeout"
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    ws = ROOT / "build" / "mutation" / module
    spent = ws / "seconds.txt"
    copied = commit()  # the code and tests the workspace gets
    if again and spent.exists():
        changed = [f for pattern in MODULES[module][0] for f in sorted(ROOT.glob(pattern))
                   if not filecmp.cmp(f, ws / f.relative_to(ROOT), shallow=False)]
        if changed:
            raise SystemExit(f"mutate: {', '.join(str(f.relative_to(ROOT)) for f in changed)} changed since the last "
                             f"run of {module}; its mutants are of the old code. Run it again without --again.")
        names = _undetected(exe, ws, env)
        for target in (ws / "tests", ws / "mutants" / "tests"):  # the tests as they are now; the code is unchanged
            shutil.rmtree(target)
            shutil.copytree(ROOT / "tests", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc",
                                                                                  "benchmarks", "mutation"))
        command = [str(exe), "run", "--max-children", str(jobs), *names]
        before = int(spent.read_text())
    else:
        ws = workspace(module)
        names, command, before = None, [str(exe), "run", "--max-children", str(jobs)], 0
    started = time.time()
    proc = subprocess.run(command, cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = before + round(time.time() - started)
    spent.write_text(str(seconds))
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
           "seconds": seconds, "commit": copied, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
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
    parser.add_argument("--again", action="store_true",
                        help="re-test only the mutants the last run left undetected, with the tests as they are now "
                             "(after adding tests for survivors; the seconds column adds both runs)")
    args = parser.parse_args(argv)
    for module in args.module or CORE:
        mutate(module, args.jobs, args.csv, again=args.again)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
