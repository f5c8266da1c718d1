"""The report's numbers: one line per row, and the seed's conclusions checked.

`build_table` turns the selected cells into every number the report prints
(mean, interval, paired Δ to the baseline, adjusted p, claim verdict);
`what_the_data_supports` words them. Statistics come from `stats`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd

from harness.report.markdown import fmt_ci, fmt_delta, fmt_p
from harness.report.runs import Selection, mean_metric, seed_values, unresolved_failures
from harness.stats import (
    DECISION_PROB,
    ROPE,
    Paired,
    claim_positions,
    claim_verdict,
    higher_is_better,
    holm,
    mean_ci,
    metric_bounds,
    paired_delta,
    seeds_reason,
)

CLAIM_METRIC = "test_f1_macro"  # the seed's claimed numbers are single-run test macro-F1


# --- the seed's conclusions, checked by a paired Δ between two rows ------------------

@dataclass(frozen=True)
class SeedClaim:
    text: str
    reference: str  # row A
    variant: str  # row B; the claim is about Δ = B − A
    expected: str  # "better", "worse" or "similar"


SEED_CLAIMS: tuple[SeedClaim, ...] = (
    SeedClaim("focal loss performed worse than class-weighted loss (\"didn't help\")",
              "cw-specaug-30ep", "focal-specaug-30ep", "worse"),
    SeedClaim("more aggressive SpecAugment hurt performance",
              "cw-specaug-30ep", "cw-specaug-aggressive-30ep", "worse"),
    SeedClaim("label smoothing performed similarly",
              "cw-specaug-30ep", "cw-specaug-ls-30ep", "similar"),
)


# --- the table ---------------------------------------------------------------------

TABLE_COLUMNS = ["n", "n_seeds", "design", "failed", "mean", "ci_low", "ci_high", "ci_method", "std", "min", "max",
                 "reason", "ratio", "baseline", "n_pairs", "delta", "delta_low", "delta_high", "p", "p_holm",
                 "p_improve", "p_better", "p_equivalent", "p_worse", "decision", "delta_reason", "claimed",
                 "verdict", "comparable", "study", "accuracy", "best_epoch", "wall_time_s"]


def default_baseline(row_names: Sequence[str]) -> str:
    return next((r for r in row_names if r.startswith("baseline")), row_names[0])


def design_of(cells: pd.DataFrame) -> str:
    """"5 seeds", or "3 × 4-fold CV" (repeats × folds), from a row's finished cells."""
    seeds = cells["seed"].nunique()
    folds = sorted({int(k) for k in cells["cv_folds"] if k}) if "cv_folds" in cells else []
    if not folds:
        return seeds_reason(seeds, "split") if seeds else ""
    return f"{seeds} × {'/'.join(map(str, folds))}-fold CV"


def claim_comparability(row, data_kinds: Sequence[str]) -> str:
    """Empty when the row's runs test what the seed's claim said; otherwise why not."""
    why = []
    if getattr(row, "profile_changes", ""):
        why.append(f"profile {row.profile} changes {row.profile_changes}")
    if "synthetic" in data_kinds:
        why.append("synthetic corpus, not RAVDESS")
    return "; ".join(why)


