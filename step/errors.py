"""User-facing errors.

Every error a user can provoke through the CLI or a config derives from :class:`StepError`. The
console scripts print its message (one paragraph, no traceback) and exit non-zero.
"""


class StepError(Exception):
    """An error whose message is meant for the user and says what to do."""

    exit_code = 2


class ConfigError(StepError):
    """A configuration names something that does not exist or holds a value out of range."""


class UnknownNameError(ConfigError, KeyError):
    """A registry was asked for a name it does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatasetMissingError(StepError):
    """A dataset's files are not under the data root."""


class DatasetCorruptError(StepError):
    """A dataset file under the data root cannot be read (truncated, damaged, or not what it should be)."""


class CheckpointError(StepError):
    """A checkpoint is corrupt or does not fit the model it is loaded into."""


class DivergedError(StepError):
    """The loss became NaN or infinite."""


class OutputError(StepError):
    """A run's result could not be written anywhere (the output and the results folders both failed)."""
