"""Leaderboard figures (matplotlib, one style: :mod:`step.results.style`).

* :func:`accuracy_vs_energy` -- one panel per (dataset, task, metric); colour = model family,
  marker = attention (or the first other ``--by`` key that varies), a legend instead of point
  labels (only the Pareto front is labelled, placed without overlap); energy per inference on a log
  axis in µJ under a named convention; error bars = std over seeds, the energy bar clipped above
  zero on the log axis; n in the legend; published numbers as open stars.
* :func:`accuracy_vs_T` -- the timesteps suite (rows whose command holds ``suite=timesteps``):
  mean ± std over seeds against T, one panel per (dataset, task, metric).

The firing-rate figures are in :mod:`step.results.rate_plots`.

Each returns a matplotlib Figure (or None when the rows have nothing to draw) so tests can inspect
it; :func:`step.results.style.save` writes it as PNG, SVG and PDF.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from step.results import style
from step.results.aggregate import aggregate, pareto_front

#: one panel per value of these columns: metrics of different tasks are never drawn together
PANEL = ("dataset", "task", "metric_name")
#: energy convention -> (leaderboard column, what the axis says)
ENERGY = {
    "paper": ("energy_mj", "paper convention: firing rate × T × FLOPs"),
    "exact": ("energy_exact_mj", "exact convention: event-driven, in-bounds fan-out"),
}
#: keys that never pick the marker (they are the panel, the colour, or not a setting)
NOT_MARKER = {"dataset", "task", "metric_name", "model", "experiment", "config"}
#: the lower end of an energy error bar never goes below this fraction of the mean (log axis)
LOG_FLOOR = 0.1
#: the energy axis is in µJ; the board's columns are in mJ
UJ_PER_MJ = 1000.0


def label(row: pd.Series, keys: Sequence[str], wrap: bool = False) -> str:
    """A short point label from the grouping keys that vary (e.g. ``spikformer/sdsa3/lif``); with
    ``wrap`` a model's override list (``[depth=1,...]``) goes on its own line."""
    parts = [f"T={row[k]}" if k == "T" else str(row[k]) for k in keys if k in row and str(row[k]) not in ("", "nan")]
    text = "/".join(parts)
    return text.replace("[", "\n[", 1) if wrap else text


