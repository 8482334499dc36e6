"""``results/reference.csv``: the published numbers, in the leaderboard's schema, marked ``source=paper``.

Built only from the ``reference:`` blocks of ``experiments/experiment/*.yaml`` (``step-board
--build-reference``), so each paper number is typed once, next to the setting that reproduces it.
The components (model, attention, neuron, dataset, T, ...) come from composing that experiment, so
a reference row lines up with the rows our runs of the same experiment write. A reference block::

    reference:
      paper: <title (authors, venue)>
      metric_name: top1
      params_m: 9.32          # millions, as published (null when unknown)
      energy_mj: null         # published energy per inference, when given
      results:                # one row each: the value and where it is printed
        - {value: 95.51, source: "<paper/table/README>"}

In a reference row ``command`` holds the citation (paper; source) and ``record_path`` the experiment
file; ``run_id`` is ``paper:<experiment>:<i>``.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from step.results.schema import COLUMNS, SCHEMA_VERSION


def experiment_files() -> list[Path]:
    from step.config.paths import experiments_dir

    return sorted((experiments_dir() / "experiment").glob("*.yaml"))


def reference_rows(name: str) -> list[dict[str, Any]]:
    """The reference rows of experiment ``name`` (empty when it has no reference block)."""
    from omegaconf import OmegaConf

    from step.config import compose

    cfg = compose([f"experiment={name}"])
    ref = OmegaConf.to_container(cfg.reference, resolve=True) if cfg.get("reference") else None
    if not ref:
        return []
    params_m = ref.get("params_m")
    rows = []
    for i, result in enumerate(ref.get("results") or []):
        rows.append({
            "schema_version": SCHEMA_VERSION, "run_id": f"paper:{name}:{i}", "source": "paper",
            "experiment": name, "task": cfg.task.name, "dataset": cfg.dataset.name, "model": cfg.model.name,
            "attention": cfg.attention.name, "neuron": cfg.neuron.name, "surrogate": cfg.surrogate.name,
            "encoder": cfg.encoder.name, "backend": cfg.backend.name, "T": cfg.T,
            "params": "" if params_m is None else int(round(float(params_m) * 1e6)),
            "metric_name": ref.get("metric_name", "top1"), "metric": result["value"],
            "energy_mj": "" if ref.get("energy_mj") is None else ref["energy_mj"],
            "epochs": cfg.trainer.epochs, "status": "ok",
            "record_path": f"experiments/experiment/{name}.yaml",
            "command": f"{ref.get('paper', '')}; {result.get('source', '')}",
        })
    return rows


def build_reference(path: str | os.PathLike) -> tuple[int, dict[str, str]]:
    """Write every experiment's reference rows to ``path``; returns (rows written, {experiment: error}).

    An experiment that does not compose (a component not installed yet) is skipped and reported.
    """
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for file in experiment_files():
        try:
            rows.extend(reference_rows(file.stem))
        except Exception as err:  # noqa: BLE001 - report and go on: one bad file must not hide the rest
            failed[file.stem] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in COLUMNS})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)
    return len(rows), failed
