"""The leaderboard view: select rows, aggregate seeds, render Markdown / HTML / PNG, compare with papers.

``build_board`` is what ``step-board`` runs; every step is a plain function on DataFrames so tests
and notebooks can call them one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from step.results import plots, rate_plots, style
from step.results.aggregate import DEFAULT_BY, aggregate, config_label, group_rows, read_rows, select
from step.results.render import VS_BEST, display_table, mean_std, to_html, to_markdown
from step.results.significance import ALPHA, TEST, against_best

#: a reference row is matched by these columns (dataset keeps a CPU-sized run off the paper's row)
MATCH = ["experiment", "dataset", "model", "T"]


@dataclass
class Board:
    rows: pd.DataFrame
    aggregated: pd.DataFrame
    table: pd.DataFrame
    markdown: str
    comparison: pd.DataFrame | None = None
    files: list[Path] = field(default_factory=list)


def versus_best(rows: pd.DataFrame, agg: pd.DataFrame, by: Sequence[str], alpha: float = ALPHA) -> list[str]:
    """For each row of ``agg``: its mean metric against the best of its sweep (see
    :mod:`step.results.significance`); a group's sweep is the command most of its rows ran. Empty
    for a sweep of one setting."""
    if not len(agg) or "metric" not in rows:
        return [""] * len(agg)
    metric = pd.to_numeric(rows["metric"], errors="coerce")
    samples, sweep = {}, {}
    for key, part in group_rows(rows.assign(metric=metric), by):
        key = (*key[:-1], config_label(key[-1]))  # the setting and its config, as the aggregate names them
        samples[key] = part["metric"].dropna().tolist()
        commands = part["command"].dropna().astype(str) if "command" in part else pd.Series(dtype=str)
        sweep[key] = commands.mode().iloc[0] if len(commands) else ""
    verdicts = {}
    for command in set(sweep.values()):
        family = {k: v for k, v in samples.items() if sweep[k] == command}
        if len(family) > 1:
            verdicts.update({k: v.text() for k, v in against_best(family, alpha).items()})
    cols = [*by, "config"]
    keys = agg[cols].astype(object).where(agg[cols].notna(), "").itertuples(index=False, name=None)
    return [verdicts.get(tuple(k), "") for k in keys]


def board_notes(agg: pd.DataFrame, alpha: float = ALPHA) -> str:
    """What the spike-driven and significance columns mean, for under the table."""
    notes = []
    if "spike_driven" in agg and (agg["spike_driven"] == "no").any():
        notes.append(f"spike-driven `no`: {int((agg['spike_driven'] == 'no').sum())} setting(s) had a weight layer "
                     "reading non-spike values (listed in each record.json under energy.spike_driven).")
    if "vs_best" in agg and agg["vs_best"].astype(bool).any():
        notes.append(f"{VS_BEST}: mean minus the best mean among the settings of the same command; {TEST}, "
                     f"p Holm-adjusted within the sweep; significant when p < {alpha:g}, else within noise.")
    return "".join(f"\n{n}\n" for n in notes)


def compare_reference(rows: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Each paper number beside our mean ± std (n) for the same experiment, dataset, model and T."""
    ref = reference[reference.get("source", pd.Series(["paper"] * len(reference))) == "paper"]
    ours = aggregate(rows, by=MATCH, values=["metric"]) if len(rows) else pd.DataFrame(columns=MATCH + ["n"])
    key = lambda df: df[MATCH].astype(str).agg("|".join, axis=1)  # noqa: E731
    ours = ours.sort_values("n", kind="stable") if len(ours) else ours  # several configs: the most seeds wins
    found = dict(zip(key(ours), ours.to_dict("records"))) if len(ours) else {}
    out = []
    for (_, r), k in zip(ref.iterrows(), key(ref) if len(ref) else []):
        mine = found.get(k)
        mean = mine["metric_mean"] if mine else np.nan
        out.append({
            "experiment": r["experiment"], "dataset": r["dataset"], "model": r["model"], "T": r["T"],
            "paper": f"{float(r['metric']):.2f}", "ours": mean_std(mean, mine["metric_std"] if mine else np.nan, "{:.2f}"),
            "n": mine["n"] if mine else 0, "delta": "" if np.isnan(mean) else f"{mean - float(r['metric']):+.2f}",
            "source": r.get("command", ""),
        })
    return pd.DataFrame(out, columns=["experiment", "dataset", "model", "T", "paper", "ours", "n", "delta", "source"])