def front_labels(rows: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """Labels of a panel's Pareto points: only the keys that differ between those points, a model's
    override list (``[depth=1,...]``, the same for every point of a CPU suite) left out."""
    shown = [k for k in keys if k in rows and rows[k].astype(str).nunique() > 1] or list(keys[:1])
    return [re.sub(r"\[[^\]]*\]", "", label(r, shown)) for _, r in rows.iterrows()]


def varying(agg: pd.DataFrame, by: Sequence[str]) -> list[str]:
    return [c for c in by if c in agg and agg[c].astype(str).nunique() > 1]


def panel_keys(df: pd.DataFrame) -> list[str]:
    return [c for c in PANEL if c in df]


def panels(df: pd.DataFrame):
    """(title, part) per (dataset, task, metric) of ``df``, sorted by title."""
    keys = panel_keys(df)
    if not keys or df.empty:
        yield "", df
        return
    for key, part in df.groupby([df[c].astype(str) for c in keys], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        yield " · ".join(k for k in key if k not in ("", "nan")), part


def energy_axis_label(convention: str = "paper") -> str:
    """The x label of every energy panel: unit, scale and convention."""
    return f"energy per inference (µJ, log), {convention} convention"


def energy_caption(convention: str = "paper") -> str:
    """What the energy axis measures, once under the figure."""
    return (f"energy: {ENERGY[convention][1]} (leaderboard column {ENERGY[convention][0]}); E_MAC, E_AC of 45 nm CMOS "
            f"(Horowitz 2014); points: mean over seeds, circled: Pareto front; error bars: std over seeds, "
            f"energy bars clipped at {LOG_FLOOR:g} x mean on the log axis")


def log_ticks(ax) -> None:
    """Ticks at 1, 2, 5 x 10^k written in plain numbers (no 2x10^0 on a short log axis)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: style.number(v, 2)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def log_errors(mean: np.ndarray, std: np.ndarray, floor: float = LOG_FLOOR) -> np.ndarray:
    """Asymmetric ``[lower, upper]`` error lengths for a log axis: ± std, the lower end clipped at
    ``floor`` x mean so a bar never reaches zero or below; 0 where std is missing."""
    mean = np.asarray(mean, dtype=float)
    std = np.nan_to_num(np.asarray(std, dtype=float))
    lower = mean - np.maximum(mean - std, floor * mean)
    return np.vstack([lower, std])


def _grid(n: int, plt, width: float = 4.2, height: float = 3.4):
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 2.2, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _n_text(ns) -> str:
    ns = sorted({int(n) for n in ns if not pd.isna(n)})
    if not ns:
        return "n=?"
    return f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}–{ns[-1]}"


def marker_key(data: pd.DataFrame, by: Sequence[str]) -> str | None:
    """``attention`` when it varies, else the first other ``by`` key that does."""
    for key in ["attention", *by]:
        if key in data and key not in NOT_MARKER and data[key].astype(str).nunique() > 1:
            return key
    return None


def place_labels(ax, points: Sequence[tuple[float, float]], texts: Sequence[str], avoid: Sequence[tuple[float, float]] = ()):
    """Annotate each point with its text at the first of a ring of offsets where the text overlaps
    no earlier label, no point and stays inside the axes; the last candidate (with a leader line)
    when none is free."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    to_px = ax.transData.transform
    dots = [to_px(p) for p in [*points, *avoid]]
    placed = []
    offsets = [(r * dx, r * dy) for r in (6, 14, 24, 36) for dx, dy in
               ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1.2), (0, -1.2), (1.3, 0), (-1.3, 0))]
    made = []
    for (x, y), text in zip(points, texts):
        best = None
        for dx, dy in offsets:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=6.5,
                              ha="left" if dx > 0 else "right" if dx < 0 else "center",
                              va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                              arrowprops=dict(arrowstyle="-", lw=0.5, color="0.4") if abs(dx) + abs(dy) > 20 else None,
                              bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
            ann.set_in_layout(False)
            box = ann.get_window_extent(renderer)
            outside = not (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1)
            clashes = sum(box.overlaps(b) for b in placed) + sum(
                box.x0 - 3 <= px <= box.x1 + 3 and box.y0 - 3 <= py <= box.y1 + 3 for px, py in dots)
            score = 100 * outside + clashes
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, ann, box)
            else:
                ann.remove()
            if score == 0:
                break
        placed.append(best[2])
        made.append(best[1])
    return made


