"""Names that become parts of a path: a run's folder is ``<stamp>_<name>_<model>_<dataset>_s<seed>``.

A value that becomes one path component must stay one component inside its root: no path
separator, no ``..``, nothing absolute, no control character, not empty, not too long for a file
name. Unicode letters are fine (``name=Versuch-ä``). The CLI checks the command line's values before
Hydra makes a folder; :func:`check_config_names` checks the composed config again in ``run()``.
"""

from __future__ import annotations

import os
import unicodedata
from typing import Any

from step.errors import ConfigError

#: config keys whose values become parts of run folder names (conf/train.yaml, hydra.run/sweep)
PATH_KEYS = ("name", "model.name", "attention.name", "neuron.name", "dataset.name")
#: the longest value; the folder name adds a time stamp and three other names (255 bytes in all)
MAX_BYTES = 96
_SEPARATORS = {"/", "\\", os.sep, *([os.altsep] if os.altsep else [])}


def path_part_problem(value: str) -> str | None:
    """Why ``value`` cannot be one path component, or None when it can."""
    if value == "":
        return "it is empty"
    if any(sep in value for sep in _SEPARATORS):
        return "it holds a path separator"
    if ".." in value or value == ".":
        return "it holds '..' or is '.'"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        return "it holds a control character"
    if len(value.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return f"it is longer than {MAX_BYTES} bytes"
    return None


def check_path_part(key: str, value: Any) -> None:
    """Raise one :class:`ConfigError` when ``key=value`` would not stay one folder name."""
    problem = path_part_problem(str(value))
    if problem is not None:
        raise ConfigError(
            f"{key}={value!r} cannot be used: it becomes part of the run's folder name and {problem}. "
            "Use letters, digits, '-', '_' or '.' (unicode letters are fine); nothing was written."
        )


def check_config_names(cfg) -> None:
    """Every :data:`PATH_KEYS` value of a composed config is one safe path component."""
    from omegaconf import OmegaConf

    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            check_path_part(key, value)


def check_override_names(argv: list[str]) -> None:
    """The command line's values for :data:`PATH_KEYS` (each value of a ``a,b`` sweep list)."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.lstrip("+~").split("=", 1)
        if key not in PATH_KEYS:
            continue
        values = [value]
        if "," in value and not value.startswith(("'", '"')):
            values = value.split(",")
        for one in values:
            check_path_part(key, one.strip().strip("'\""))
