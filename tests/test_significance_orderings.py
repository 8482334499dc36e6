"""Significance on the board, the paper-orderings table and the superseding of re-run rows, on
hand-made numbers and CSVs written here."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from step.errors import StepError
from step.results.board import build_board
from step.results.cli import main as board_main
from step.results.orderings import CLAIMS, Claim, evaluate, verdict
from step.results.schema import COLUMNS
from step.results.significance import against_best, holm, welch
from step.results.supersede import REASON, supersede


# ---- Welch's t-test and Holm's adjustment, by hand ------------------------------------------------

def _t_tail(t: float, df: float, upper: float = 400.0, steps: int = 400_000) -> float:
    """P(|T| >= t) for Student's t with df degrees of freedom, by integrating its density (trapezoid
    on x = t + u^2, which follows the heavy tail); independent of scipy."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    u = np.linspace(0.0, math.sqrt(upper), steps)
    x = t + u**2
    f = np.exp(log_c - (df + 1) / 2 * np.log1p(x**2 / df)) * 2 * u  # dx = 2u du
    return 2.0 * float(np.sum((f[1:] + f[:-1]) / 2 * np.diff(u)))


def test_welch_by_hand():
    a, b = [90.0, 92.0, 97.0], [80.0, 81.0, 82.0]
    # means 93 and 81; sample variances 13 and 1; standard error sqrt(13/3 + 1/3) = sqrt(14/3)
    t_hand = 12.0 / math.sqrt(14.0 / 3.0)  # 5.5549...
    df_hand = (14.0 / 3.0) ** 2 / ((13.0 / 3.0) ** 2 / 2 + (1.0 / 3.0) ** 2 / 2)  # Welch-Satterthwaite: 2.306
    t, p = welch(a, b)
    assert t == pytest.approx(t_hand, rel=1e-12)
    assert df_hand == pytest.approx(2.3059, abs=1e-4)
    assert p == pytest.approx(_t_tail(t_hand, df_hand), rel=1e-4)
    assert 0.01 < p < 0.05
    assert welch(b, a)[0] == pytest.approx(-t_hand) and welch(b, a)[1] == pytest.approx(p)


def test_welch_edge_cases():
    assert all(math.isnan(v) for v in welch([1.0], [1.0, 2.0]))  # one seed: no variance to test against
    assert welch([5.0, 5.0, 5.0], [5.0, 5.0]) == (0.0, 1.0)
    assert welch([6.0, 6.0], [5.0, 5.0]) == (math.inf, 0.0)


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.2, math.nan, 0.3])  # nan is not a test: m = 2
    assert out[0] == pytest.approx(0.4) and math.isnan(out[1]) and out[2] == pytest.approx(0.4)
    assert holm([0.9, 0.8]) == [1.0, 1.0]


def test_against_best_labels():
    family = {"best": [95.0, 96.0, 97.0], "far": [80.0, 81.0, 82.0], "close": [94.0, 96.5, 95.5], "one": [90.0]}
    out = against_best(family)
    assert out["best"].text() == "best"
    # far: t = 15 / sqrt(2/3) = 18.37 on about 4 df -> raw p 5e-5; Holm: 2 tests with p -> at most 2 p
    assert out["far"].verdict == "significant" and out["far"].diff == pytest.approx(-15.0)
    assert out["far"].p_adjusted == pytest.approx(2 * out["far"].p)
    assert out["close"].verdict == "within noise" and out["close"].text().startswith("-0.67, p ")  # mean 95.33
    assert out["one"].verdict == "cannot tell" and out["one"].text() == "cannot tell (n < 2)"


# ---- the board: spike-driven mark and significance column ----------------------------------------

BASE = dict(task="classification", dataset="digits-hard", model="spikformer", neuron="lif", surrogate="sigmoid",
            encoder="direct", backend="native", metric_name="top1", source="run", status="ok", T=4)