def accuracy_vs_energy(agg: pd.DataFrame, by: Sequence[str], reference: pd.DataFrame | None = None,
                       convention: str = "paper"):
    """Metric against energy per inference, one panel per (dataset, task, metric); None when no
    row has both a metric and a positive energy."""
    column = ENERGY[convention][0]
    mean, std = f"{column}_mean", f"{column}_std"
    data = agg.dropna(subset=["metric_mean", mean]) if mean in agg and "metric_mean" in agg else agg.iloc[0:0]
    data = data[data[mean] > 0].copy()
    ref = _published(reference, column="energy_mj")
    if data.empty and (ref is None or ref.empty):
        return None
    data["family"] = data["model"].map(style.family) if "model" in data else "runs"
    mkey = marker_key(data, by)
    families = set(data["family"]) | (set(ref["model"].map(style.family)) if ref is not None else set())
    colours = style.palette(families)
    marks = style.markers(data[mkey].astype(str)) if mkey else {}
    both = pd.concat([data, ref], ignore_index=True) if ref is not None else data
    titled = list(panels(both))
    jobs = []  # labels are placed once the layout is final
    label_keys = [k for k in varying(data, by) if k not in PANEL] or [k for k in ("model", "attention") if k in data]
    with style.context() as plt:
        fig, axes = _grid(len(titled), plt)
        for ax, (title, part) in zip(axes, titled):
            ours = part[part.get("source", pd.Series("run", index=part.index)).fillna("run") != "paper"]
            paper = part[part.get("source", pd.Series("run", index=part.index)).fillna("run") == "paper"]
            x, y = ours[mean].to_numpy(float) * UJ_PER_MJ, ours["metric_mean"].to_numpy(float)
            xerr = log_errors(x, ours[std].to_numpy(float) * UJ_PER_MJ) if std in ours else None
            yerr = np.nan_to_num(ours["metric_std"].to_numpy(float)) if "metric_std" in ours else None
            for i, (_, row) in enumerate(ours.iterrows()):
                ax.errorbar(x[i], y[i], xerr=None if xerr is None else xerr[:, i:i + 1],
                            yerr=None if yerr is None else [yerr[i]], fmt=marks.get(str(row[mkey]), "o") if mkey else "o",
                            color=colours[row["family"]], ms=6, mec="white", mew=0.5, elinewidth=0.8,
                            capsize=2, alpha=0.9, zorder=3)
            if len(paper):
                px = paper["energy_mj"].to_numpy(float) * UJ_PER_MJ
                ax.scatter(px, paper["metric"].to_numpy(float), marker=style.PUBLISHED_MARKER, s=70, facecolors="none",
                           edgecolors=[colours[style.family(m)] for m in paper["model"]], linewidths=1.0, zorder=4)
            if len(ours):
                front = pareto_front(x, y)
                order = np.argsort(x[front])
                ax.plot(x[front][order], y[front][order], "-", color="0.35", lw=0.8, drawstyle="steps-post", zorder=2)
                ax.scatter(x[front], y[front], s=120, facecolors="none", edgecolors="0.35", lw=0.8, zorder=2)
            ax.set_xscale("log")
            log_ticks(ax)
            ax.set_title(title + (" (published only)" if ours.empty else ""))
            ax.set_ylabel(f"{part['metric_name'].iloc[0] if 'metric_name' in part else 'metric'} (%)")
            ax.set_xlabel(energy_axis_label(convention))
            _pad_log(ax, np.concatenate([x, paper["energy_mj"].to_numpy(float) * UJ_PER_MJ if len(paper) else []]))
            if len(ours):
                texts = front_labels(ours[front], label_keys)
                jobs.append((ax, list(zip(x[front], y[front])), texts, list(zip(x[~front], y[~front]))))
        handles = _energy_legend(plt, data, colours, mkey, marks, ref)
        fig.legend(handles=handles, loc="outside right upper", frameon=False)
        fig.suptitle("accuracy vs energy", x=0.01, ha="left")
        import textwrap

        fig.supxlabel(textwrap.fill(energy_caption(convention), 75 * min(3, len(titled)) + 40), fontsize=7)
        fig.canvas.draw()  # constrained layout settles the axes; then it is frozen so labels stay put
        fig.set_layout_engine("none")
        for ax, points, texts, avoid in jobs:
            place_labels(ax, points, texts, avoid=avoid)
    return fig


def _pad_log(ax, x: np.ndarray) -> None:
    x = x[np.isfinite(x) & (x > 0)]
    if len(x):
        lo, hi = x.min(), x.max()
        ax.set_xlim(lo * LOG_FLOOR / 1.5 if lo == hi else lo / 3, hi * 2.5)


def _published(reference: pd.DataFrame | None, column: str) -> pd.DataFrame | None:
    if reference is None or column not in reference:
        return None
    ref = reference[reference.get("source", pd.Series("paper", index=reference.index)).fillna("paper") == "paper"].copy()
    ref[column] = pd.to_numeric(ref[column], errors="coerce")
    ref["metric"] = pd.to_numeric(ref["metric"], errors="coerce")
    ref = ref.dropna(subset=[column, "metric"])
    ref = ref[ref[column] > 0]
    ref["source"] = "paper"
    return ref


