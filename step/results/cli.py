"""``step-board``: the leaderboard as tables and plots, from the CSV that runs append to.

    step-board                                   # results/leaderboard.csv -> results/leaderboard.{md,html}, figures
    step-board --by model attention --query "dataset == 'digits' and T == 4"
    step-board --compare-reference               # our numbers beside results/reference.csv
    step-board --build-reference                 # rebuild results/reference.csv from experiments/
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from step.errors import StepError
from step.results.aggregate import DEFAULT_BY


def results_dir() -> Path:
    from step.config.paths import project_root

    return Path(os.environ.get("STEP_RESULTS") or project_root() / "results")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="step-board", description="Aggregate, render and plot the STEP leaderboard.")
    p.add_argument("--csv", nargs="+", type=Path, help="leaderboard CSV file(s) (default: $STEP_RESULTS/leaderboard.csv)")
    p.add_argument("--by", nargs="+", default=DEFAULT_BY, help="group-by columns (seeds inside a group are aggregated)")
    p.add_argument("--query", help="pandas DataFrame.query filter, e.g. \"dataset == 'digits' and T >= 2\"")
    p.add_argument("--all-status", action="store_true", help="keep failed/diverged rows (default: status == ok)")
    p.add_argument("--out", type=Path, help="output folder (default: the results folder)")
    p.add_argument("--no-html", action="store_true", help="skip leaderboard.html")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--compare-reference", nargs="?", const="", metavar="CSV",
                   help="add paper numbers beside ours (default CSV: results/reference.csv)")
    p.add_argument("--build-reference", action="store_true",
                   help="rebuild results/reference.csv from the experiments' reference blocks, then exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    res = results_dir()
    try:
        if args.build_reference:
            from step.results.reference import build_reference

            target = (args.out or res) / "reference.csv"
            n, failed = build_reference(target)
            print(f"wrote {n} paper rows to {target}")
            for name, err in failed.items():
                print(f"step-board: skipped experiment {name}: {err}", file=sys.stderr)
            return 1 if failed else 0
        from step.results.board import build_board

        csvs = args.csv or [res / "leaderboard.csv"]
        missing = [str(c) for c in csvs if not Path(c).exists()]
        if missing:
            raise StepError(f"no leaderboard at {', '.join(missing)}; run step-train first (rows are appended "
                            "there) or pass --csv PATH.")
        reference = None
        if args.compare_reference is not None:
            reference = Path(args.compare_reference) if args.compare_reference else res / "reference.csv"
            if not reference.exists():
                raise StepError(f"no reference table at {reference}; build it with `step-board --build-reference`.")
        board = build_board(csvs, by=args.by, query=args.query, status=None if args.all_status else "ok",
                            out_dir=args.out or res, html=not args.no_html, figures=not args.no_plots,
                            reference=reference)
    except StepError as err:
        print(f"step-board: error: {err}", file=sys.stderr)
        return 2
    print(board.markdown, end="")
    if board.comparison is not None:
        from step.results.render import to_markdown

        print("\nAgainst the papers:\n")
        print(to_markdown(board.comparison), end="")
    for f in board.files:
        print(f"wrote {f}", file=sys.stderr)
    return 0


def board_main() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    board_main()
