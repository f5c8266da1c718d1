"""Statistics for the report and the suite: pure functions, numbers in, numbers out.

Intervals of a mean (Student t, BCa bootstrap), paired differences between two
rows over the seeds they share, Holm's adjustment, and the verdicts that hold a
single-run claim against an interval. No MLflow, no runs, no plotting: every
function here can be checked by hand on fixed numbers.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

LEVEL = 0.95
ALPHA = 0.05
BOOTSTRAP_SEED = 0  # fixed: the same runs always give the same bootstrap CI
BOOTSTRAP_RESAMPLES = 9999


def higher_is_better(metric: str) -> bool:
    """Scores go up; losses and times go down."""
    return not any(word in metric for word in ("loss", "time"))


def _quiet(fn, *args, **kwargs):
    # scipy warns on degenerate samples (identical values); those cases are handled by the caller.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval for the mean: mean ± t(n−1) · s/√n."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def bootstrap_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, str]:
    """BCa bootstrap interval of the mean; percentile where BCa is degenerate."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    for method in ("BCa", "percentile"):
        try:
            ci = _quiet(stats.bootstrap, (x,), np.mean, method=method, confidence_level=level,
                        n_resamples=BOOTSTRAP_RESAMPLES, rng=np.random.default_rng(BOOTSTRAP_SEED)).confidence_interval
        except ValueError:
            continue
        if np.isfinite(ci.low) and np.isfinite(ci.high):
            return float(ci.low), float(ci.high), method
    return float(x.mean()), float(x.mean()), "degenerate"


def mean_ci(values: Sequence[float], method: str = "t", level: float = LEVEL) -> tuple[float, float, str]:
    """(low, high, method used) of the mean; needs at least 2 values."""
    if len(values) < 2:
        raise ValueError("a confidence interval needs at least 2 values")
    if method == "bootstrap":
        return bootstrap_interval(values, level)
    return (*t_interval(values, level), "t")


@dataclass(frozen=True)
class Paired:
    n: int  # seeds both have
    delta: float = math.nan  # mean of (row − reference) over those seeds
    low: float = math.nan
    high: float = math.nan
    p: float = math.nan  # paired t-test, unadjusted
    p_improve: float = math.nan  # share of seeds where the row beats the reference, ties ½
    reason: str = ""  # why the numbers are n/a


def seeds_reason(n: int, what: str = "seed") -> str:
    """Why a row of n seeds has no interval: "1 seed", "no finished seed"."""
    return f"no finished {what}" if n == 0 else f"{n} {what}{'' if n == 1 else 's'}"


def paired_delta(row: pd.Series, reference: pd.Series, higher_better: bool = True,
                 level: float = LEVEL, reference_label: str = "baseline") -> Paired:
    """Δ = row − reference over the seeds both have (Series indexed by seed)."""
    from scipy import stats

    seeds = row.index.intersection(reference.index)
    if len(row) < 2:
        return Paired(n=len(seeds), reason=seeds_reason(len(row)))
    if len(reference) < 2:
        return Paired(n=len(seeds), reason=f"{reference_label}: {seeds_reason(len(reference))}")
    if len(seeds) < 2:
        return Paired(n=len(seeds), reason=seeds_reason(len(seeds), "paired seed"))
    a, b = row.loc[seeds].to_numpy(float), reference.loc[seeds].to_numpy(float)
    d = a - b
    low, high = t_interval(d, level)
    p = float(_quiet(stats.ttest_rel, a, b).pvalue)
    wins = (d > 0) if higher_better else (d < 0)
    p_improve = (wins.sum() + 0.5 * (d == 0).sum()) / len(d)
    return Paired(n=len(seeds), delta=float(d.mean()), low=low, high=high, p=p, p_improve=float(p_improve))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (monotone, capped at 1); NaN stays NaN and is not counted."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m, running = len(order), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out


_NUMBER = r"\d*\.?\d+"


def parse_claim(claim: str) -> list[tuple[float, float]]:
    """The seed's claim as intervals: "0.661" -> [(0.661, 0.661)], "0.732,0.532" -> two, "0.4-0.5" -> one range."""
    out = []
    for part in filter(None, (p.strip().lstrip("~") for p in claim.split(","))):
        m = re.fullmatch(rf"({_NUMBER})\s*[-–]\s*({_NUMBER})", part)
        if m:
            out.append((float(m.group(1)), float(m.group(2))))
        elif re.fullmatch(_NUMBER, part):
            out.append((float(part), float(part)))
        else:
            raise ValueError(f"unreadable claim {claim!r}")
    return out


def claim_positions(claim: str, low: float, high: float) -> list[tuple[str, str]]:
    """(claimed number or range, where): a number inside / above / below [low, high]; a range overlaps / above / below."""
    out = []
    for a, b in parse_claim(claim):
        where = "above" if a > high else "below" if b < low else "inside" if a == b else "overlaps"
        out.append((f"{a:.3f}" if a == b else f"{a:.3f}–{b:.3f}", where))
    return out


def claim_verdict(claim: str, low: float, high: float) -> str:
    return "; ".join(f"{text} {where}" for text, where in claim_positions(claim, low, high))


def pair_verdict(expected: str, low: float, high: float, higher_better: bool = True) -> str:
    """A claim about Δ = B − A against the 95% CI of the paired Δ."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "cannot be checked"
    if low <= 0 <= high:
        return "supported (no detectable difference)" if expected == "similar" \
            else "not supported (difference within noise)"
    observed = "better" if (low > 0) == higher_better else "worse"
    if expected == "similar":
        return f"contradicted (the variant is {observed})"
    return "supported" if observed == expected else f"contradicted (the variant is {observed})"
