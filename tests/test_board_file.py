"""Issue 15, cases 4 (results disk), 5 and 7: the leaderboard file. Appends are whole or absent and
once per run_id; a damaged board is repaired (a partial last line) or refused before training (a
malformed row, another schema's header); a spreadsheet's BOM and CRLF are read; ``--migrate`` and
``--rebuild`` restore a usable board; ``step-board`` pools seeds only within one config_hash."""

from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from step.config import compose
from step.engine import run
from step.results import leaderboard as lb
from step.results.cli import main as board_main
from step.results.leaderboard import BoardError, BoardWriteError, append_row, check_board
from step.results.migrate import migrate, relative_record_path
from step.results.rebuild import rebuild
from step.results.record import record_file
from step.results.schema import COLUMNS, SCHEMA_VERSION

TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.max_batches=2", "trainer.batch_size=16",
        "trainer.eval_batch_size=32", "trainer.progress=false", "dataset.test_fraction=0.05", "energy.enabled=false",
        "logger=none", "trainer.epochs=1"]


def row(i: int, **kw) -> dict:
    return {"run_id": f"r{i}", "status": "ok", "metric": float(i), "command": 'step-train a=1, "q"', **kw}


def board_with(tmp_path: Path, n: int = 2) -> Path:
    path = tmp_path / "board.csv"
    for i in range(n):
        append_row(path, row(i))
    return path


def test_append_is_once_per_run_id(tmp_path):
    path = board_with(tmp_path, 2)
    assert append_row(path, row(1)) is False  # a retry of r1 adds nothing
    assert append_row(path, row(2)) is True
    assert list(pd.read_csv(path)["run_id"]) == ["r0", "r1", "r2"]


def test_a_failing_write_on_a_full_results_disk_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    """The write stops half way with ENOSPC (as on a full disk): the half row is cut off again."""
    path = board_with(tmp_path, 2)
    before = path.read_bytes()
    real_write = os.write

    def full_disk(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lb.os, "write", full_disk)
    with pytest.raises(BoardWriteError, match=r"No space left on device.*left as it was.*step-board --rebuild"):
        append_row(path, row(9))
    monkeypatch.setattr(lb.os, "write", real_write)
    assert path.read_bytes() == before
    assert append_row(path, row(3)) and list(pd.read_csv(path)["run_id"]) == ["r0", "r1", "r3"]


def test_a_short_write_is_undone_too(tmp_path, monkeypatch):
    path = board_with(tmp_path, 1)
    before = path.read_bytes()
    real_write = os.write
    monkeypatch.setattr(lb.os, "write", lambda fd, data: real_write(fd, data[:10]))
    with pytest.raises(BoardWriteError, match="short write"):
        append_row(path, row(5))
    assert path.read_bytes() == before


def test_a_partial_last_line_is_cut_back_with_a_warning_naming_the_bytes(tmp_path, capsys):
    path = board_with(tmp_path, 2)
    whole = path.read_bytes()
    path.write_bytes(whole + b'2,r7,,,,,,,,,,,,,,,,,,,,"step-tr')  # a writer killed mid-line, inside a quoted field
    append_row(path, row(3))
    err = capsys.readouterr().err
    assert "ended in a partial line" in err and "bytes, dropped" in err and "step-tr" in err
    assert path.read_bytes().startswith(whole)
    assert list(pd.read_csv(path)["run_id"]) == ["r0", "r1", "r3"]


def test_a_row_with_the_wrong_field_count_is_refused_before_training(isolated_roots):
    path = isolated_roots / "results" / "leaderboard.csv"
    board_with(path.parent, 2).rename(path)
    with path.open("a") as fh:
        fh.write("2,broken,row\n")
    before = path.read_bytes()
    with pytest.raises(BoardError, match=r"line 4: a row with 3 fields, the header has \d+.*Nothing was trained"):
        run(compose(TINY))
    assert path.read_bytes() == before and not (isolated_roots / "outputs" / "runs").exists()


def test_a_renamed_column_is_refused_before_training_and_migrate_fixes_it(isolated_roots):
    path = isolated_roots / "results" / "leaderboard.csv"
    board_with(path.parent, 2).rename(path)
    path.write_text(path.read_text().replace(",metric,", ",accuracy,", 1))
    with pytest.raises(BoardError, match=r"missing metric; not in the schema: accuracy.*step-board --migrate"):
        run(compose(TINY))
    assert not (isolated_roots / "outputs" / "runs").exists()
    done = migrate(path)
    assert done.extra == ["accuracy"] and "runs will not append" in done.summary()
    df = pd.read_csv(path)
    assert list(df.columns) == COLUMNS + ["accuracy"] and list(df["accuracy"]) == [0.0, 1.0]
    assert Path(str(path) + ".bak").exists()