def build_table(sel: Selection, metric: str, baseline: str, ci: str = "corrected", rope: float = ROPE,
                threshold: float = DECISION_PROB) -> pd.DataFrame:
    """One line per row (suite order) with every number the report shows; NaN where n/a.

    Units are resamples (a seed's split, or a seed's fold); `ci` "corrected" widens intervals for
    their overlapping training sets, "t" and "bootstrap" treat them as independent."""
    better = higher_is_better(metric)
    bounds = metric_bounds(metric)
    base_values = seed_values(sel.finished, baseline, metric)
    base_ratio = sel.finished.loc[sel.finished["row"] == baseline, "ratio"].mean()
    lines = []
    for row in sel.rows.itertuples():
        v = seed_values(sel.finished, row.row, metric)
        cells = sel.finished[sel.finished["row"] == row.row]
        ratio = float(cells["ratio"].mean()) if len(cells) and "ratio" in cells else math.nan
        unit = "resample" if "cv_folds" in cells and cells["cv_folds"].astype(bool).any() else "seed"
        n = len(v)
        line = dict.fromkeys(TABLE_COLUMNS, math.nan) | {
            "row": row.row, "n": n, "n_seeds": cells["seed"].nunique(), "design": design_of(cells),
            "claimed": row.claimed, "verdict": "", "ci_method": "", "study": row.study, "decision": "",
            "comparable": "", "failed": unresolved_failures(sel.failed, row.row),
            "reason": "" if n >= 2 else seeds_reason(n, unit), "ratio": ratio,
            "baseline": row.row == baseline, "delta_reason": "",
            "accuracy": mean_metric(cells, "test_accuracy"), "best_epoch": mean_metric(cells, "best_epoch"),
            "wall_time_s": mean_metric(cells, "wall_time_s")}
        if n:
            line.update(mean=v.mean(), min=v.min(), max=v.max())
        if n >= 2:
            low, high, method = mean_ci(v.to_numpy(), ci, test_train_ratio=ratio, bounds=bounds)
            line.update(ci_low=low, ci_high=high, ci_method=method, std=v.std(ddof=1))
        if row.row != baseline:
            paired = paired_delta(v, base_values, better, method="t" if ci == "t" else "corrected",
                                  test_train_ratio=float(pd.Series([ratio, base_ratio]).mean()), rope=rope,
                                  bounds=bounds, what=unit, threshold=threshold)
            line.update(n_pairs=paired.n, delta=paired.delta, delta_low=paired.low, delta_high=paired.high, p=paired.p,
                        p_improve=paired.p_improve, delta_reason=paired.reason)
            if paired.bayes is not None:
                b = paired.bayes
                line.update(p_better=b.p_better, p_equivalent=b.p_equivalent, p_worse=b.p_worse, decision=b.decision)
        if row.claimed:
            line["comparable"] = claim_comparability(row, sorted(set(cells["data"])))
            if metric != CLAIM_METRIC:
                line["verdict"] = f"n/a (claim is {CLAIM_METRIC})"
            elif line["comparable"]:
                line["verdict"] = f"not comparable: {line['comparable']}"
            elif n < 2:
                line["verdict"] = f"n/a ({line['reason']})"
            else:
                try:
                    line["verdict"] = claim_verdict(row.claimed, line["ci_low"], line["ci_high"])
                except ValueError as e:
                    line["verdict"] = f"n/a ({e})"
        lines.append(line)
    table = pd.DataFrame(lines).set_index("row")
    table["p_holm"] = holm(table["p"].to_numpy())
    return table


@dataclass(frozen=True)
class ClaimCheck:
    claim: SeedClaim
    paired: Paired
    verdict: str


def decision_verdict(expected: str, decision: str) -> str:
    """A claim about Δ = B − A ("better", "worse", "similar") against the Bayesian decision on Δ."""
    wanted = "equivalent" if expected == "similar" else expected
    if decision == wanted:
        return "supported"
    if decision in ("", "undecided"):
        return "undecided (the data cannot tell yet)"
    return f"contradicted (the variant is {decision})"


def check_seed_claims(sel: Selection, metric: str, claims: Iterable[SeedClaim] = SEED_CLAIMS,
                      ci: str = "corrected", rope: float = ROPE) -> list[ClaimCheck]:
    """The seed's conclusions whose two rows are both in the suite, paired by resample."""
    names = set(sel.rows["row"])
    out = []
    for claim in claims:
        if claim.reference in names and claim.variant in names:
            ratio = sel.finished.loc[sel.finished["row"].isin([claim.reference, claim.variant]), "ratio"].mean()
            paired = paired_delta(seed_values(sel.finished, claim.variant, metric),
                                  seed_values(sel.finished, claim.reference, metric), higher_is_better(metric),
                                  reference_label=claim.reference, method="t" if ci == "t" else "corrected",
                                  test_train_ratio=float(ratio), rope=rope, bounds=metric_bounds(metric),
                                  what="resample")
            verdict = (decision_verdict(claim.expected, paired.bayes.decision) if paired.bayes is not None
                       else "cannot be checked")
            out.append(ClaimCheck(claim, paired, verdict))
    return out