def _energy_legend(plt, data, colours, mkey, marks, ref):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="none", marker="none", label="model family (seeds per point)")]
    for fam in sorted(colours):
        ns = data.loc[data["family"] == fam, "n"] if "n" in data else []
        text = f"{fam} ({_n_text(ns)})" if len(ns) else f"{fam} (published)"
        handles.append(Line2D([], [], ls="none", marker="o", color=colours[fam], label=text))
    if mkey:
        handles.append(Line2D([], [], ls="none", marker="none", label=f"\n{mkey}"))
        for value, m in marks.items():
            handles.append(Line2D([], [], ls="none", marker=m, color="0.3", label=value))
    handles.append(Line2D([], [], ls="none", marker="none", label=""))
    handles.append(Line2D([], [], ls="none", marker="o", ms=10, mfc="none", mec="0.35", label="Pareto front (labelled)"))
    if ref is not None and len(ref):
        handles.append(Line2D([], [], ls="none", marker=style.PUBLISHED_MARKER, ms=9, mfc="none", mec="0.2",
                              label="published (paper's own energy)"))
    return handles


def timesteps_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the timesteps suite (their command holds ``suite=timesteps``); all rows when
    none does."""
    if "command" in rows:
        mine = rows[rows["command"].astype(str).str.contains(r"(?:^|\s)suite=timesteps(?:\s|$)", regex=True)]
        if len(mine):
            return mine
    return rows


def accuracy_vs_T(rows: pd.DataFrame, by: Sequence[str]):
    """Mean ± std over seeds against T for each setting run at several T (the timesteps suite when
    the rows hold it), one panel per (dataset, task, metric); None when no setting has two T."""
    data = timesteps_rows(rows)
    if "T" not in data or "metric" not in data:
        return None
    keys = [c for c in dict.fromkeys([*panel_keys(data), *by]) if c in data and c != "T"]
    agg = aggregate(data, by=[*keys, "T"], values=["metric"])
    agg["T"] = pd.to_numeric(agg["T"], errors="coerce")
    agg = agg.dropna(subset=["metric_mean", "T"])
    curve_keys = [k for k in keys if k not in PANEL]
    shown = [k for k in varying(agg, curve_keys) if k != "experiment"] or curve_keys[:1]
    curves = []
    for title, part in panels(agg):
        for _, curve in part.groupby([part[c].astype(str) for c in curve_keys] if curve_keys else np.zeros(len(part))):
            if curve["T"].nunique() >= 2:
                curves.append((title, curve.sort_values("T")))
    if not curves:
        return None
    titles = sorted({t for t, _ in curves})
    fams = style.palette(label(c.iloc[0], shown) for _, c in curves)
    with style.context() as plt:
        fig, axes = _grid(len(titles), plt, width=4.6)
        for ax, title in zip(axes, titles):
            for t, curve in curves:
                if t != title:
                    continue
                name = label(curve.iloc[0], shown)
                ax.errorbar(curve["T"], curve["metric_mean"], yerr=np.nan_to_num(curve["metric_std"].to_numpy(float)),
                            marker="o", ms=4, capsize=3, color=fams[name], label=f"{name} ({_n_text(curve['n'])} per T)")
            ax.set_xscale("log", base=2)
            ts = sorted({int(v) for _, c in curves for v in c["T"] if _ == title})
            ax.set_xticks(ts, [str(v) for v in ts])
            ax.minorticks_off()
            ax.set_xlabel("timesteps T")
            metric = curves[0][1]["metric_name"].iloc[0] if "metric_name" in curves[0][1] else "metric"
            ax.set_ylabel(f"{metric} (%)")
            ax.set_title(title)
            ax.legend(loc="best", frameon=False)
        fig.suptitle("accuracy vs T (mean ± std over seeds)")
    return fig
