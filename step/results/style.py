"""One look for every STEP figure: matplotlib settings, colours per model family, markers, saving.

Every figure is drawn inside :func:`context` (Agg backend, constrained layout, readable fonts) and
written by :func:`save` as PNG, SVG and PDF side by side (``name.png``, ``name.svg``, ``name.pdf``).
Colours are assigned per *model family* (the model name without its size, e.g. ``spikformer-4-384``
-> ``spikformer``) from one fixed list, so a family keeps its colour in every panel of a figure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

#: every figure is written in these formats
FORMATS = ("png", "svg", "pdf")
#: colour-blind-safe qualitative colours (Okabe-Ito, then tab10's extra hues)
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
           "#8c564b", "#7f7f7f", "#bcbd22", "#17becf"]
#: filled markers, one per value of the marker key
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*"]
#: the marker of published (paper) numbers: drawn open
PUBLISHED_MARKER = "*"
DPI = 150

RC = {
    "figure.constrained_layout.use": True,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    "svg.fonttype": "none",  # text stays text in the SVG
    "pdf.fonttype": 42,  # TrueType in the PDF (editable, accepted by publishers)
}

_SIZE = re.compile(r"^(\d+(\.\d+)?[mkb]?|t\d+|int8|tiny|cifar)$", re.IGNORECASE)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def context():
    """Draw a figure with STEP's settings."""
    plt = pyplot()
    with plt.rc_context(RC):
        yield plt


def family(model: str) -> str:
    """The model family: the registry name without its size tokens (``sdt-8-768`` -> ``sdt``,
    ``meta-spikeformer-15m`` -> ``meta-spikeformer``, ``spikformer-4-384-int8`` -> ``spikformer``)."""
    parts = re.sub(r"\[.*\]$", "", str(model)).split("-")
    while len(parts) > 1 and _SIZE.match(parts[-1]):
        parts.pop()
    return "-".join(parts)


#: the model families in the order of their fixed colours (the same family, the same colour in every figure)
FAMILIES = ["spikformer", "sdt", "meta-spikeformer", "qkformer", "semm-spikformer", "int8-twin", "vit", "ann"]


def palette(values: Iterable[str]) -> dict[str, str]:
    """value -> colour: a known family its own colour, other values the colours left, in sorted order."""
    values = sorted({str(v) for v in values})
    fixed = {v: COLOURS[FAMILIES.index(v)] for v in values if v in FAMILIES}
    rest = [c for c in COLOURS if c not in fixed.values()]
    others = [v for v in values if v not in fixed]
    return {**fixed, **{v: rest[i % len(rest)] for i, v in enumerate(others)}}


def markers(values: Iterable[str]) -> dict[str, str]:
    """value -> marker, in sorted order."""
    return {v: MARKERS[i % len(MARKERS)] for i, v in enumerate(sorted({str(v) for v in values}))}


def save(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG, SVG and PDF beside each other (``path`` with each suffix); close it and
    return the PNG's path."""
    path = Path(path).with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    with pyplot().rc_context(RC):
        for fmt in FORMATS:
            fig.savefig(path.with_suffix(f".{fmt}"), dpi=DPI)
    pyplot().close(fig)
    return path.with_suffix(".png")


def number(x: float, digits: int = 3) -> str:
    """One fixed notation for every number shown to a reader: ``digits`` significant digits, never
    scientific (``0.00002254`` -> ``0.0000225``, ``1234.5`` -> ``1235``)."""
    import math

    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    x = float(x)
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{x:.{decimals}f}"
