"""Reading the CIFAR batches (Python pickles by format) without letting a crafted file run code.

``pickle.load`` builds whatever a file names, so a crafted ``data_batch_1`` under the data root
could run a command. :func:`load` allows exactly what the CIFAR files hold (dicts, lists, strings,
numbers and numpy arrays) and refuses any other global with :class:`pickle.UnpicklingError`
before it is looked up.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

#: the globals a numpy array (and a numpy scalar) pickles to, under numpy 1 and 2 module names
ALLOWED = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
           for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"the file names {module}.{name}, which a dataset file never holds; "
                                         "it was not loaded (loading it could run code)")
        return super().find_class(module, name)


def load(path: str | os.PathLike, encoding: str = "latin1") -> Any:
    """The object pickled in ``path``, built from plain data and numpy arrays only."""
    with open(path, "rb") as fh:
        return _ArraysOnly(fh, encoding=encoding).load()
