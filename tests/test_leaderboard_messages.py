"""The leaderboard's refusals, word for word, and CSV round trips that only a byte-exact reader keeps.

Errors are part of the interface: each message names the file, what is wrong with it and the command
that fixes it. These tests pin the whole text (``tests/test_board_file.py`` checks that the right
refusal happens at the right time; here: that the user reads the right thing).
"""

from __future__ import annotations

import pytest

from step.results import leaderboard as lb
from step.results.leaderboard import BoardError, append_row, check_board, scan
from step.results.schema import COLUMNS, SCHEMA_VERSION


def _migrate_message(path, what: str) -> str:
    return (f"{path} has the columns of another leaderboard schema ({what}); this STEP writes schema version "
            f"{SCHEMA_VERSION}. Rewrite it with `step-board --migrate {path}` (the old file is kept beside it), "
            "then re-run. Nothing was trained or written.")


@pytest.mark.parametrize(("header", "what"), [
    # two columns gone: both named, in schema order, joined by ", "
    ([c for c in COLUMNS if c not in ("metric", "seed")], "missing seed, metric"),
    # two unknown columns: both named in file order, nothing "missing"
    (COLUMNS + ["accuracy", "gpu"], "not in the schema: accuracy, gpu"),
    # one renamed: both halves, joined by "; "
    ([("acc" if c == "metric" else c) for c in COLUMNS], "missing metric; not in the schema: acc"),
    # the same names in another order: neither half applies
    (COLUMNS[1:] + COLUMNS[:1], "another order"),
])
def test_a_board_of_another_schema_is_refused_with_what_differs_and_the_fix(tmp_path, header, what):
    path = tmp_path / "board.csv"
    path.write_text(",".join(header) + "\n")
    with pytest.raises(BoardError) as err:
        check_board(path)
    assert str(err.value) == _migrate_message(path, what)


def test_a_board_that_is_not_utf8_is_refused_with_the_line_and_the_fix(tmp_path):
    path = tmp_path / "board.csv"
    path.write_bytes(",".join(COLUMNS).encode() + b"\n" + b"\xff\xfe\x00r0\n")
    with pytest.raises(BoardError) as err:
        scan(path)
    assert str(err.value) == (
        f"{path}, line 2: not UTF-8 text; the file is damaged or not a STEP leaderboard. Move it aside "
        "(step-board --rebuild re-creates its rows from the runs' records).")


def test_a_run_id_holding_a_quoted_line_break_is_matched_byte_for_byte(tmp_path):
    """csv keeps a quoted CRLF inside a field as it is only when the text is read with newline=""; a
    reader that translated it to LF would not find the run again and would append it twice."""
    path = tmp_path / "board.csv"
    rid = "run\r\nwith a break"
    assert append_row(path, {"run_id": rid, "status": "ok"}) is True
    assert scan(path).run_ids == {rid}
    assert append_row(path, {"run_id": rid, "status": "ok"}) is False
    assert scan(path).rows == 1


def test_a_lone_carriage_return_inside_a_quoted_field_stays_one_row(tmp_path):
    path = tmp_path / "board.csv"
    append_row(path, {"run_id": "r0", "status": "failed", "error": "line one\rline two"})
    found = scan(path)
    assert (found.rows, found.run_ids, found.partial) == (1, {"r0"}, b"")
    assert lb.read_leaderboard(path)["error"][0] == "line one\rline two"