def write_csv(path: Path, rows, header=COLUMNS) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in header})
    return path


def suite_rows(suite: str, column: str, values: dict, **extra) -> list[dict]:
    rows = []
    for setting, metrics in values.items():
        for seed, m in enumerate(metrics):
            rows.append(dict(BASE, experiment=f"abl-{suite}", **{column: setting}, seed=seed, metric=m,
                             command=f"step-train suite={suite} scale=cpu", time=f"2026-12-03T10:0{seed}:00+00:00",
                             **extra))
    return rows


def test_board_marks_rows_not_spike_driven_and_tests_within_each_sweep(tmp_path):
    rows = suite_rows("attention", "attention", {"ssa": [90.0, 91.0, 92.0], "sdsa3": [70.0, 71.0, 72.0],
                                                 "qk_token": [90.5, 91.5, 89.0]}, spike_driven="yes")
    rows[3]["spike_driven"] = "no"  # one sdsa3 run was not spike-driven
    rows += suite_rows("neuron", "neuron", {"plif": [50.0, 60.0, 70.0]}, spike_driven="ann", attention="ssa")
    csv_path = write_csv(tmp_path / "leaderboard.csv", rows)
    board = build_board([csv_path], by=["experiment", "attention", "neuron"])
    table = board.table.set_index(["experiment", "attention"])
    assert table.loc[("abl-attention", "sdsa3"), "spike-driven"] == "no"
    assert table.loc[("abl-attention", "ssa"), "spike-driven"] == "yes"
    assert table.loc[("abl-neuron", "ssa"), "spike-driven"] == "ann"  # read back as text, not as a missing value
    vs = table["vs best of its sweep"]
    assert vs[("abl-attention", "ssa")] == "best"
    assert vs[("abl-attention", "sdsa3")].endswith("significant") and vs[("abl-attention", "sdsa3")].startswith("-20.00")
    assert vs[("abl-attention", "qk_token")].endswith("within noise")
    assert vs[("abl-neuron", "ssa")] == ""  # a sweep of one setting compares nothing
    assert "spike-driven `no`: 1 setting(s)" in board.markdown and "Holm" in board.markdown


# ---- paper orderings --------------------------------------------------------------------------------

def test_ordering_verdicts_by_relation():
    hi, lo, mid = [90.0, 91.0, 92.0], [80.0, 81.0, 82.0], [90.5, 91.5, 89.0]
    assert verdict(">", hi, lo)[0] == "holds"
    assert verdict(">", lo, hi)[0] == "does not hold"
    assert verdict(">", hi, mid)[0] == "cannot tell"
    assert verdict("<", lo, hi)[0] == "holds"
    assert verdict("=", hi, lo)[0] == "does not hold"
    assert verdict("=", hi, mid)[0] == "cannot tell (no difference found)"
    assert verdict(">", [90.0], lo)[0] == "cannot tell (n < 2)"
    assert verdict(">", [], lo)[0] == "not run"


