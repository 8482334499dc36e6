"""Where datasets live under the data root, and the one message a missing dataset gives.

The data root is ``paths.data_root`` (environment variable ``STEP_DATA``); the runner passes it to
every builder as ``root=``. Builders never fall back to a path of their own.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from step.errors import ConfigError, DatasetCorruptError, DatasetMissingError


def data_root(root: str | os.PathLike | None, dataset: str) -> Path:
    """``root`` as a path (``~`` expanded); a dataset that reads files cannot run without one."""
    if root is None or str(root) == "":
        raise ConfigError(
            f"dataset '{dataset}' reads files from the data root, but none is set: set paths.data_root "
            "(or the environment variable STEP_DATA) to the folder that holds your datasets."
        )
    return Path(os.path.expanduser(str(root)))


def missing_error(
    dataset: str,
    expected: Iterable[str],
    where: Path,
    source: str,
    can_download: bool,
    alternative: str,
    failed_download: BaseException | None = None,
) -> DatasetMissingError:
    """The single error a missing dataset raises: what was expected where, how to get it, what to use instead.

    ``failed_download``: the error of a ``dataset.download=true`` attempt (offline machine, moved URL).
    """
    files = ", ".join(expected)
    how = f"Get it from {source} and place it there"
    if can_download and failed_download is None:
        how += f", or run again with dataset.download=true to fetch it from {source} (needs a connection)"
    tried = ""
    if failed_download is not None:
        tried = (f" dataset.download=true was set but fetching it failed "
                 f"({type(failed_download).__name__}: {failed_download}); is this machine online?")
    return DatasetMissingError(
        f"Dataset '{dataset}' not found: expected {files} under {where} (the data root is paths.data_root, "
        f"env STEP_DATA).{tried} {how}. To run without it, use the embedded dataset '{alternative}' "
        f"(dataset={alternative}), which needs no download."
    )


@contextmanager
def download_guard(dataset: str, expected: Iterable[str], where: Path, source: str, alternative: str,
                   download: bool) -> Iterator[None]:
    """Turn a failed fetch (no connection, HTTP error, a corrupt archive) into the one missing-dataset message."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        if not download:
            raise
        raise missing_error(dataset, expected, where, source, True, alternative, failed_download=err) from err


def params_key(params: dict[str, Any], n: int = 12) -> str:
    """A short stable hash of keyword values, used to name caches so that other settings never reuse them."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def atomic_save_npz(path: Path, **arrays: Any) -> None:
    """Write an ``.npz`` through a temporary name so concurrent readers never see half a file."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_npz_cache(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The arrays of a cache file, or one :class:`DatasetCorruptError` naming it (it is made again once
    deleted). Pickled objects are never loaded (``allow_pickle=False``)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: np.asarray(f[k]) for k in f.files}
        missing = [k for k in required if k not in arrays]
        if missing:
            raise KeyError(f"no {', '.join(missing)} in it")
        return arrays
    except Exception as err:  # noqa: BLE001 - whatever a damaged file raises (BadZipFile, ValueError, EOFError, KeyError)
        raise DatasetCorruptError(
            f"the dataset cache {path} cannot be read ({type(err).__name__}: {err}); it is corrupt or truncated. "
            "Delete it and re-run: it is made again.") from None


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine (None when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
