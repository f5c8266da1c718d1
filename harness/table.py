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

from .markdown import fmt_ci, fmt_delta, fmt_p
from .runs import Selection, mean_metric, seed_values, unresolved_failures
from .stats import (ALPHA, Paired, claim_positions, claim_verdict, higher_is_better, holm, mean_ci, pair_verdict,
                    paired_delta, seeds_reason)

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

TABLE_COLUMNS = ["n", "failed", "mean", "ci_low", "ci_high", "ci_method", "std", "min", "max", "reason",
                 "baseline", "n_pairs", "delta", "delta_low", "delta_high", "p", "p_holm", "p_improve",
                 "delta_reason", "claimed", "verdict", "study", "accuracy", "best_epoch", "wall_time_s"]


def default_baseline(row_names: Sequence[str]) -> str:
    return next((r for r in row_names if r.startswith("baseline")), row_names[0])


def build_table(sel: Selection, metric: str, baseline: str, ci: str = "t") -> pd.DataFrame:
    """One line per row (suite order) with every number the report shows; NaN where n/a."""
    better = higher_is_better(metric)
    base_values = seed_values(sel.finished, baseline, metric)
    lines = []
    for row in sel.rows.itertuples():
        v = seed_values(sel.finished, row.row, metric)
        cells = sel.finished[sel.finished["row"] == row.row]
        n = len(v)
        line = dict.fromkeys(TABLE_COLUMNS, math.nan) | {
            "row": row.row, "n": n, "claimed": row.claimed, "verdict": "", "ci_method": "", "study": row.study,
            "failed": unresolved_failures(sel.failed, row.row),
            "reason": "" if n >= 2 else seeds_reason(n),
            "baseline": row.row == baseline, "delta_reason": "",
            "accuracy": mean_metric(cells, "test_accuracy"), "best_epoch": mean_metric(cells, "best_epoch"),
            "wall_time_s": mean_metric(cells, "wall_time_s")}
        if n:
            line.update(mean=v.mean(), min=v.min(), max=v.max())
        if n >= 2:
            low, high, method = mean_ci(v.to_numpy(), ci)
            line.update(ci_low=low, ci_high=high, ci_method=method, std=v.std(ddof=1))
        if row.row != baseline:
            paired = paired_delta(v, base_values, better)
            line.update(n_pairs=paired.n, delta=paired.delta, delta_low=paired.low, delta_high=paired.high, p=paired.p,
                        p_improve=paired.p_improve, delta_reason=paired.reason)
        if row.claimed:
            if metric != CLAIM_METRIC:
                line["verdict"] = f"n/a (claim is {CLAIM_METRIC})"
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


def check_seed_claims(sel: Selection, metric: str,
                      claims: Iterable[SeedClaim] = SEED_CLAIMS) -> list[ClaimCheck]:
    """The seed's conclusions whose two rows are both in the suite, paired by seed."""
    names = set(sel.rows["row"])
    out = []
    for claim in claims:
        if claim.reference in names and claim.variant in names:
            paired = paired_delta(seed_values(sel.finished, claim.variant, metric),
                                  seed_values(sel.finished, claim.reference, metric), higher_is_better(metric),
                                  reference_label=claim.reference)
            out.append(ClaimCheck(claim, paired, pair_verdict(claim.expected, paired.low, paired.high,
                                                              higher_is_better(metric))))
    return out


def what_the_data_supports(table: pd.DataFrame, checks: Sequence[ClaimCheck], metric: str, baseline: str,
                           data_kind: str = "") -> list[str]:
    """Bullet points generated from the numbers: claims vs CIs, rows vs baseline, the seed's conclusions."""
    out = []
    for row, t in table.iterrows():
        if not t["claimed"]:
            continue
        if not t["verdict"] or t["verdict"].startswith("n/a"):
            out.append(f"`{row}`: the seed's claim {t['claimed']} cannot be checked: {t['verdict']}.")
            continue
        outside = sorted({w for _, w in claim_positions(t["claimed"], t["ci_low"], t["ci_high"])}
                         - {"inside", "overlaps"})
        summary = ("consistent with the mean over seeds" if not outside else
                   f"not reproduced: {' and '.join(outside)} the CI, so not what these seeds give on average "
                   f"(a single run spreads more than the mean: compare with min–max)")
        out.append(f"`{row}`: the seed's claim {t['claimed']} vs the 95% CI {fmt_ci(t['ci_low'], t['ci_high'])} "
                   f"of the mean over {t['n']} seeds ({t['verdict']}): {summary}.")
    for row, t in table.iterrows():
        if t["baseline"]:
            continue
        if not math.isfinite(t["p_holm"]):
            reason = t["delta_reason"] or "no p-value: identical differences"
            out.append(f"`{row}` vs `{baseline}`: no comparison possible ({reason}).")
            continue
        p = fmt_p(t["p_holm"])
        d = (f"Δ = {fmt_delta(t['delta'])} {fmt_ci(t['delta_low'], t['delta_high'])} over {int(t['n_pairs'])} "
             f"paired seeds, Holm p {p.replace('<', '< ') if p.startswith('<') else '= ' + p}")
        if t["p_holm"] < ALPHA:
            direction = "better" if (t["delta"] > 0) == higher_is_better(metric) else "worse"
            out.append(f"`{row}` vs `{baseline}`: {d}: significantly {direction} at α = {ALPHA}.")
        else:
            out.append(f"`{row}` vs `{baseline}`: {d}: not significant at α = {ALPHA} (within seed noise).")
    for check in checks:
        c, p = check.claim, check.paired
        numbers = (f"Δ = {fmt_delta(p.delta)} {fmt_ci(p.low, p.high)} over {p.n} paired seeds"
                   if not p.reason else f"n/a ({p.reason})")
        out.append(f"The seed's conclusion \"{c.text}\" (`{c.variant}` − `{c.reference}`): {numbers} → "
                   f"**{check.verdict}**.")
    if data_kind == "synthetic":
        out.append("These runs used the synthetic corpus, not RAVDESS: they exercise the harness, "
                   "they do not test the seed's RAVDESS numbers.")
    return out
