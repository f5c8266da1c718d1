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


def corrected_t_interval(values: Sequence[float], test_train_ratio: float,
                         level: float = LEVEL) -> tuple[float, float]:
    """The mean's interval when the J values come from resamples whose training sets overlap
    (Nadeau & Bengio 2003; Bouckaert & Frank 2004): mean ± t(J−1) · √(s² · (1/J + n_test/n_train)).

    The plain s²/J assumes independent values; overlapping training sets correlate them, and
    the plain interval gets too narrow the more resamples are added."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * math.sqrt(corrected_var(x, test_train_ratio))
    return float(x.mean() - half), float(x.mean() + half)


def corrected_var(values: Sequence[float], test_train_ratio: float) -> float:
    """Variance of the mean of correlated resamples: s² · (1/J + n_test/n_train)."""
    x = np.asarray(values, dtype=float)
    return float(x.var(ddof=1) * (1.0 / len(x) + test_train_ratio))


def run_ratio(n_test: float | None, n_train: float | None, train_ratio: object = "", val_ratio: object = "",
              cv_folds: object = "") -> float:
    """n_test / n_train of one run: its clip counts, or (runs that did not record them) the ratios of its
    config, given as MLflow params (strings; empty means the default)."""
    if n_train and n_test is not None and math.isfinite(n_test) and math.isfinite(n_train):
        return n_test / n_train
    return nominal_ratio(float(train_ratio or 0.8), float(val_ratio or 0.1), int(float(cv_folds or 0)))


def nominal_ratio(train_ratio: float, val_ratio: float, cv_folds: int = 0) -> float:
    """n_test / n_train a design aims at, for runs that did not record their clip counts."""
    test = 1.0 / cv_folds if cv_folds else 1.0 - train_ratio - val_ratio
    return test / (1.0 - test - val_ratio)


CI_METHODS = ("corrected", "t", "bootstrap")


def mean_ci(values: Sequence[float], method: str = "t", level: float = LEVEL, *, test_train_ratio: float = 0.0,
            bounds: tuple[float, float] | None = None) -> tuple[float, float, str]:
    """(low, high, method used) of the mean; needs at least 2 values.

    `corrected` needs `test_train_ratio` (n_test / n_train of one resample). `bounds`: the
    metric's range; an interval reaching past it is cut there (the mean cannot lie outside)."""
    if len(values) < 2:
        raise ValueError("a confidence interval needs at least 2 values")
    if method == "bootstrap":
        low, high, used = bootstrap_interval(values, level)
    elif method == "corrected":
        low, high, used = (*corrected_t_interval(values, test_train_ratio, level), "corrected")
    else:
        low, high, used = (*t_interval(values, level), "t")
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return low, high, used


def metric_bounds(metric: str) -> tuple[float, float] | None:
    """The range of a score: F1 and accuracy lie in [0, 1]; losses and times have no upper bound."""
    return (0.0, 1.0) if any(w in metric for w in ("f1", "accuracy")) else None


ROPE = 0.01  # macro-F1: differences smaller than this are practically equivalent
DECISION_PROB = 0.95


@dataclass(frozen=True)
class Bayes:
    """The correlated Bayesian t-test of Δ (Benavoli et al. 2017), via baycomp."""
    p_better: float
    p_equivalent: float
    p_worse: float
    decision: str  # better / worse / equivalent (its probability >= threshold), or undecided


def decide(p_better: float, p_equivalent: float, p_worse: float, threshold: float = DECISION_PROB) -> str:
    for name, p in (("better", p_better), ("worse", p_worse), ("equivalent", p_equivalent)):
        if p >= threshold:
            return name
    return "undecided"


