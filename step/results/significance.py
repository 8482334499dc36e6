"""Is a difference between two settings more than seed noise? Welch's t-test over seeds.

A setting's metric is measured once per seed (3 seeds in the CPU suites). Two settings differ
*significantly* when Welch's unequal-variance t-test (``scipy.stats.ttest_ind(equal_var=False)``,
two-sided) over their per-seed values gives p < ``alpha`` (0.05); otherwise the difference is
*within noise*. Why this test:

* the variants' seed spreads differ (one variant may be stable, another collapse on one seed), so
  a test that pools the variances (Student's) would be wrong, and Welch's does not pool them;
* with 3 seeds a bootstrap over seeds has 10 distinct resamples per setting, so its interval is
  too coarse to mean anything; the t-test uses the sample variance and its small-n t distribution
  (a wide one: with 3 + 3 seeds it asks for a large difference), assuming final accuracies are
  roughly normal across seeds.

On the board, every setting of a sweep (the rows one command made) is compared with the best mean
of that sweep, and the p-values of a sweep are Holm-adjusted (Holm, 1979) over its comparisons, so
that calling *any* within-noise difference of the sweep significant stays below ``alpha`` even with
ten variants. The paper orderings (:mod:`step.results.orderings`) test claims fixed in advance by
the papers, one test each, without that adjustment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
TEST = "Welch's t-test over seeds, two-sided"


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """``(t, p)`` of Welch's two-sided t-test of ``a`` against ``b``; ``(nan, nan)`` when either has
    fewer than 2 values. Two constant samples: p = 1 if their values are equal, else 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    if a.var() == 0 and b.var() == 0:
        if a.mean() == b.mean():
            return 0.0, 1.0
        return math.copysign(math.inf, a.mean() - b.mean()), 0.0
    from scipy.stats import ttest_ind

    result = ttest_ind(a, b, equal_var=False)
    return float(result.statistic), float(result.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given; nan stays nan and is not counted)."""
    p = np.asarray(pvalues, dtype=float)
    ok = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(len(p), np.nan)
    m, running = len(ok), 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


@dataclass
class Versus:
    """One setting against its sweep's best."""

    diff: float  # mean - best mean
    p: float  # Welch, raw
    p_adjusted: float  # Holm over the sweep
    verdict: str  # best | significant | within noise | cannot tell

    def text(self) -> str:
        if self.verdict == "best":
            return "best"
        if self.verdict == "cannot tell":
            return "cannot tell (n < 2)"
        return f"{self.diff:+.2f}, p {self.p_adjusted:.3g}: {self.verdict}"


def against_best(samples: dict, alpha: float = ALPHA) -> dict:
    """``{key: Versus}`` for every key of ``{key: per-seed values}``: each against the best mean
    (Welch, Holm-adjusted over the others). Keys without values are left out."""
    means = {k: float(np.mean(v)) for k, v in samples.items() if len(v)}
    if not means:
        return {}
    best = max(means, key=means.get)
    others = [k for k in means if k != best]
    raw = [welch(samples[k], samples[best])[1] for k in others]
    adjusted = holm(raw)
    out = {best: Versus(0.0, math.nan, math.nan, "best")}
    for k, p, q in zip(others, raw, adjusted):
        verdict = "cannot tell" if math.isnan(q) else ("significant" if q < alpha else "within noise")
        out[k] = Versus(means[k] - means[best], p, q, verdict)
    return out