def test_orderings_table_from_a_csv(tmp_path, capsys):
    rows = suite_rows("neuron", "neuron", {"lif": [90.0, 91.0, 92.0], "plif": [95.0, 96.0, 97.0],
                                           "klif": [80.0, 81.0, 82.0], "glif": [90.5, 91.5, 89.0]})
    rows += [dict(r, command="step-train suite=neuron scale=full", metric=10.0) for r in rows]  # another scale
    csv_path = write_csv(tmp_path / "leaderboard.csv", rows)
    table = evaluate(pd.read_csv(csv_path)).set_index("claim")
    assert table.loc["PLIF > LIF", "verdict"] == "holds" and table.loc["PLIF > LIF", "A"] == "96.00 ± 1.00"
    assert table.loc["PLIF > LIF", "seeds A / B"] == "0,1,2 / 0,1,2"
    assert table.loc["KLIF > LIF", "verdict"] == "does not hold"
    assert table.loc["GLIF > LIF", "verdict"] == "cannot tell"
    assert table.loc["CLIF > LIF", "verdict"] == "not run"
    assert table.loc["SDSA-3 > SDSA-1", "verdict"] == "not run"
    assert len(table) == len(CLAIMS)
    out = tmp_path / "out"
    assert board_main(["--csv", str(csv_path), "--orderings", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| PLIF > LIF |" in printed and "| holds |" in printed and "Welch" in printed
    assert "| seeds A / B |" in (out / "orderings.md").read_text()


def test_every_claim_selects_rows_its_suite_makes():
    """Each claim's queries parse, and its suite exists with a CPU size."""
    root = Path(__file__).resolve().parents[1] / "experiments" / "suite"
    empty = pd.DataFrame(columns=COLUMNS)
    for claim in CLAIMS:
        assert (root / f"{claim.suite}.yaml").is_file(), claim.suite
        empty.query(claim.a), empty.query(claim.b)
        assert claim.relation in (">", "<", "=") and claim.value in COLUMNS
    assert isinstance(CLAIMS[0], Claim)


# ---- superseding -----------------------------------------------------------------------------------

OLD_HEADER = [c for c in COLUMNS if c != "spike_driven"]  # a schema-1 file


def test_supersede_moves_old_rows_as_text_and_keeps_the_rest(tmp_path):
    old = suite_rows("attention", "attention", {"ssa": [96.944445, 98.888886]})
    for r in old:
        r["time"] = "2026-11-25T02:13:28+00:00"
    new = suite_rows("attention", "attention", {"ssa": [80.1, 81.2, 82.3]}, spike_driven="yes")
    other = [dict(BASE, experiment="demo", seed=0, metric=98.33333492279053, command="step-train experiment=demo",
                  time="2026-11-25T02:09:29+00:00")]
    board = write_csv(tmp_path / "leaderboard.csv", other + old + new)
    archive = write_csv(tmp_path / "superseded.csv", [dict(BASE, experiment="bipolar-old", seed=0, metric=1.0,
                                                           superseded_because="old bug")],
                        header=OLD_HEADER + [REASON])
    before = board.read_text().splitlines()
    assert supersede(board, archive, ["suite=attention", "scale=cpu"], "2026-12-03T10:00:00+00:00", "re-run") == 2
    after = board.read_text().splitlines()
    assert after == [before[0], before[1], *before[4:]]  # demo and the new rows, byte for byte
    moved = pd.read_csv(archive, keep_default_na=False)
    assert list(moved.columns)[-1] == REASON and "spike_driven" in moved.columns
    assert moved[REASON].tolist() == ["old bug", "re-run", "re-run"]
    assert moved["metric"].tolist()[1:] == pytest.approx([96.944445, 98.888886])
    # nothing older is left: a second call moves nothing
    assert supersede(board, archive, ["suite=attention", "scale=cpu"], "2026-12-03T10:00:00+00:00", "again") == 0


def test_supersede_refuses_without_a_re_run_and_moves_nothing(tmp_path, capsys):
    old = suite_rows("neuron", "neuron", {"lif": [90.0, 91.0]})
    board = write_csv(tmp_path / "leaderboard.csv", old)
    text = board.read_text()
    with pytest.raises(StepError, match="did not happen"):
        supersede(board, tmp_path / "superseded.csv", ["suite=neuron", "scale=cpu"], "2026-12-04T00:00:00+00:00", "x")
    assert board.read_text() == text and not (tmp_path / "superseded.csv").exists()
    with pytest.raises(StepError, match="time zone"):
        supersede(board, tmp_path / "superseded.csv", ["suite=neuron"], "2026-12-04T00:00:00", "x")
    # through the CLI: one message, exit 2
    assert board_main(["--csv", str(board), "--supersede", "suite=neuron", "scale=cpu",
                       "--since", "2026-12-04T00:00:00+00:00"]) == 2
    assert "no row was moved" in capsys.readouterr().err