def separate_metrics(rows: pd.DataFrame, by: Sequence[str]) -> list[str]:
    """``by`` plus the columns of (dataset, task, metric_name) that vary in ``rows`` and ``by`` lacks,
    so one group never averages different datasets or metrics (top-1 with mIoU)."""
    extra = [c for c in plots.PANEL if c in rows and c not in by and rows[c].astype(str).nunique() > 1]
    return [*extra, *by]


def write_figures(rows: pd.DataFrame, agg: pd.DataFrame, by: Sequence[str], folder: Path, *,
                  reference: str | Path | None = None, records_root: str | Path | None = None,
                  convention: str = "paper") -> list[Path]:
    """Every leaderboard figure that has something to draw, as PNG (+ SVG, PDF); the PNGs' paths."""
    ref = pd.read_csv(reference) if reference is not None else None
    missing = [c for c in plots.PANEL if c in rows and c not in agg]
    if missing and len(rows):  # the panels name their dataset, task and metric even when `by` leaves them out
        agg = aggregate(rows, by=[*missing, *by])
    made = {
        "accuracy_vs_energy": plots.accuracy_vs_energy(agg, by, reference=ref, convention=convention),
        "accuracy_vs_T": plots.accuracy_vs_T(rows, by),
        "firing_rate_per_setting": rate_plots.firing_rates(rows, by),
        "firing_rate_per_layer": (rate_plots.layer_firing_rates(rows, by, records_root)
                                  if records_root is not None else None),
    }
    return [style.save(fig, folder / name) for name, fig in made.items() if fig is not None]


def build_board(
    csvs: Sequence[str | Path],
    *,
    by: Sequence[str] = DEFAULT_BY,
    query: str | None = None,
    status: str | None = "ok",
    out_dir: str | Path | None = None,
    html: bool = True,
    figures: bool = True,
    reference: str | Path | None = None,
    records_root: str | Path | None = None,
    convention: str = "paper",
) -> Board:
    """Aggregate the CSVs and, when ``out_dir`` is given, write leaderboard.md/.html and the figures
    (figures/*.png, .svg, .pdf). ``records_root`` is where the rows' ``record_path`` are read for the
    per-layer firing rates; ``convention`` the energy column of the accuracy-vs-energy figure."""
    rows = select(read_rows([str(c) for c in csvs]), query=query, status=status)
    if "source" in rows:
        rows = rows[rows["source"].fillna("run") != "paper"]
    by = separate_metrics(rows, by)
    agg = aggregate(rows, by=by)
    agg["vs_best"] = versus_best(rows, agg, by)
    table = display_table(agg, by)
    markdown = to_markdown(table) + board_notes(agg)
    comparison = None
    if reference is not None:
        comparison = compare_reference(rows, pd.read_csv(reference))
    board = Board(rows, agg, table, markdown, comparison)
    if out_dir is None:
        return board
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown if comparison is None else markdown + "\n## Against the papers\n\n" + to_markdown(comparison)
    (out / "leaderboard.md").write_text(text)
    board.files.append(out / "leaderboard.md")
    pngs: list[Path] = []
    if figures:
        pngs = write_figures(rows, agg, by, out / "figures", reference=reference, records_root=records_root,
                             convention=convention)
        board.files.extend(pngs)
    if html:
        sections = [("Leaderboard (mean ± std over seeds; n runs)", table)]
        if comparison is not None:
            sections.append(("Against the papers", comparison))
        note = f"{len(rows)} rows" + (f" matching `{query}`" if query else "") + f"; grouped by {', '.join(by)}."
        (out / "leaderboard.html").write_text(to_html("STEP leaderboard", sections, pngs, note))
        board.files.append(out / "leaderboard.html")
    return board