def test_a_spreadsheet_saved_board_with_bom_and_crlf_is_read_and_appended_to(isolated_roots):
    path = isolated_roots / "results" / "leaderboard.csv"
    text = board_with(path.parent, 2).read_text()
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    run(compose(TINY))
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and data.endswith(b"\r\n") and data.count(b"\r\n") == 4
    df = pd.read_csv(path)
    assert list(df.columns) == COLUMNS and len(df) == 3 and df["status"].iloc[-1] == "ok"
    assert check_board(path).rows == 3


def test_migrate_brings_a_schema_1_board_to_the_current_schema(tmp_path):
    out = tmp_path / "out"
    record_path = out / "runs" / "2026-01-01" / "a_run" / "record.json"
    record_path.parent.mkdir(parents=True)
    config = {"model": {"dim": 16}, "seed": 0, "paths": {"output_root": str(out)}}
    record_path.write_text(json.dumps({"config": config, "leaderboard_row": {}}))
    old_columns = [c for c in COLUMNS if c != "config_hash"]
    path = tmp_path / "old.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=old_columns)
        writer.writeheader()
        writer.writerow({"schema_version": 1, "run_id": "a", "status": "ok", "record_path": str(record_path)})
        writer.writerow({"schema_version": 1, "run_id": "b", "status": "ok",
                         "record_path": "/elsewhere/fresh/outputs/multirun/2026/x/0_job/record.json"})
    done = migrate(path, out_root=out)
    assert (done.added, done.rows, done.relative, done.derived) == (["config_hash"], 2, 2, 1)
    df = pd.read_csv(path, keep_default_na=False)
    from step.config.identity import config_hash

    assert list(df.columns) == COLUMNS and set(df["schema_version"]) == {SCHEMA_VERSION}
    assert list(df["record_path"]) == ["runs/2026-01-01/a_run/record.json", "multirun/2026/x/0_job/record.json"]
    assert list(df["config_hash"]) == [config_hash(config), ""]  # derived where the record exists, else empty
    assert migrate(path, out_root=out).unchanged  # a second migration finds nothing to do
    assert lb.append_row(path, row(7))  # and the migrated file takes new rows


def test_migrate_fills_any_column_a_later_schema_adds_empty(tmp_path, monkeypatch):
    """Other branches add columns: a column the file lacks is filled empty (or from the record) generically."""
    import step.results.migrate as mig

    path = board_with(tmp_path, 2)
    later = [*COLUMNS, "energy_new_mj"]
    for module in (lb, mig):
        monkeypatch.setattr(module, "COLUMNS", later)
    done = migrate(path)
    assert done.added == ["energy_new_mj"]
    df = pd.read_csv(path)
    assert list(df.columns) == later and df["energy_new_mj"].isna().all() and list(df["run_id"]) == ["r0", "r1"]


def test_relative_record_path_rules():
    assert relative_record_path("/x/out/runs/d/r/record.json", "/x/out") == "runs/d/r/record.json"
    assert relative_record_path("/tmp/fresh_out/multirun/d/s/0_j/record.json") == "multirun/d/s/0_j/record.json"
    assert relative_record_path("runs/d/r/record.json") == "runs/d/r/record.json"
    assert relative_record_path("/somewhere/record.json") == "/somewhere/record.json"  # no run folder to cut at


def test_rows_hold_paths_relative_to_the_output_root_and_the_config_hash(isolated_roots):
    record = run(compose([*TINY, "name=rel"]))
    df = pd.read_csv(isolated_roots / "results" / "leaderboard.csv")
    path = df["record_path"][0]
    assert not os.path.isabs(path) and path.startswith("runs/")
    assert record_file(path) == Path(record["record_path"])
    assert df["config_hash"][0] == record["config_hash"] and len(record["config_hash"]) == 16