def bayes_delta(d: Sequence[float], test_train_ratio: float, rope: float = ROPE, higher_better: bool = True,
                threshold: float = DECISION_PROB) -> Bayes:
    """P(better), P(equivalent within ±rope), P(worse) of the mean paired difference `d` (row − reference).

    The posterior is baycomp's Student posterior of the mean difference with the Nadeau–Bengio
    corrected variance s² · (1/J + n_test/n_train), J − 1 degrees of freedom. baycomp's own
    `CorrelatedTTest` assumes plain K-fold (n_test/n_train = 1/(K−1)); with validation actors held
    out of training the ratio is larger (4-fold on 8 actors, 1 for validation: 2/5, not 1/3), so the
    ratio is passed in from the runs' clip counts."""
    from baycomp.single import Posterior

    x = np.asarray(d, dtype=float)
    var = corrected_var(x, test_train_ratio)
    if rope > 0:
        left, equiv, right = Posterior(float(x.mean()), var, len(x) - 1, rope).probs()
    else:
        (left, right), equiv = Posterior(float(x.mean()), var, len(x) - 1, 0).probs(), 0.0
    better, worse = (right, left) if higher_better else (left, right)
    better, equiv, worse = float(better), float(equiv), float(worse)
    if var == 0:
        # Identical differences (two seeds that both collapse to the majority class, say) make the posterior a
        # point: certainty from coincidence. No decision until the differences spread.
        return Bayes(better, equiv, worse, "undecided")
    return Bayes(better, equiv, worse, decide(better, equiv, worse, threshold))


@dataclass(frozen=True)
class Paired:
    n: int  # resamples both have (seeds, or seed × fold)
    delta: float = math.nan  # mean of (row − reference) over those resamples
    low: float = math.nan
    high: float = math.nan
    p: float = math.nan  # paired t-test (corrected or plain, as the interval), unadjusted
    p_improve: float = math.nan  # share of resamples where the row beats the reference, ties ½
    reason: str = ""  # why the numbers are n/a
    method: str = ""  # the interval's and p's method: corrected or t
    bayes: Bayes | None = None


def seeds_reason(n: int, what: str = "seed") -> str:
    """Why a row of n seeds has no interval: "1 seed", "no finished seed"."""
    return f"no finished {what}" if n == 0 else f"{n} {what}{'' if n == 1 else 's'}"


def paired_delta(row: pd.Series, reference: pd.Series, higher_better: bool = True,
                 level: float = LEVEL, reference_label: str = "baseline", *, method: str = "t",
                 test_train_ratio: float = 0.0, rope: float = ROPE,
                 bounds: tuple[float, float] | None = None, what: str = "seed",
                 threshold: float = DECISION_PROB) -> Paired:
    """Δ = row − reference over the resamples both have (Series indexed by resample: a seed, or seed/fold).

    `method` "corrected" widens the interval and p for overlapping training sets; anything else is
    the plain paired t. The Bayesian probabilities always use the correction. `bounds`: the metric's
    range (Δ is then cut to [lo − hi, hi − lo])."""
    from scipy import stats

    keys = row.index.intersection(reference.index)
    if len(row) < 2:
        return Paired(n=len(keys), reason=seeds_reason(len(row), what))
    if len(reference) < 2:
        return Paired(n=len(keys), reason=f"{reference_label}: {seeds_reason(len(reference), what)}")
    if len(keys) < 2:
        return Paired(n=len(keys), reason=seeds_reason(len(keys), f"paired {what}"))
    a, b = row.loc[keys].to_numpy(float), reference.loc[keys].to_numpy(float)
    d = a - b
    if method == "corrected":
        low, high = corrected_t_interval(d, test_train_ratio, level)
        se = math.sqrt(corrected_var(d, test_train_ratio))
        p = float(2 * stats.t.sf(abs(d.mean()) / se, len(d) - 1)) if se > 0 else math.nan
    else:
        method = "t"
        low, high = t_interval(d, level)
        p = float(_quiet(stats.ttest_rel, a, b).pvalue)
    if bounds is not None:
        span = bounds[1] - bounds[0]
        low, high = max(low, -span), min(high, span)
    wins = (d > 0) if higher_better else (d < 0)
    p_improve = (wins.sum() + 0.5 * (d == 0).sum()) / len(d)
    return Paired(n=len(keys), delta=float(d.mean()), low=low, high=high, p=p, p_improve=float(p_improve),
                  method=method, bayes=bayes_delta(d, test_train_ratio, rope, higher_better, threshold))


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
