"""The leaderboard's file lock and header check, shown by what ``append_row`` does under contention.

The parallel-append test in tests/test_runner.py passes even without the lock (small appends to a
file opened for appending rarely interleave), so here the lock is held by someone else, as a
sweep job holds it while it writes, and the writer must wait for it.
"""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
from filelock import FileLock

from step.errors import StepError
from step.results.leaderboard import append_row
from step.results.schema import COLUMNS


def test_append_waits_for_the_lock_held_by_another_writer(tmp_path):
    board = tmp_path / "leaderboard.csv"
    append_row(board, {"run_id": "first", "status": "ok"})
    done = threading.Event()
    holder = FileLock(str(board) + ".lock")  # another process's lock: the same lock file
    with holder:
        writer = threading.Thread(target=lambda: (append_row(board, {"run_id": "second", "status": "ok"}), done.set()))
        writer.start()
        time.sleep(0.5)
        assert not done.is_set()  # still waiting for the lock
        assert list(pd.read_csv(board)["run_id"]) == ["first"]  # nothing written meanwhile
    writer.join(30)
    assert done.is_set() and list(pd.read_csv(board)["run_id"]) == ["first", "second"]


def test_a_new_board_gets_the_header_once_under_contention(tmp_path):
    """Writers that find no file while another holds the lock must not each write a header."""
    board = tmp_path / "leaderboard.csv"
    holder = FileLock(str(board) + ".lock")
    with holder:
        writers = [threading.Thread(target=append_row, args=(board, {"run_id": f"w{i}", "status": "ok"})) for i in range(3)]
        for w in writers:
            w.start()
        time.sleep(0.3)
        assert not board.exists()
    for w in writers:
        w.join(30)
    text = board.read_text()
    assert text.count("schema_version,") == 1
    assert sorted(pd.read_csv(board)["run_id"]) == ["w0", "w1", "w2"]


def test_a_board_of_another_schema_is_refused_and_left_untouched(tmp_path):
    board = tmp_path / "leaderboard.csv"
    board.write_text("schema_version,run_id,accuracy\n0,old,99.0\n")
    before = board.read_bytes()
    with pytest.raises(StepError, match="columns of another leaderboard schema.*Nothing was trained or written"):
        append_row(board, {"run_id": "new", "status": "ok"})
    assert board.read_bytes() == before
    reordered = tmp_path / "reordered.csv"
    reordered.write_text(",".join(reversed(COLUMNS)) + "\n")
    with pytest.raises(StepError):
        append_row(reordered, {"run_id": "new"})


def test_an_empty_board_file_gets_the_header(tmp_path):
    board = tmp_path / "leaderboard.csv"
    board.write_text("")
    append_row(board, {"run_id": "x", "status": "ok"})
    df = pd.read_csv(board)
    assert list(df.columns) == COLUMNS and list(df["run_id"]) == ["x"]
