"""Root conftest of a mutation workspace (copied there as ``conftest.py`` by ``mutate.py``).

mutmut hands each mutant the tests that cover the mutated function as an unordered set and runs
them with ``-x``. Ordering them by the durations its stats run measured (``mutmut-stats.json``)
lets a mutant that a quick unit test kills stop after that test instead of after a training run:
the verdicts are the same, only the time changes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

_STATS = Path(__file__).resolve().parent / "mutmut-stats.json"  # both live in the mutants/ folder


def pytest_collection_modifyitems(session, config, items):  # noqa: ARG001 (pytest's signature)
    if not _STATS.exists():
        return  # the stats run itself: keep pytest's order
    durations = json.loads(_STATS.read_text()).get("duration_by_test", {})
    items.sort(key=lambda item: durations.get(item.nodeid, math.inf))
