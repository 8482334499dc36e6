"""Leaderboard aggregation: seeds of one setting -> mean, sample std and n; the Pareto front.

A *setting* is one combination of the group-by columns (by default every component column and T,
so only the seed varies inside a group). For each value column v the aggregate has ``v_mean``,
``v_std`` (sample standard deviation, ddof=1; empty when n=1) and one ``n``: the number of rows of
the group with a metric value.

Rows are pooled only when they ran one config: a group is split by :func:`config_key` (the
``config_hash`` column: the resolved config without seed, name, paths and logger), and the
aggregate's ``config`` column names each part (8 characters) and ``configs`` how many parts its
group of ``by`` values has. Rows written before ``config_hash`` existed (schema 1, migrated) are
told apart by their command without its ``seed=``, their commit without ``+dirty`` and their epochs.

``spike_driven`` (the audit's verdict) aggregates to ``no`` when any run of the group was not spike-driven, to ``yes`` when all were, to
``ann`` for ANN twins, and stays empty for rows written before the audit existed.
"""

from __future__ import annotations

from collections.abc import Sequence

import hashlib
import re

import numpy as np
import pandas as pd

from step.errors import ConfigError
from step.results.schema import COLUMNS

#: a setting, up to its seed
DEFAULT_BY = ["experiment", "task", "dataset", "model", "attention", "neuron", "surrogate", "encoder", "backend", "T"]
#: columns averaged over seeds
VALUES = ["metric", "energy_mj", "energy_exact_mj", "energy_mem_mj", "energy_ann_mj", "energy_int8_mj", "sops", "firing_rate",
          "params", "wall_time_s"]


def read_rows(paths: Sequence[str]) -> pd.DataFrame:
    """Concatenate leaderboard CSVs (each is one ``pandas.read_csv``)."""
    frames = [pd.read_csv(p) for p in paths]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)


def select(df: pd.DataFrame, query: str | None = None, status: str | None = "ok") -> pd.DataFrame:
    """Rows with ``status`` (None keeps every status) that satisfy the pandas ``query``."""
    out = df
    if status is not None and "status" in out:
        out = out[out["status"] == status]
    if query:
        try:
            out = out.query(query)
        except Exception as err:  # noqa: BLE001 - pandas raises many types for a bad expression
            raise ConfigError(f"bad --query {query!r}: {err}. Columns: {', '.join(df.columns)}.") from err
    return out


def _text(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series([""] * len(df), index=df.index, dtype=object)
    return df[column].astype(object).where(df[column].notna(), "").astype(str)


def config_key(df: pd.DataFrame) -> pd.Series:
    """Per row, what must match for rows to pool: ``config_hash``; for rows without one, a hash of
    the command (``seed=...`` removed), the commit (``+dirty`` removed) and the epochs; "" when a row
    has none of these (it pools with the other such rows of its group)."""
    hashes = _text(df, "config_hash")
    legacy = (_text(df, "command").map(lambda c: re.sub(r"(^|\s)seed=\S*", " ", c).split())
              .map(" ".join) + "|" + _text(df, "git_commit").str.replace("+dirty", "", regex=False)
              + "|" + _text(df, "epochs"))
    legacy = legacy.map(lambda k: "" if k == "||" else "legacy:" + hashlib.sha1(k.encode()).hexdigest()[:12])
    return hashes.where(hashes != "", legacy)


def config_label(key) -> str:
    """The 8-character name of a :func:`config_key` shown in the aggregate's ``config`` column."""
    return str(key).removeprefix("legacy:")[:8]


def group_rows(df: pd.DataFrame, by: Sequence[str]):
    """``df.groupby`` over ``by`` and :func:`config_key` (the last key of each group), with a missing
    key read as a value ("") rather than dropping the row: rows of different configs never pool."""
    keyed = df[list(by)].astype(object).where(df[list(by)].notna(), "")
    return df.groupby([keyed[c] for c in by] + [config_key(df).rename("_config")], sort=True, dropna=False)


def combine_spike_driven(verdicts: pd.Series) -> str:
    """One verdict for a group of runs: ``no`` beats ``yes``; ``ann`` only when every run is an ANN twin."""
    seen = {str(v) for v in verdicts.dropna() if str(v)}
    for verdict in ("no", "yes", "ann"):
        if verdict in seen:
            return verdict
    return ""


def aggregate(df: pd.DataFrame, by: Sequence[str] = DEFAULT_BY, values: Sequence[str] = VALUES) -> pd.DataFrame:
    """One row per group of ``by`` and config: ``config``, ``configs``, ``metric_name``, ``n`` and
    mean/std of each value column (rows of different configs are never pooled)."""
    by = list(by)
    unknown = [c for c in by if c not in df.columns]
    if unknown:
        raise ConfigError(f"cannot group by {unknown}: not leaderboard columns. Columns: {', '.join(df.columns)}.")
    values = [v for v in values if v in df.columns and v not in by]
    work = df.copy()
    for v in values:
        work[v] = pd.to_numeric(work[v], errors="coerce")
    groups = group_rows(work, by)  # a missing key is a value, not a dropped row
    rows = []
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key[:-1]))
        row["config"] = config_label(key[-1])
        if "metric_name" in part and "metric_name" not in by:
            names = sorted({str(x) for x in part["metric_name"].dropna()})
            row["metric_name"] = ",".join(names)
        row["n"] = int(part["metric"].notna().sum()) if "metric" in part else len(part)
        for v in values:
            col = part[v].dropna()
            row[f"{v}_mean"] = float(col.mean()) if len(col) else np.nan
            row[f"{v}_std"] = float(col.std(ddof=1)) if len(col) > 1 else np.nan
        if "spike_driven" in part and "spike_driven" not in by:
            row["spike_driven"] = combine_spike_driven(part["spike_driven"])
        rows.append(row)
    columns = by + ["config", "configs"]
    columns += (["metric_name"] if "metric_name" in df.columns and "metric_name" not in by else []) + ["n"]
    columns += [f"{v}_{s}" for v in values for s in ("mean", "std")]
    if "spike_driven" in df.columns and "spike_driven" not in by:
        columns.append("spike_driven")
    out = pd.DataFrame(rows, columns=columns)
    out["configs"] = out.groupby(by, dropna=False)["config"].transform("size") if len(out) else []
    return out


def pareto_front(cost: Sequence[float], score: Sequence[float]) -> np.ndarray:
    """Mask of the points no other point beats: lower-or-equal cost and higher-or-equal score, one strictly.

    Points with a missing cost or score are never on the front.
    """
    cost = np.asarray(cost, dtype=float)
    score = np.asarray(score, dtype=float)
    ok = ~(np.isnan(cost) | np.isnan(score))
    front = np.zeros(len(cost), dtype=bool)
    for i in np.flatnonzero(ok):
        others = ok & (cost <= cost[i]) & (score >= score[i]) & ((cost < cost[i]) | (score > score[i]))
        front[i] = not others.any()
    return front
