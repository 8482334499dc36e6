"""The orderings the papers claim, tested on the leaderboard's CPU-suite rows (``step-board --orderings``).

Each :class:`Claim` names two sets of rows of one suite (``a`` and ``b``, pandas queries on the
rows whose command holds ``suite=<suite> scale=<scale>``), the relation the paper reports between
them, and where it reports it. The test is Welch's two-sided t-test over the per-seed values
(:mod:`step.results.significance`), at alpha 0.05, one test per claim (the claims are fixed by the
papers before any of our runs, so they are not adjusted for each other). The verdict:

* ``a > b`` (or ``a < b``): **holds** when the difference is significant and in the claimed
  direction, **does not hold** when it is significant the other way, else **cannot tell**;
* ``a = b`` (the paper reports no difference): **does not hold** when the difference is
  significant, else **cannot tell** (no difference found; a t-test cannot show equality);
* fewer than 2 seeds on a side: **cannot tell**; no rows: **not run**.

The list is what a CPU suite can test; each claim's ``source`` gives the paper's numbers. Claims
were written from the papers before the suites ran and are never edited to agree with a result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from step.results.render import mean_std, to_markdown
from step.results.significance import ALPHA, TEST, welch


@dataclass(frozen=True)
class Claim:
    claim: str  # what the paper says, as "A > B"
    source: str  # paper, table, setting and numbers
    suite: str  # the suite whose rows test it
    a: str  # pandas query selecting A's rows within the suite
    b: str
    relation: str = ">"  # ">": A above B; "<": A below B; "=": no difference
    value: str = "metric"  # the leaderboard column compared


_T5 = "Meta-SpikeFormer Table 5 (31M, ImageNet, T=1)"
_STEP_NEURON = "STEP neuron test (Spikformer-4-384, CIFAR-10)"
_STEP_ENC = "STEP encoding test (Spikformer-4-384, CIFAR-10)"
_STEP_COMP = "STEP component test (Spikformer-4-384, CIFAR-10)"

CLAIMS: tuple[Claim, ...] = (
    Claim("SDSA-3 > SDSA-1", f"{_T5}: 75.4 vs 74.6 (ours: SDT block)", "sdsa", "attention == 'sdsa3'", "attention == 'sdsa1'"),
    Claim("SDSA-3 > SDSA-2", f"{_T5}: 75.4 vs 74.2 (ours: SDT block)", "sdsa", "attention == 'sdsa3'", "attention == 'sdsa2'"),
    Claim("SDSA-4 = SDSA-3", f"{_T5}: 75.4 vs 75.4 (ours: SDT block)", "sdsa", "attention == 'sdsa4'", "attention == 'sdsa3'", "="),
    Claim("RepConv Q/K/V > Linear Q/K/V", f"{_T5}: 75.4 vs 75.0 (ours: SDT block)", "repconv",
          "experiment == 'abl-repconv-qkv-repconv-proj-repconv'", "experiment == 'abl-repconv-qkv-linear-proj-repconv'"),
    Claim("RepConv output > Linear output", f"{_T5}: 75.4 vs 75.3 (ours: SDT block)", "repconv",
          "experiment == 'abl-repconv-qkv-repconv-proj-repconv'", "experiment == 'abl-repconv-qkv-repconv-proj-linear'"),
    Claim("RepConv Q/K/V costs more energy than Linear", "Meta-SpikeFormer Sec. 4.5 and Table 5: 7.8 vs 6.0 mJ",
          "repconv", "experiment == 'abl-repconv-qkv-repconv-proj-repconv'",
          "experiment == 'abl-repconv-qkv-linear-proj-repconv'", ">", "energy_mj"),
    Claim("membrane shortcut > SEW shortcut", f"{_T5}: 75.4 vs 73.5 (ours: SDT host)", "shortcut",
          "experiment == 'abl-shortcut-ms'", "experiment == 'abl-shortcut-sew'"),
    Claim("membrane shortcut > vanilla shortcut", f"{_T5}: 75.4 vs does not converge (ours: SDT host)", "shortcut",
          "experiment == 'abl-shortcut-ms'", "experiment == 'abl-shortcut-vs'"),
    Claim("Q-K token attention costs less energy than SSA", "QKFormer abstract: linear complexity, high energy "
          "efficiency (no number; ours: Spikformer host)", "attention", "attention == 'qk_token'", "attention == 'ssa'",
          "<", "energy_mj"),
    Claim("Q-K token attention = SSA in accuracy", "QKFormer uses Q-K attention in place of SSA in its early "
          "stages (no same-model number; ours: Spikformer host)", "attention", "attention == 'qk_token'",
          "attention == 'ssa'", "="),
    Claim("T=4 > T=1", "Meta-SpikeFormer Table 1 (ImageNet): 15M 71.8 vs 74.1, 31M 75.4 vs 77.2, 55M 78.0 vs 79.7",
          "timesteps", "T == 4", "T == 1"),
    Claim("T=2 > T=1", "accuracy rising with T (Meta-SpikeFormer Table 1, read as monotone)", "timesteps", "T == 2", "T == 1"),
    Claim("T=4 > T=2", "accuracy rising with T (Meta-SpikeFormer Table 1, read as monotone)", "timesteps", "T == 4", "T == 2"),
    Claim("T=8 > T=4", "accuracy rising with T (Meta-SpikeFormer Table 1, read as monotone)", "timesteps", "T == 8", "T == 4"),
    Claim("PLIF > LIF", f"{_STEP_NEURON}: 96.06 vs 95.12", "neuron", "neuron == 'plif'", "neuron == 'lif'"),
    Claim("KLIF > LIF", f"{_STEP_NEURON}: 95.85 vs 95.12", "neuron", "neuron == 'klif'", "neuron == 'lif'"),
    Claim("GLIF > LIF", f"{_STEP_NEURON}: 95.41 vs 95.12", "neuron", "neuron == 'glif'", "neuron == 'lif'"),
    Claim("CLIF > LIF", f"{_STEP_NEURON}: 95.38 vs 95.12", "neuron", "neuron == 'clif'", "neuron == 'lif'"),
    Claim("sigmoid alpha 4 = sigmoid alpha 2", "STEP surrogate test (Spikformer, CIFAR-10): 95.12 vs 95.09, but its "
          "surrogate never reached the neurons (step-release.md, finding 1)", "surrogate",
          "surrogate == 'sigmoid' and experiment == 'abl-surrogate-a4.0'",
          "surrogate == 'sigmoid' and experiment == 'abl-surrogate-a2.0'", "="),
    Claim("direct > rate encoding", f"{_STEP_ENC}: 95.12 vs 82.83", "encoder", "encoder == 'direct'", "encoder == 'rate'"),
    Claim("direct > phase encoding", f"{_STEP_ENC}: 95.12 vs 82.75", "encoder", "encoder == 'direct'", "encoder == 'phase'"),
    Claim("direct > latency (TTFS) encoding", f"{_STEP_ENC}: 95.12 vs 82.10", "encoder", "encoder == 'direct'",
          "encoder == 'latency'"),
    Claim("random (frozen) Q/K = trained Q/K", f"{_STEP_COMP}: 94.96 vs 95.12", "random_qk",
          "experiment == 'abl-random-qk-frozen-True'", "experiment == 'abl-random-qk-frozen-False'", "="),
    Claim("4-conv SPS > 2-conv SPS", f"{_STEP_COMP}: 95.12 vs 91.92", "patch_embed",
          "experiment == 'abl-patch-embed-4'", "experiment == 'abl-patch-embed-2'"),
)


def verdict(relation: str, a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> tuple[str, float]:
    """``(verdict, p)`` of one claim on the per-seed values ``a`` and ``b`` (see the module doc)."""
    if not len(a) or not len(b):
        return "not run", math.nan
    _, p = welch(a, b)
    if math.isnan(p):
        return "cannot tell (n < 2)", p
    significant = p < alpha
    if relation == "=":
        return ("does not hold" if significant else "cannot tell (no difference found)"), p
    higher = float(np.mean(a)) > float(np.mean(b))
    if not significant:
        return "cannot tell", p
    return ("holds" if higher == (relation == ">") else "does not hold"), p


def suite_rows(rows: pd.DataFrame, suite: str, scale: str) -> pd.DataFrame:
    """The ok rows a ``step-train suite=<suite> scale=<scale>`` command wrote."""
    tokens = {f"suite={suite}", f"scale={scale}"}
    commands = rows.get("command", pd.Series([""] * len(rows), index=rows.index)).fillna("").astype(str)
    ok = rows.get("status", pd.Series(["ok"] * len(rows), index=rows.index)) == "ok"
    return rows[ok & commands.map(lambda c: tokens <= set(c.split()))]


def evaluate(rows: pd.DataFrame, claims: Sequence[Claim] = CLAIMS, scale: str = "cpu",
             alpha: float = ALPHA) -> pd.DataFrame:
    """One row per claim: the numbers on each side, the seeds, the test and the verdict."""
    out = []
    for c in claims:
        part = suite_rows(rows, c.suite, scale)
        sides = []
        for query in (c.a, c.b):
            chosen = part.query(query) if len(part) else part
            values = pd.to_numeric(chosen[c.value], errors="coerce") if c.value in chosen else pd.Series(dtype=float)
            keep = values.notna()
            sides.append((values[keep].tolist(), chosen.loc[keep[keep].index, "seed"].tolist() if "seed" in chosen else []))
        (a, seeds_a), (b, seeds_b) = sides
        result, p = verdict(c.relation, a, b, alpha)
        fmt = "{:.2f}" if c.value == "metric" else "{:.3g}"
        side = lambda v: mean_std(np.mean(v) if v else math.nan, np.std(v, ddof=1) if len(v) > 1 else math.nan, fmt)  # noqa: E731
        seeds = lambda s: ",".join(str(int(x)) for x in sorted(s))  # noqa: E731
        seen = f"{seeds(seeds_a)} / {seeds(seeds_b)}" if seeds_a or seeds_b else ""
        out.append({
            "claim": c.claim, "paper": c.source, "suite": f"suite={c.suite} scale={scale}",
            "value": c.value, "A": side(a), "B": side(b), "seeds A / B": seen,
            "p": "" if math.isnan(p) else f"{p:.3g}", "verdict": result,
        })
    return pd.DataFrame(out, columns=["claim", "paper", "suite", "value", "A", "B", "seeds A / B", "p", "verdict"])


def short_table(table: pd.DataFrame) -> pd.DataFrame:
    """The README form: claim, paper, ours (A vs B), p and verdict."""
    ours = [f"{a} vs {b}" + ("" if v == "metric" else f" ({v})") if a or b else ""
            for a, b, v in zip(table["A"], table["B"], table["value"])]
    return pd.DataFrame({"claim (A vs B)": table["claim"], "paper": table["paper"], "ours": ours,
                         "p": table["p"], "verdict": table["verdict"]})


def render(table: pd.DataFrame, source: str, short: bool = False) -> str:
    """Markdown of the table with the line that says what made it and how it was tested."""
    note = (f"Made by `step-board --orderings` from {source}. Test: {TEST} (A against B, per-seed values), "
            f"alpha {ALPHA:g}, one test per claim; `=` claims cannot hold, only fail or stay undecided.\n\n")
    return note + to_markdown(short_table(table) if short else table)
