"""Leaderboard figures (matplotlib, Agg backend, PNG): accuracy vs energy with the Pareto front,
accuracy vs T, and mean firing rate per model. Each takes the aggregated table
(:func:`step.results.aggregate.aggregate`) and returns the path written, or None when the table has
nothing to plot (e.g. no energy column filled)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from step.results.aggregate import pareto_front


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def label(row: pd.Series, keys: Sequence[str]) -> str:
    """A short point label from the grouping keys that vary (e.g. ``spikformer/sdsa3/lif``)."""
    parts = [f"T={row[k]}" if k == "T" else str(row[k]) for k in keys if k in row and str(row[k]) not in ("", "nan")]
    return "/".join(parts)


def varying(agg: pd.DataFrame, by: Sequence[str]) -> list[str]:
    return [c for c in by if c in agg and agg[c].astype(str).nunique() > 1]


def accuracy_vs_energy(agg: pd.DataFrame, by: Sequence[str], path: str | Path, metric: str = "top1") -> Path | None:
    data = agg.dropna(subset=["metric_mean", "energy_mj_mean"]) if "energy_mj_mean" in agg else agg.iloc[0:0]
    if data.empty:
        return None
    plt = _pyplot()
    x, y = data["energy_mj_mean"].to_numpy(float), data["metric_mean"].to_numpy(float)
    front = pareto_front(x, y)
    keys = varying(data, by) or list(by)[:1]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.errorbar(x, y, xerr=np.nan_to_num(data["energy_mj_std"].to_numpy(float)),
                yerr=np.nan_to_num(data["metric_std"].to_numpy(float)), fmt="o", color="tab:blue",
                alpha=0.7, label="settings (mean ± std over seeds)")
    order = np.argsort(x[front])
    ax.plot(x[front][order], y[front][order], "-", color="tab:red", drawstyle="steps-post", zorder=1)
    ax.scatter(x[front], y[front], s=110, facecolors="none", edgecolors="tab:red", zorder=3, label="Pareto front")
    for (_, row), xi, yi in zip(data.iterrows(), x, y):
        ax.annotate(label(row, keys), (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("energy per inference (mJ)")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title("accuracy vs energy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def accuracy_vs_T(agg: pd.DataFrame, by: Sequence[str], path: str | Path, metric: str = "top1") -> Path | None:
    if "T" not in agg or agg["T"].astype(str).nunique() < 2:
        return None
    plt = _pyplot()
    data = agg.dropna(subset=["metric_mean"]).copy()
    data["T"] = pd.to_numeric(data["T"], errors="coerce")
    rest = [c for c in by if c != "T" and c in data]
    keys = varying(data, rest) or rest[:1]
    fig, ax = plt.subplots(figsize=(7, 5))
    for _, part in data.groupby([data[c].astype(str) for c in rest] if rest else [np.zeros(len(data))]):
        if part["T"].nunique() < 2:
            continue
        part = part.sort_values("T")
        ax.errorbar(part["T"], part["metric_mean"], yerr=np.nan_to_num(part["metric_std"].to_numpy(float)),
                    marker="o", capsize=3, label=label(part.iloc[0], keys))
    if not ax.lines:
        plt.close(fig)
        return None
    ax.set_xscale("log", base=2)
    ax.set_xlabel("timesteps T")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title("accuracy vs T")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def firing_rates(df: pd.DataFrame, path: str | Path, by: str = "model") -> Path | None:
    """Mean firing rate per ``by`` value over the given (not aggregated) rows, ± std over rows."""
    if "firing_rate" not in df:
        return None
    data = df.assign(firing_rate=pd.to_numeric(df["firing_rate"], errors="coerce")).dropna(subset=["firing_rate"])
    if data.empty:
        return None
    stats = data.groupby(data[by].astype(str))["firing_rate"].agg(["mean", "std", "count"]).sort_index()
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(stats) + 2), 4.5))
    ax.bar(stats.index, stats["mean"], yerr=np.nan_to_num(stats["std"].to_numpy(float)), capsize=3, color="tab:green")
    for i, (m, n) in enumerate(zip(stats["mean"], stats["count"])):
        ax.text(i, m, f"{m:.3f}\nn={n}", ha="center", va="bottom", fontsize=7)
    ax.set_ylabel("mean firing rate (spikes per neuron per step)")
    ax.set_title(f"firing rate per {by}")
    ax.tick_params(axis="x", rotation=30)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
