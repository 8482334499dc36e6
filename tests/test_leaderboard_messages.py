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


def test_a_bare_carriage_return_left_by_an_older_writer_is_a_clear_refusal_not_a_crash(tmp_path):
    """Boards written before rows quoted a bare CR hold one: the preflight names the line and the fix
    (csv would otherwise raise its own 'new-line character seen in unquoted field')."""
    path = tmp_path / "board.csv"
    append_row(path, {"run_id": "r0", "status": "ok"})
    path.write_bytes(path.read_bytes() + lb.format_row({"run_id": "r1", "status": "failed", "error": "x"})
                     .replace(",x,", ",one\rtwo,").encode())
    with pytest.raises(BoardError, match=r", line 3: a row with \d+ fields, the header has 35;.*step-board --rebuild"):
        check_board(path)


def test_check_board_cuts_a_partial_line_back_under_the_boards_lock(tmp_path, capsys):
    import threading

    path = tmp_path / "board.csv"
    append_row(path, {"run_id": "r0", "status": "ok"})
    whole = path.read_bytes()
    path.write_bytes(whole + b"4,r1,2026")
    held, done = lb.lock(path), threading.Event()
    held.acquire()
    worker = threading.Thread(target=lambda: (check_board(path), done.set()))
    worker.start()
    assert not done.wait(0.5)  # waits for the writer that holds the board's lock
    assert path.read_bytes().endswith(b"4,r1,2026")
    held.release()
    worker.join(30)
    assert done.is_set() and path.read_bytes() == whole
    assert f"step: warning: {path} ended in a partial line (9 bytes, dropped): '4,r1,2026'." in capsys.readouterr().err


@pytest.mark.parametrize(("size", "shown"), [
    (400, "a" * 400),  # up to 400 characters: printed whole
    (401, "a" * 200 + " ... " + "a" * 200),  # longer: its first and last 200 around " ... "
])
def test_a_long_partial_line_is_printed_whole_up_to_400_characters(tmp_path, capsys, size, shown):
    path = tmp_path / "board.csv"
    append_row(path, {"run_id": "r0", "status": "ok"})
    path.write_bytes(path.read_bytes() + b"a" * size)
    check_board(path)
    assert f"({size} bytes, dropped): {shown!r}. If it was a row, `step-board --rebuild` re-creates it from its " \
           "record.json." in capsys.readouterr().err


def test_a_partial_line_cut_inside_a_utf8_character_is_still_reported_and_dropped(tmp_path, capsys):
    path = tmp_path / "board.csv"
    append_row(path, {"run_id": "r0", "status": "ok"})
    whole = path.read_bytes()
    path.write_bytes(whole + "4,r1,µ".encode()[:-1])  # a writer killed inside the two bytes of µ
    check_board(path)
    assert path.read_bytes() == whole
    assert "(6 bytes, dropped): '4,r1,\ufffd'" in capsys.readouterr().err


@pytest.mark.parametrize(("error", "shown"), [
    (PermissionError(13, "Permission denied"), "PermissionError: Permission denied"),
    (OSError("device gone"), "OSError: device gone"),  # no strerror: the error itself
])
def test_a_board_that_cannot_be_read_names_the_error_and_the_fix(tmp_path, monkeypatch, error, shown):
    path = tmp_path / "board.csv"
    append_row(path, {"run_id": "r0", "status": "ok"})

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(lb, "scan", refuse)
    with pytest.raises(BoardError) as err:
        check_board(path)
    assert str(err.value) == (f"the leaderboard {path} cannot be read or repaired ({shown}); fix its permissions "
                              "or move it aside. Nothing was trained.")
