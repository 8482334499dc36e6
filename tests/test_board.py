"""step-board: aggregation (mean, sample std, n), Markdown, Pareto front, reference comparison,
the docs' pandas one-liner, and the failed-row writer, all on small CSVs written here."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from step.config.paths import project_root
from step.results.aggregate import aggregate, pareto_front, select
from step.results.board import build_board, compare_reference
from step.results.cli import main as board_main
from step.results.render import display_table, to_markdown
from step.results.schema import COLUMNS

BASE = dict(task="classification", dataset="digits", model="spikformer", neuron="lif", surrogate="atan",
            encoder="direct", backend="native", experiment="x", metric_name="top1", source="run")
ROWS = [
    dict(BASE, attention="ssa", T=4, seed=0, metric=90.0, energy_mj=0.010, firing_rate=0.20, params=1000, status="ok"),
    dict(BASE, attention="ssa", T=4, seed=1, metric=92.0, energy_mj=0.012, firing_rate=0.22, params=1000, status="ok"),
    dict(BASE, attention="ssa", T=4, seed=2, metric=97.0, energy_mj=0.014, firing_rate=0.24, params=1000, status="ok"),
    dict(BASE, attention="sdsa3", T=4, seed=0, metric=88.0, energy_mj=0.005, firing_rate=0.15, params=900, status="ok"),
    dict(BASE, attention="sdsa3", T=2, seed=0, metric=85.0, energy_mj=0.003, firing_rate=0.10, params=900, status="ok"),
    dict(BASE, attention="sdsa3", T=2, seed=1, status="failed", error="ConfigError: boom"),
]


def write_csv(path: Path, rows=ROWS) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in COLUMNS})
    return path


@pytest.fixture
def board_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "leaderboard.csv")


def test_aggregate_mean_sample_std_and_n(board_csv):
    df = select(pd.read_csv(board_csv))
    assert len(df) == 5  # the failed row is left out by default
    agg = aggregate(df, by=["attention", "T"]).set_index(["attention", "T"])
    ssa = agg.loc[("ssa", 4)]
    # 90, 92, 97: mean 93, deviations -3, -1, 4 -> sum of squares 26, sample variance 13
    assert ssa["n"] == 3
    assert ssa["metric_mean"] == pytest.approx(93.0)
    assert ssa["metric_std"] == pytest.approx(math.sqrt(13.0))
    assert ssa["energy_mj_mean"] == pytest.approx(0.012)
    assert ssa["energy_mj_std"] == pytest.approx(0.002)
    single = agg.loc[("sdsa3", 2)]
    assert single["n"] == 1 and single["metric_mean"] == 85.0 and math.isnan(single["metric_std"])


def test_markdown_table_matches_hand_written(board_csv):
    agg = aggregate(select(pd.read_csv(board_csv)), by=["attention", "T"])
    md = to_markdown(display_table(agg, ["attention", "T"], values=("metric", "firing_rate")))
    assert md == (
        "| attention | T | metric_name | metric | firing rate | n |\n"
        "|---|---|---|---:|---:|---:|\n"
        "| sdsa3 | 2 | top1 | 85.00 | 0.100 | 1 |\n"
        "| sdsa3 | 4 | top1 | 88.00 | 0.150 | 1 |\n"
        "| ssa | 4 | top1 | 93.00 ± 3.61 | 0.220 ± 0.020 | 3 |\n"
    )


def test_all_status_keeps_failed_rows_and_query_filters(board_csv):
    df = pd.read_csv(board_csv)
    assert len(select(df, status=None)) == 6
    assert set(select(df, query="T == 2 and attention == 'sdsa3'")["metric"]) == {85.0}


def test_pareto_front_by_hand():
    energy = [1.0, 2.0, 2.0, 3.0, 0.5, float("nan")]
    acc = [80.0, 85.0, 84.0, 85.0, 70.0, 99.0]
    # (1,80), (2,85), (0.5,70) are unbeaten; (2,84) loses to (2,85); (3,85) loses to (2,85); nan never counts
    assert pareto_front(energy, acc).tolist() == [True, True, False, False, True, False]


def test_compare_reference_puts_paper_beside_ours(board_csv, tmp_path):
    ref = write_csv(tmp_path / "reference.csv", [
        dict(BASE, attention="ssa", T=4, metric=95.0, source="paper", command="Some paper, Table 1"),
        dict(BASE, attention="ssa", T=8, metric=96.0, source="paper", command="Some paper, Table 2"),
    ])
    rows = select(pd.read_csv(board_csv), query="attention == 'ssa'")
    out = compare_reference(rows, pd.read_csv(ref))
    first, second = out.to_dict("records")
    assert (first["paper"], first["ours"], first["n"], first["delta"]) == ("95.00", "93.00 ± 3.61", 3, "-2.00")
    assert first["source"] == "Some paper, Table 1"
    assert (second["ours"], second["n"], second["delta"]) == ("", 0, "")  # nothing run at T=8


def test_build_board_writes_markdown_html_and_figures(board_csv, tmp_path):
    out = tmp_path / "out"
    board = build_board([board_csv], by=["attention", "T"], out_dir=out)
    assert (out / "leaderboard.md").read_text() == board.markdown
    for name in ("accuracy_vs_energy", "accuracy_vs_T", "firing_rate_per_setting"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    page = (out / "leaderboard.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "93.00 ± 3.61" in page


def test_cli_prints_the_table_and_rejects_a_bad_group_column(board_csv, tmp_path, capsys):
    assert board_main(["--csv", str(board_csv), "--by", "attention", "--out", str(tmp_path / "o"), "--no-plots"]) == 0
    assert "| ssa | top1 | 93.00 ± 3.61 |" in capsys.readouterr().out
    assert board_main(["--csv", str(board_csv), "--by", "atention", "--out", str(tmp_path / "o")]) == 2
    assert "cannot group by ['atention']" in capsys.readouterr().err


def test_docs_pandas_one_liner_runs_on_the_csv(board_csv, monkeypatch):
    text = (project_root() / "docs" / "leaderboard.md").read_text()
    code = re.search(r"<!-- one-liner -->\s*```python\n(.*?)\n```", text, re.S).group(1)
    assert code.count("\n") == 0 and "results/leaderboard.csv" in code
    monkeypatch.chdir(board_csv.parent.parent)
    (board_csv.parent.parent / "results").mkdir(exist_ok=True)
    board_csv.rename(board_csv.parent.parent / "results" / "leaderboard.csv")
    shown = []
    exec(code, {"print": shown.append})  # noqa: S102 - the documented line, verbatim; print captured
    table = shown[0]
    assert table.loc[("spikformer", "ssa", 4)].tolist() == pytest.approx([93.0, math.sqrt(13.0), 3])
    assert table.loc[("spikformer", "sdsa3", 2), "count"] == 1
    assert len(table) == 3  # the failed row is filtered by status == "ok"