def test_rebuild_recreates_missing_rows_once_and_skips_other_boards(isolated_roots, capsys):
    board = isolated_roots / "results" / "leaderboard.csv"
    first = run(compose([*TINY, "name=one"]))
    second = run(compose([*TINY, "name=two", "seed=1"]))
    kept = board.read_text().splitlines()
    board.write_text("\n".join(kept[:2]) + "\n")  # second's row lost
    foreign = isolated_roots / "outputs" / "runs" / "other" / "x" / "record.json"
    foreign.parent.mkdir(parents=True)
    foreign.write_text(json.dumps({"leaderboard": "/another/board.csv", "leaderboard_row": {"run_id": "foreign"}}))
    assert board_main(["--rebuild", "--out-root", str(isolated_roots / "outputs")]) == 0
    assert "appended 1 missing rows" in capsys.readouterr().out
    df = pd.read_csv(board)
    assert sorted(df["run_id"]) == sorted([first["run_id"], second["run_id"]])
    assert rebuild(board, isolated_roots / "outputs").appended == 0  # idempotent
    assert rebuild(board, isolated_roots / "outputs", any_board=True).appended == 1  # the foreign record, on request


def test_step_board_pools_seeds_only_within_one_config(tmp_path, capsys):
    base = dict(experiment="demo", task="classification", dataset="digits", model="spikformer", attention="ssa",
                neuron="lif", surrogate="atan", encoder="direct", backend="native", T=4, metric_name="top1")
    rows = [dict(base, run_id="a", seed=0, metric=90.0, config_hash="h1"),
            dict(base, run_id="b", seed=1, metric=92.0, config_hash="h1"),
            dict(base, run_id="c", seed=0, metric=50.0, config_hash="h2"),  # e.g. another lr: never pooled with h1
            # two legacy rows (no config_hash): one command and commit -> one config; another epochs -> another
            dict(base, run_id="d", seed=0, metric=80.0, command="step-train x=1 seed=0", git_commit="abc", epochs=4),
            dict(base, run_id="e", seed=1, metric=82.0, command="step-train x=1 seed=1", git_commit="abc+dirty", epochs=4),
            dict(base, run_id="f", seed=0, metric=10.0, command="step-train x=1 seed=0", git_commit="abc", epochs=8)]
    path = tmp_path / "b.csv"
    for r in rows:
        append_row(path, {**r, "status": "ok"})
    from step.results.aggregate import aggregate

    agg = aggregate(pd.read_csv(path), by=["experiment"])
    got = sorted(zip(agg["n"], agg["metric_mean"], agg["configs"]))
    assert got == [(1, 10.0, 4), (1, 50.0, 4), (2, 81.0, 4), (2, 91.0, 4)]
    assert board_main(["--csv", str(path), "--by", "experiment", "--out", str(tmp_path / "o"), "--no-plots"]) == 0
    table = capsys.readouterr().out
    assert "| experiment | config |" in table and "| demo | h1 | top1 | 91.00 ± 1.41 |" in table


def test_the_user_board_is_the_default_and_the_curated_one_is_written_only_when_asked(isolated_roots, monkeypatch):
    from step.config.paths import default_board

    monkeypatch.delenv("STEP_RESULTS")
    cfg = compose(TINY)
    user = isolated_roots / "outputs" / "leaderboard.csv"
    assert Path(cfg.paths.leaderboard) == user == default_board()
    run(cfg)
    assert len(pd.read_csv(user)) == 1 and not (isolated_roots / "results").exists()
    curated = isolated_roots / "curated" / "leaderboard.csv"
    run(compose([*TINY, f"paths.leaderboard={curated}"]))
    assert len(pd.read_csv(curated)) == 1 and len(pd.read_csv(user)) == 1
    monkeypatch.setenv("STEP_RESULTS", str(curated.parent))
    assert Path(compose(TINY).paths.leaderboard) == curated == default_board()


def test_the_makefile_curates_results_only_in_its_curating_targets():
    from step.config.paths import project_root

    text = (project_root() / "Makefile").read_text()
    line = next(x for x in text.splitlines() if "export STEP_RESULTS" in x)
    assert line.startswith("$(REPRODUCE) reproduce-cpu dense-cpu:") and "$(CURDIR)/results" in line
    demo = text.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "STEP_RESULTS" not in demo and "--curated" in text.split("\nleaderboard:", 1)[1].split("\n\n", 1)[0]


def test_read_leaderboard_helper_reads_bom_crlf(tmp_path):
    path = board_with(tmp_path, 1)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    df = lb.read_leaderboard(path)
    assert list(df.columns) == COLUMNS and df["command"][0] == 'step-train a=1, "q"'
