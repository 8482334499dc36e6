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


def test_the_partial_line_warning_is_flushed_at_once_and_the_scan_describes_the_repaired_file(tmp_path,
                                                                                              monkeypatch):
    """A warning held in a buffer is lost if the run is killed next; and what check_board returns is
    the file after the repair."""
    import io
    import sys

    path = tmp_path / "board.csv"
    append_row(path, {"run_id": "r0", "status": "ok"})
    whole = path.read_bytes()
    path.write_bytes(whole + b"4,r1")
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, encoding="utf-8", line_buffering=False,
                                                        write_through=False))
    found = check_board(path)
    assert b"ended in a partial line (4 bytes, dropped): '4,r1'." in raw.getvalue()
    assert (found.partial, found.size, found.complete, found.rows) == (b"", len(whole), len(whole), 1)


def test_format_row_is_one_line_with_the_schema_version_and_refuses_unknown_keys(tmp_path):
    line = lb.format_row({"run_id": "r0", "metric": 1.5, "error": None})
    assert line.endswith("\n") and line.count("\n") == 1 and "\r" not in line
    fields = line[:-1].split(",")
    assert len(fields) == len(COLUMNS) and fields[0] == str(SCHEMA_VERSION)
    assert fields[COLUMNS.index("metric")] == "1.5" and fields[COLUMNS.index("error")] == ""
    assert lb.format_row({"run_id": "r0"}, "\r\n").endswith(",\r\n")
    with pytest.raises(ValueError, match=r"keys outside the schema: \['accuracy', 'gpu'\]"):
        lb.format_row({"run_id": "r0", "gpu": "x", "accuracy": 1})
    with pytest.raises(ValueError, match="outside the schema"):
        append_row(tmp_path / "board.csv", {"run_id": "r0", "accuracy": 1})
    assert not (tmp_path / "board.csv").exists()  # refused before the file is made


def test_a_new_board_is_readable_by_everyone_and_writable_by_its_owner_whatever_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0)
    try:
        append_row(tmp_path / "board.csv", {"run_id": "r0", "status": "ok"})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "board.csv").stat().st_mode) == 0o644


def test_the_first_row_makes_the_boards_folders(tmp_path):
    path = tmp_path / "new" / "deeper" / "board.csv"
    assert append_row(path, {"run_id": "r0", "status": "ok"}) is True
    assert scan(path).run_ids == {"r0"}


def test_several_rows_in_one_append_are_whole_lines_deduplicated_among_themselves(tmp_path):
    path = tmp_path / "board.csv"
    appended = lb.append_rows(path, [{"run_id": "a", "metric": 1}, {"run_id": "b", "metric": 2},
                                     {"run_id": "a", "metric": 3}, {"status": "x"}, {"status": "y"}])
    assert appended == 4  # the second "a" is a repeat; rows without a run_id cannot repeat one
    data = path.read_bytes()
    assert b"\r" not in data and data.count(b"\n") == 5  # header and rows end in the new file's "\n"
    frame = lb.read_leaderboard(path)
    assert list(frame["metric"].fillna(-1)) == [1, 2, -1, -1] and list(frame["status"].fillna("")) == ["", "", "x", "y"]
    assert list(frame["schema_version"]) == [SCHEMA_VERSION] * 4  # each line starts where the last ended


def test_a_failed_append_names_the_error_and_the_command_that_adds_the_rows_later(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "board.csv"
    append_row(path, {"run_id": "r0", "status": "ok"})

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lb.os, "write", full)
    with pytest.raises(lb.BoardWriteError) as err:
        append_row(path, {"run_id": "r1", "status": "ok"})
    assert str(err.value) == (
        f"could not append to the leaderboard {path} (OSError: No space left on device); the file was left as it "
        f"was. Free space or fix permissions, then add the missing rows with `step-board --rebuild --csv {path}`.")


def test_a_damaged_header_is_reported_on_line_1_and_the_board_lock_waits_two_minutes(tmp_path):
    path = tmp_path / "board.csv"
    path.write_bytes(b"\xff" + ",".join(COLUMNS).encode() + b"\n")
    with pytest.raises(BoardError, match=r"board\.csv, line 1: not UTF-8 text"):
        scan(path)
    held = lb.lock(path)
    assert held.lock_file == f"{path}.lock" and held.timeout == 120  # a stuck writer stops a run, not forever


def test_blank_lines_anywhere_are_skipped_as_pandas_skips_them(tmp_path):
    path = tmp_path / "board.csv"
    append_row(path, {"run_id": "r0", "status": "ok"})
    header, row = path.read_bytes().split(b"\n", 1)
    path.write_bytes(b"\n" + header + b"\n\r\n" + row)
    found = scan(path)
    assert (found.header, found.rows, found.run_ids, found.partial) == (COLUMNS, 1, {"r0"}, b"")
    assert found.size == found.complete == path.stat().st_size
    assert list(lb.read_leaderboard(path)["run_id"]) == ["r0"]


@pytest.mark.parametrize("line", [b"   ", b"X", b"XX"])
def test_a_line_of_spaces_or_stray_characters_is_a_damaged_row_not_a_blank_one(tmp_path, line):
    path = tmp_path / "board.csv"
    append_row(path, {"run_id": "r0", "status": "ok"})
    path.write_bytes(path.read_bytes() + line + b"\n")
    with pytest.raises(BoardError) as err:
        scan(path)
    assert str(err.value) == (
        f"{path}, line 3: a row with 1 fields, the header has {len(COLUMNS)}; the file was edited or damaged. Fix "
        "or delete that line (step-board --rebuild re-creates missing rows from the runs' record.json files), then "
        "re-run. Nothing was trained or written.")


def test_appends_keep_the_line_ends_of_an_lf_board(tmp_path):
    path = tmp_path / "board.csv"
    append_row(path, {"run_id": "r0", "status": "ok"})
    append_row(path, {"run_id": "r1", "status": "ok"})
    assert scan(path).newline == "\n" and b"\r" not in path.read_bytes() and scan(path).rows == 2


def test_any_header_may_be_scanned_when_no_schema_is_asked_for(tmp_path):
    """migrate and rebuild read boards of other schemas; one without a run_id column has rows, no ids."""
    path = tmp_path / "old.csv"
    path.write_text("metric,model\n1.0,a\n2.0,b\n")
    found = scan(path, columns=None)
    assert (found.header, found.rows, found.run_ids) == (["metric", "model"], 2, set())
