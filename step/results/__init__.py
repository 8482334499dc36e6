"""Run records and the leaderboard."""

from step.results.leaderboard import append_row, read_leaderboard
from step.results.record import read_record, write_record
from step.results.schema import COLUMNS, SCHEMA_VERSION

__all__ = ["append_row", "read_leaderboard", "read_record", "write_record", "COLUMNS", "SCHEMA_VERSION"]
