"""Render aggregated leaderboard tables as Markdown and as one self-contained HTML page.

Cells read ``mean ± std`` (std omitted when n=1); ``n`` is its own column. After it, when the
rows have them: ``spike-driven`` (the audit's verdict, ``no`` marks a setting some run of which
was not spike-driven) and ``vs best of its sweep`` (:mod:`step.results.significance`). No third-party table
package is needed: the Markdown is written here, the HTML comes from pandas with figures inlined
as base64 PNGs, so the page can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from step.results.style import number

#: format of a number shown with 3 significant digits in fixed notation (never 2.3e-05)
SIGNIFICANT = "sig3"

#: value column -> (header, format of one number: a str.format pattern or SIGNIFICANT)
SHOWN = {
    "metric": ("metric", "{:.2f}"),
    "energy_mj": ("energy (mJ)", SIGNIFICANT),
    "energy_exact_mj": ("energy exact (mJ)", SIGNIFICANT),
    "energy_mem_mj": ("energy+mem (mJ)", SIGNIFICANT),
    "firing_rate": ("firing rate", "{:.3f}"),
    "params": ("params", "{:,.0f}"),
}


#: header of the significance column (step.results.significance)
VS_BEST = "vs best of its sweep"


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or x == ""


def mean_std(mean, std, fmt: str) -> str:
    """``"95.12 ± 0.21"``; only the mean when std is missing; empty when the mean is missing. With
    ``fmt == SIGNIFICANT`` both are fixed notation: the mean to 3 significant digits and the std to
    the same decimals (``"0.00225 ± 0.00003"``), never scientific."""
    if _missing(mean):
        return ""
    if fmt == SIGNIFICANT:
        text = number(mean)
        if _missing(std):
            return text
        decimals = len(text.split(".")[1]) if "." in text else 0
        spread = f"{float(std):.{decimals}f}"
        if float(spread) == 0 and std > 0:  # too small for the mean's decimals: its own 2 digits
            spread = number(std, 2)
        return f"{text} ± {spread}"
    if _missing(std):
        return fmt.format(mean)
    return f"{fmt.format(mean)} ± {fmt.format(std)}"


def display_table(agg: pd.DataFrame, by: Sequence[str], values: Sequence[str] = tuple(SHOWN)) -> pd.DataFrame:
    """The aggregate with one text column per value (``mean ± std``) next to the group keys and n."""
    out = pd.DataFrame({c: agg[c].map(lambda x: "" if _missing(x) else str(x)) for c in by})
    if "configs" in agg and (agg["configs"] > 1).any():  # one setting ran several configs: one row each
        out["config"] = agg["config"]
    if "metric_name" in agg:
        out["metric_name"] = agg["metric_name"]
    for v in values:
        if f"{v}_mean" not in agg or agg[f"{v}_mean"].isna().all():
            continue
        header, fmt = SHOWN.get(v, (v, SIGNIFICANT))
        stds = agg[f"{v}_std"] if v != "params" else [None] * len(agg)  # a setting's size does not vary
        out[header] = [mean_std(m, s, fmt) for m, s in zip(agg[f"{v}_mean"], stds)]
    out["n"] = agg["n"].astype(int)
    for column, header in (("spike_driven", "spike-driven"), ("vs_best", VS_BEST)):
        if column in agg and agg[column].map(lambda x: not _missing(x)).any():
            out[header] = agg[column].map(lambda x: "" if _missing(x) else str(x))
    return out


def _cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (numbers right-aligned)."""
    cols = list(table.columns)
    numeric = {c for c in cols if c == "n" or c in {h for h, _ in SHOWN.values()}}
    lines = ["| " + " | ".join(_cell(c) for c in cols) + " |",
             "|" + "|".join("---:" if c in numeric else "---" for c in cols) + "|"]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(x) for x in row) + " |")
    return "\n".join(lines) + "\n"


def to_html(title: str, sections: Sequence[tuple[str, pd.DataFrame]], figures: Sequence[str | Path] = (),
            note: str = "") -> str:
    """One HTML page: a title, a note, each (heading, table) section and the figures inlined."""
    parts = [
        "<!doctype html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}"
        "table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px}"
        "th{background:#f3f3f3}tr:nth-child(even){background:#fafafa}img{max-width:100%}</style>",
        "</head><body>", f"<h1>{html.escape(title)}</h1>",
    ]
    if note:
        parts.append(f"<p>{html.escape(note)}</p>")
    for heading, table in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(table.to_html(index=False, escape=True, na_rep=""))
    for fig in figures:
        data = base64.b64encode(Path(fig).read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(Path(fig).stem)}</h2><img alt='{html.escape(Path(fig).stem)}' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