def _probs(t) -> str:
    return (f"P(better) {t['p_better']:.2f}, P(equivalent) {t['p_equivalent']:.2f}, "
            f"P(worse) {t['p_worse']:.2f}")


def what_the_data_supports(table: pd.DataFrame, checks: Sequence[ClaimCheck], metric: str, baseline: str,
                           data_kind: str = "", rope: float = ROPE) -> list[str]:
    """Bullet points generated from the numbers: the decision on each row against the baseline, the
    seed's conclusions, and its single-run claims where the runs tested them."""
    out = []
    for row, t in table.iterrows():
        if t["baseline"] or not t["n"]:
            continue
        if not t["decision"]:
            out.append(f"`{row}` vs `{baseline}`: no decision possible ({t['delta_reason'] or 'no paired resamples'}).")
            continue
        p = fmt_p(t["p_holm"])
        numbers = (f"Δ = {fmt_delta(t['delta'])} {fmt_ci(t['delta_low'], t['delta_high'])} over {int(t['n_pairs'])} "
                   f"paired resamples, Holm p {p.replace('<', '< ') if p.startswith('<') else '= ' + p}")
        what = {"better": "better than", "worse": "worse than",
                "equivalent": f"equivalent (within ±{rope:g}) to"}.get(t["decision"])
        if what:
            out.append(f"`{row}` is **{what}** `{baseline}`: {_probs(t)} ({numbers}).")
        elif t["std"] == 0 or (math.isfinite(t["delta_low"]) and t["delta_low"] == t["delta_high"]):
            out.append(f"`{row}` vs `{baseline}`: **undecided**: every paired difference is the same "
                       f"({fmt_delta(t['delta'])}), which gives no spread to judge from; more repeats would tell.")
        else:
            out.append(f"`{row}` vs `{baseline}`: **undecided**: {_probs(t)}, none reaches the decision "
                       f"threshold; more repeats would tell ({numbers}).")
    for check in checks:
        c, p = check.claim, check.paired
        numbers = (f"Δ = {fmt_delta(p.delta)} {fmt_ci(p.low, p.high)} over {p.n} paired resamples"
                   + (f", P(better) {p.bayes.p_better:.2f}, P(equivalent) {p.bayes.p_equivalent:.2f}, "
                      f"P(worse) {p.bayes.p_worse:.2f}" if p.bayes else "")
                   if not p.reason else f"n/a ({p.reason})")
        out.append(f"The seed's conclusion \"{c.text}\" (`{c.variant}` − `{c.reference}`): {numbers} → "
                   f"**{check.verdict}**.")
    untested = {t["comparable"] for _, t in table.iterrows() if t["claimed"] and t["comparable"]}
    if untested:
        out.append("The seed's single-run numbers were **not tested** here: " + "; ".join(sorted(untested))
                   + ". Only runs with the seed's settings on RAVDESS can confirm or refute them.")
    for row, t in table.iterrows():
        if not t["claimed"] or t["comparable"]:
            continue
        if not t["verdict"] or t["verdict"].startswith("n/a"):
            out.append(f"`{row}`: the seed's claim {t['claimed']} cannot be checked: {t['verdict']}.")
            continue
        outside = sorted({w for _, w in claim_positions(t["claimed"], t["ci_low"], t["ci_high"])}
                         - {"inside", "overlaps"})
        summary = ("consistent with the mean" if not outside else
                   f"not reproduced: {' and '.join(outside)} the CI, so not what these runs give on average "
                   f"(a single run spreads more than the mean: compare with min–max)")
        out.append(f"`{row}`: the seed's claim {t['claimed']} vs the 95% CI {fmt_ci(t['ci_low'], t['ci_high'])} "
                   f"of the mean over {t['n']} resamples ({t['verdict']}): {summary}.")
    if data_kind == "synthetic":
        out.append("These runs used the synthetic corpus, not RAVDESS: they exercise the harness, "
                   "they do not test the seed's RAVDESS numbers.")
    return out
