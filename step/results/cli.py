"""``step-board``: the leaderboard as tables and plots, from the CSV that runs append to.

    step-board                                   # results/leaderboard.csv -> results/leaderboard.{md,html}, figures
    step-board --by model attention --query "dataset == 'digits' and T == 4"
    step-board --compare-reference               # our numbers beside results/reference.csv
    step-board --build-reference                 # rebuild results/reference.csv from experiments/
    step-board --orderings                       # the paper orderings table (docs/ablations.md)
    step-board --supersede suite=attention scale=cpu --since 2026-12-03T09:00:00+00:00 --because "re-run"
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
    p.add_argument("--orderings", action="store_true",
                   help="test the papers' orderings on the rows (Welch's t-test over seeds); print the table, "
                        "write orderings.md to the output folder, then exit")
    p.add_argument("--supersede", nargs="+", metavar="TOKEN",
                   help="move the rows whose command holds every TOKEN and that finished before --since to "
                        "superseded.csv (refused unless an ok row of the re-run exists), then exit")
    p.add_argument("--since", help="with --supersede: the re-run's start, ISO 8601 UTC (date -u +%%Y-%%m-%%dT%%H:%%M:%%S+00:00)")
    p.add_argument("--because", default="superseded by a re-run of the same command",
                   help="with --supersede: the reason kept in superseded.csv")
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
        if args.supersede:
            from step.results.supersede import supersede

            if not args.since:
                raise StepError("--supersede needs --since (when the re-run started).")
            board = (args.csv or [res / "leaderboard.csv"])[0]
            archive = (args.out or Path(board).parent) / "superseded.csv"
            moved = supersede(board, archive, args.supersede, args.since, args.because)
            print(f"moved {moved} row(s) of `{' '.join(args.supersede)}` from {board} to {archive}")
            return 0
        from step.results.board import build_board

        csvs = args.csv or [res / "leaderboard.csv"]
        missing = [str(c) for c in csvs if not Path(c).exists()]
        if missing:
            raise StepError(f"no leaderboard at {', '.join(missing)}; run step-train first (rows are appended "
                            "there) or pass --csv PATH.")
        if args.orderings:
            from step.results.aggregate import read_rows
            from step.results.orderings import evaluate, render

            table = evaluate(read_rows([str(c) for c in csvs]))
            source = " + ".join(f"`{Path(c).parent.name}/{Path(c).name}`" for c in csvs)
            out = args.out or res
            out.mkdir(parents=True, exist_ok=True)
            (out / "orderings.md").write_text(render(table, source))
            print(render(table, source, short=True), end="")
            print(f"wrote {out / 'orderings.md'}", file=sys.stderr)
            return 0
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
