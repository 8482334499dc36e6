"""``step-board``: the leaderboard as tables and plots, from the CSV that runs append to.

    step-board                                   # the board runs append to -> leaderboard.{md,html}, figures beside it
    step-board --curated                         # results/leaderboard.csv (the curated board) -> results/
    step-board --by model attention --query "dataset == 'digits' and T == 4"
    step-board --compare-reference               # our numbers beside results/reference.csv
    step-board --build-reference                 # rebuild results/reference.csv from experiments/
    step-board --rebuild [--out-root DIR]        # add the rows missing from the board, from the runs' record.json
    step-board --migrate CSV                     # rewrite a board of an older schema to the current one
    step-board --orderings                       # the paper orderings table (docs/ablations.md)
    step-board --raster RUN [--out DIR]          # spike raster + firing rate per step of one input (RUN: folder or model.pt)
    step-board --supersede suite=attention scale=cpu --since 2026-12-03T09:00:00+00:00 --because "re-run"

The board runs append to is ``$STEP_RESULTS/leaderboard.csv`` when STEP_RESULTS is set, else the
user board ``<output root>/leaderboard.csv`` (``$STEP_OUT`` or ``outputs/``): see step.config.paths.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from step.errors import StepError
from step.results.aggregate import DEFAULT_BY


def results_dir() -> Path:
    """The curated results folder: ``$STEP_RESULTS``, else ``results/`` in the project."""
    from step.config.paths import curated_dir

    return curated_dir()


def boards(args: argparse.Namespace) -> list[Path]:
    """The CSVs to read: ``--csv``, else ``--curated``'s, else the board runs append to."""
    from step.config.paths import default_board

    if args.csv:
        return list(args.csv)
    return [results_dir() / "leaderboard.csv" if args.curated else default_board()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="step-board", description="Aggregate, render and plot the STEP leaderboard.")
    p.add_argument("--csv", nargs="+", type=Path,
                   help="leaderboard CSV file(s) (default: the board runs append to: $STEP_RESULTS/leaderboard.csv "
                        "when STEP_RESULTS is set, else <output root>/leaderboard.csv)")
    p.add_argument("--curated", action="store_true",
                   help="the curated board shipped with the project: results/leaderboard.csv (or $STEP_RESULTS/)")
    p.add_argument("--by", nargs="+", default=DEFAULT_BY, help="group-by columns (seeds inside a group are aggregated)")
    p.add_argument("--query", help="pandas DataFrame.query filter, e.g. \"dataset == 'digits' and T >= 2\"")
    p.add_argument("--all-status", action="store_true", help="keep failed/diverged rows (default: status == ok)")
    p.add_argument("--out", type=Path, help="output folder (default: the results folder)")
    p.add_argument("--no-html", action="store_true", help="skip leaderboard.html")
    p.add_argument("--no-plots", action="store_true", help="skip the figures (PNG, SVG, PDF)")
    p.add_argument("--energy-convention", choices=["paper", "exact"], default="paper",
                   help="energy column of the accuracy-vs-energy figure: paper (energy_mj, the published tables' "
                        "firing rate x T x FLOPs) or exact (energy_exact_mj, event-driven); default paper")
    p.add_argument("--raster", type=Path, metavar="RUN",
                   help="rebuild RUN's model from its checkpoint (a run folder or its model.pt/last.pt), run one test "
                        "input, write spike_raster and firing_rate_per_step (PNG, SVG, PDF) to --out "
                        "(default: ./figures), then exit")
    p.add_argument("--sample", type=int, default=0, help="with --raster: index of the test sample (default 0)")
    p.add_argument("--layers", type=int, default=4, help="with --raster: neuron layers in the raster (default 4)")
    p.add_argument("--compare-reference", nargs="?", const="", metavar="CSV",
                   help="add paper numbers beside ours (default CSV: results/reference.csv)")
    p.add_argument("--build-reference", action="store_true",
                   help="rebuild results/reference.csv from the experiments' reference blocks, then exit")
    p.add_argument("--rebuild", action="store_true",
                   help="append the rows missing from the board (by run_id) from the record.json files under the "
                        "output root, then exit; running it twice adds nothing")
    p.add_argument("--out-root", type=Path,
                   help="output root --rebuild reads and the rows' record_path are relative to (per-layer firing "
                        "rates); default: $STEP_OUT or outputs/")
    p.add_argument("--any-board", action="store_true",
                   help="--rebuild: also take records made for another board")
    p.add_argument("--migrate", type=Path, metavar="CSV",
                   help="rewrite CSV (a leaderboard of an older schema) to the current schema, keeping CSV.bak; then exit")
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
        if args.migrate is not None:
            from step.results.migrate import migrate

            print(migrate(args.migrate, out_root=args.out_root).summary())
            return 0
        if args.raster is not None:
            from step.results.raster import write_raster

            for f in write_raster(args.raster, args.out or Path("figures"), sample=args.sample, layers=args.layers):
                print(f"wrote {f} (+ .svg, .pdf)", file=sys.stderr)
            return 0
        if args.rebuild:
            from step.config.paths import output_root
            from step.results.rebuild import rebuild

            if args.csv and len(args.csv) > 1:
                raise StepError("--rebuild appends to one board; give one --csv.")
            done = rebuild(boards(args)[0], args.out_root or output_root(), any_board=args.any_board)
            print(done.summary())
            return 0
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
            board = boards(args)[0]
            archive = (args.out or Path(board).parent) / "superseded.csv"
            moved = supersede(board, archive, args.supersede, args.since, args.because)
            print(f"moved {moved} row(s) of `{' '.join(args.supersede)}` from {board} to {archive}")
            return 0
        from step.results.board import build_board

        csvs = boards(args)
        missing = [str(c) for c in csvs if not Path(c).exists()]
        if missing:
            raise StepError(f"no leaderboard at {', '.join(missing)}; run step-train first (rows are appended "
                            "there), pass --csv PATH, or --curated for results/leaderboard.csv.")
        if args.orderings:
            from step.results.aggregate import read_rows
            from step.results.orderings import evaluate, render

            table = evaluate(read_rows([str(c) for c in csvs]))
            source = " + ".join(f"`{Path(c).parent.name}/{Path(c).name}`" for c in csvs)
            out = args.out or Path(csvs[0]).parent
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
        from step.config.paths import output_root

        board = build_board(csvs, by=args.by, query=args.query, status=None if args.all_status else "ok",
                            out_dir=args.out or Path(csvs[0]).parent, html=not args.no_html, figures=not args.no_plots,
                            reference=reference, records_root=args.out_root or output_root(),
                            convention=args.energy_convention)
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
