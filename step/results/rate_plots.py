"""Firing-rate figures of the board: one bar per ``--by`` setting (mean ± std over seeds, n) and
per-layer firing rates read from each run's ``record.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from step.results import style
from step.results.aggregate import aggregate
from step.results.plots import label, panel_keys, varying


def _settings(df: pd.DataFrame, by: Sequence[str]) -> tuple[list[str], list[str]]:
    """The grouping keys (panel keys first, then ``by``) and those a bar's label shows: the ones that
    vary, without task and metric (the dataset says which)."""
    keys = [c for c in dict.fromkeys([*panel_keys(df), *by]) if c in df]
    shown = [k for k in varying(df, keys) if k != "metric_name"]
    return keys, shown or [k for k in ("model",) if k in df] or keys[:1]


def _bar_label(row: pd.Series, shown: Sequence[str]) -> str:
    rest = [k for k in shown if k not in ("dataset", "task")]
    text = label(row, rest)
    where = [str(row[k]) for k in ("dataset", "task") if k in shown and str(row[k]) != "classification"]
    if where:
        text = f"{' '.join(where)}: {text}"
    if row.get("configs", 1) > 1:  # one setting of `by` ran several configs: name each
        text += f" (config {row['config']})"
    return text


def firing_rates(rows: pd.DataFrame, by: Sequence[str] = ("model",)):
    """Mean firing rate of each setting of ``by`` (± std over its runs, n), one bar per setting."""
    if "firing_rate" not in rows:
        return None
    data = rows.assign(firing_rate=pd.to_numeric(rows["firing_rate"], errors="coerce")).dropna(subset=["firing_rate"])
    if data.empty:
        return None
    keys, shown = _settings(data, by)
    agg = aggregate(data.assign(metric=data["firing_rate"]), by=keys, values=["firing_rate"])
    agg["label"] = [_bar_label(r, shown) for _, r in agg.iterrows()]
    agg["family"] = agg["model"].map(style.family) if "model" in agg else "runs"
    agg = agg.sort_values("label", ascending=False)
    colours = style.palette(agg["family"])
    with style.context() as plt:
        longest = max(len(t) for t in agg["label"])
        fig, ax = plt.subplots(figsize=(6.5 + 0.065 * longest, 1.2 + 0.24 * len(agg)))
        pos = np.arange(len(agg))
        spread = np.nan_to_num(agg["firing_rate_std"].to_numpy(float))
        ax.barh(pos, agg["firing_rate_mean"], xerr=spread, color=[colours[f] for f in agg["family"]], capsize=2,
                error_kw=dict(lw=0.8))
        ax.set_yticks(pos, agg["label"])
        ends = agg["firing_rate_mean"].to_numpy(float) + spread
        top = float(ends.max()) or 1.0
        for p, m, end, k in zip(pos, agg["firing_rate_mean"], ends, agg["n"]):
            ax.text(end + 0.015 * top, p, f"{style.number(m)}  n={int(k)}", va="center", fontsize=7)
        ax.set_xlim(0, top * 1.3)
        ax.set_xlabel(f"mean firing rate (spikes per neuron per step); bars: {'/'.join(shown)}, mean ± std over seeds")
        fig.suptitle("firing rate per setting", x=0.01, ha="left")
        ax.grid(axis="y", alpha=0)
        from matplotlib.patches import Patch

        fams = sorted(set(agg["family"]))
        fig.legend(handles=[Patch(color=colours[f], label=f) for f in fams], title="model family",
                   loc="outside right upper", frameon=False)
    return fig


def read_layer_rates(record: dict) -> dict[str, float]:
    """Neuron layer name -> firing rate (``output_rate``) from a record's ``energy.per_layer``."""
    layers = (record.get("energy") or {}).get("per_layer") or []
    return {r["name"]: float(r.get("output_rate") or 0.0) for r in layers if r.get("kind") == "neuron"}


def layer_firing_rates(rows: pd.DataFrame, by: Sequence[str], root: str | Path, max_panels: int = 9):
    """Per-layer firing-rate bars of each setting (mean over its runs' record.json, read from
    ``root / record_path``); None when no record is found."""
    if "record_path" not in rows:
        return None
    keys, shown = _settings(rows, by)
    groups = []
    for _, part in rows.groupby([rows[c].astype(str) for c in keys], sort=True):
        rates = []
        for rel in part["record_path"].dropna().astype(str):
            path = Path(root) / rel
            if path.is_file():
                found = read_layer_rates(json.loads(path.read_text()))
                if found:
                    rates.append(found)
        if rates:
            layers = list(rates[0])
            table = np.array([[r.get(k, np.nan) for k in layers] for r in rates])
            groups.append((_bar_label(part.iloc[0], shown), part.iloc[0].get("model", ""), layers, table))
    if not groups:
        return None
    groups = sorted(groups, key=lambda g: -len(g[3]))[:max_panels]
    groups.sort(key=lambda g: g[0])
    colours = style.palette(style.family(g[1]) for g in groups)
    tallest = max(len(g[2]) for g in groups)
    with style.context() as plt:
        cols = min(3, len(groups))
        nrows = -(-len(groups) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 0.6 + 0.17 * tallest * nrows), squeeze=False)
        for ax in axes.flat[len(groups):]:
            ax.set_visible(False)
        for ax, (name, model, layers, table) in zip(axes.flat, groups):
            pos = np.arange(len(layers))[::-1]
            ax.barh(pos, np.nanmean(table, axis=0), xerr=np.nan_to_num(np.nanstd(table, axis=0, ddof=1))
                    if len(table) > 1 else None, color=colours[style.family(model)], capsize=1.5, error_kw=dict(lw=0.6))
            ax.set_yticks(pos, layers, fontsize=6)
            ax.set_title(f"{name} (n={len(table)})")
            ax.set_xlabel("firing rate (spikes per neuron per step)")
            ax.grid(axis="y", alpha=0)
        fig.suptitle("per-layer firing rate (neuron layers, evaluation set; mean ± std over seeds)", x=0.01, ha="left")
    return fig
