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

from harness import speakers
from harness.report.markdown import fmt_ci, fmt_delta, fmt_p
from harness.report.runs import Selection, mean_metric, row_classes, seed_values, unresolved_failures
from harness.report.verdict import Answer, Evidence, answer
from harness.stats import (
    DECISION_PROB,
    ROPE,
    Bayes,
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


SEED_CORPUS = "ravdess"  # the seed's claims are single runs on RAVDESS: only runs on it can test them
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
                 "verdict", "comparable", "study", "accuracy", "best_epoch", "wall_time_s", "answer", "speaker_share",
                 "claimed_gain", "gain_verdict", "delta_method"]


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
    other = sorted(k for k in data_kinds if k and k not in ("synthetic", SEED_CORPUS))
    if other:
        why.append(f"corpus {', '.join(other)}, not RAVDESS alone")
    return "; ".join(why)


def _classes(sel: Selection, row: str) -> tuple[str, ...]:
    return row_classes(sel.finished, row)


def _row_clips(clips: pd.DataFrame | None, row: str) -> pd.DataFrame:
    return clips[clips["row"] == row] if clips is not None and len(clips) else pd.DataFrame()


def _repeats_needed(clips: pd.DataFrame) -> int:
    """Repeats the speaker method needs: 2 where each repeat is one model (cross-corpus: the models' variance
    is the repeats' spread), 1 under cross-validation (the folds' models differ within a repeat)."""
    return 2 if len(clips) and clips.groupby("repeat")["fold"].nunique().max() == 1 else 1


ONE_MODEL_REASON = "1 seed of one model each: the models' variance needs 2 seeds"


@dataclass(frozen=True)
class Comparison:
    paired: Paired
    answer: Answer | None  # None where there is no Δ to answer about (fewer than 2 pairs)


def compare(sel: Selection, row: str, reference: str, metric: str, ci: str, rope: float = ROPE,
            threshold: float = DECISION_PROB, clips: pd.DataFrame | None = None, reference_label: str = "baseline",
            what: str = "resample", max_repeats: int | None = None) -> Comparison:
    """Δ = row − reference with its interval, p, decision and answer, by the report's method `ci`: "speaker"
    (the pooled predictions of the repeats both completed, paired by clip; on more than `max_repeats` of
    them the corrected t instead), else the resamples both finished ("corrected" resampled t; "t"/"bootstrap"
    give the plain paired t, their decisions stay corrected)."""
    from scipy import stats

    better, bounds = higher_is_better(metric), metric_bounds(metric)
    v, base = seed_values(sel.finished, row, metric), seed_values(sel.finished, reference, metric)
    mine, ref = _row_clips(clips, row), _row_clips(clips, reference)
    shared = set(mine["repeat"]) & set(ref["repeat"]) if len(mine) and len(ref) else set()
    within = max_repeats is None or len(shared) <= max_repeats
    if ci == speakers.METHOD and len(shared) >= _repeats_needed(mine) and within and len(sel.finished):
        pv = speakers.pseudo_values(mine[mine["repeat"].isin(shared)], _classes(sel, row),
                                    reference=ref[ref["repeat"].isin(shared)])
        comps = speakers.components(pv)  # the training population is not charged: speakers.py says why
        floor, train = comps.parts()
        crossed = comps.mean_squares.crossed
        # under the default's cap, a projection past it is priced with what the report states there
        beyond = None if max_repeats is None else _resample_evidence(sel, row, reference, v, base, mine)
        ev = Evidence(delta=float(pv.theta.mean()), floor_var=floor, train_var=train, repeats=len(shared),
                      df=comps.df(), floor_what="the test corpus's speakers" if crossed else "speakers",
                      n_speakers=comps.n_speakers, cap=max_repeats if beyond is not None else None, beyond=beyond)
        a = answer(ev, rope, threshold, better)
        se = math.sqrt(ev.var)
        p = float(2 * stats.t.sf(abs(ev.delta) / se, ev.df)) if se > 0 else math.nan
        keys = v.index.intersection(base.index)
        d = (v[keys] - base[keys]).to_numpy()
        wins = ((d > 0) if better else (d < 0)).sum() + 0.5 * (d == 0).sum()
        low, high = a.low, a.high
        if bounds is not None:
            span = bounds[1] - bounds[0]
            low, high = max(low, -span), min(high, span)
        paired = Paired(n=len(keys), delta=ev.delta, low=low, high=high, p=p,
                        p_improve=float(wins / len(d)) if len(d) else math.nan, method=speakers.METHOD,
                        bayes=Bayes(a.p_better, a.p_equivalent, a.p_worse, a.decision))
        return Comparison(paired, a)
    ratio = _test_train_ratio(sel, row, reference)
    paired = paired_delta(v, base, better, method="t" if ci == "t" else "corrected", test_train_ratio=ratio,
                          rope=rope, bounds=bounds, what=what, threshold=threshold, reference_label=reference_label)
    ev = _resample_evidence(sel, row, reference, v, base, mine)
    if paired.bayes is None or ev is None:
        return Comparison(paired, None)
    return Comparison(paired, answer(ev, rope, threshold, better))


def _test_train_ratio(sel: Selection, row: str, reference: str) -> float:
    """n_test/n_train of the two rows' runs (the corrected t's correlation)."""
    both = sel.finished[sel.finished["row"].isin([row, reference])]
    return float(both["ratio"].mean()) if len(both) else math.nan


def _resample_evidence(sel: Selection, row: str, reference: str, v: pd.Series, base: pd.Series,
                       mine: pd.DataFrame) -> Evidence | None:
    """The corrected t's Evidence on the resamples both finished (None: fewer than 2 pairs)."""
    keys = v.index.intersection(base.index)
    if len(keys) < 2:
        return None
    ratio = _test_train_ratio(sel, row, reference)
    d = (v[keys] - base[keys]).to_numpy(float)
    s2 = float(d.var(ddof=1))
    repeats = len({str(k).split("/")[0] for k in keys})  # the seeds both rows have: the pairs' repeats
    return Evidence(delta=float(d.mean()), floor_var=s2 * ratio, train_var=s2 / len(d), repeats=repeats,
                    df=len(d) - 1, floor_what="speakers (the corrected t's floor, s² · n_test/n_train)",
                    n_speakers=int(mine["speaker"].nunique()) if len(mine) else 0)


def claimed_gain(claimed: str, baseline_claimed: str) -> float:
    """The seed's claimed gain of a row: its single claimed F1 minus the baseline's (its last number, the
    "current baseline" the seed's later rows were measured against); NaN where either is not one number."""
    from harness.stats import parse_claim

    try:
        mine, base = parse_claim(claimed), parse_claim(baseline_claimed)
    except ValueError:
        return math.nan
    if len(mine) != 1 or mine[0][0] != mine[0][1] or not base or base[-1][0] != base[-1][1]:
        return math.nan
    return mine[0][0] - base[-1][0]


def gain_verdict(gain: float, low: float, high: float) -> str:
    if not (math.isfinite(gain) and math.isfinite(low) and math.isfinite(high)):
        return ""
    where = "above the Δ interval: ruled out" if gain > high else "below the Δ interval: ruled out" \
        if gain < low else "inside the Δ interval: consistent"
    return f"claimed gain {gain:+.3f} {where}"


def build_table(sel: Selection, metric: str, baseline: str, ci: str = "corrected", rope: float = ROPE,
                threshold: float = DECISION_PROB, clips: pd.DataFrame | None = None,
                max_repeats: int | None = None) -> pd.DataFrame:
    """One line per row (suite order) with every number the report shows; NaN where n/a.

    `ci` "speaker": a cross-validated row's mean is its repeats' pooled macro-F1 averaged, with the interval
    and Δ from the speaker × repeat variance components of the pooled predictions (`clips`, see
    `harness.speakers`); a row without a complete repeat, or (its mean, its Δ) resting on more than
    `max_repeats` repeats, falls back to "corrected" (column ci_method, delta_method). Otherwise the units are
    resamples (a seed's split, or a seed's fold): "corrected" widens intervals for their overlapping
    training sets, "t" and "bootstrap" treat them as independent."""
    bounds = metric_bounds(metric)
    base_row = sel.rows.loc[sel.rows["row"] == baseline]
    base_claimed = base_row["claimed"].iloc[0] if len(base_row) else ""
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
            "baseline": row.row == baseline, "delta_reason": "", "answer": None, "gain_verdict": "",
            "accuracy": mean_metric(cells, "test_accuracy"), "best_epoch": mean_metric(cells, "best_epoch"),
            "wall_time_s": mean_metric(cells, "wall_time_s")}
        if n:
            line.update(mean=v.mean(), min=v.min(), max=v.max())
        mine = _row_clips(clips, row.row)
        if ci == speakers.METHOD and len(mine) and n and (max_repeats is None
                                                          or mine["repeat"].nunique() <= max_repeats):
            iv = speakers.interval(speakers.pseudo_values(mine, _classes(sel, row.row)), bounds=bounds)
            line.update(mean=iv.estimate, ci_low=iv.low, ci_high=iv.high, ci_method=speakers.METHOD,
                        std=v.std(ddof=1) if n >= 2 else math.nan,
                        reason="" if math.isfinite(iv.se) else ONE_MODEL_REASON)
        elif n >= 2:
            low, high, method = mean_ci(v.to_numpy(), "corrected" if ci == speakers.METHOD else ci,
                                        test_train_ratio=ratio, bounds=bounds)
            line.update(ci_low=low, ci_high=high, ci_method=method, std=v.std(ddof=1))
        if row.row != baseline:
            cmp = compare(sel, row.row, baseline, metric, ci, rope, threshold, clips, what=unit,
                          max_repeats=max_repeats)
            paired = cmp.paired
            line.update(delta_method=paired.method, n_pairs=paired.n, delta=paired.delta, delta_low=paired.low,
                        delta_high=paired.high, p=paired.p, p_improve=paired.p_improve, delta_reason=paired.reason,
                        answer=cmp.answer)
            if paired.bayes is not None:
                b = paired.bayes
                line.update(p_better=b.p_better, p_equivalent=b.p_equivalent, p_worse=b.p_worse, decision=b.decision)
            if cmp.answer is not None and cmp.answer.ev.n_speakers:
                line["speaker_share"] = cmp.answer.ev.floor_var / cmp.answer.ev.var if cmp.answer.ev.var > 0 else math.nan
        if row.claimed:
            line["comparable"] = claim_comparability(row, sorted(set(cells["data"])))
            if metric != CLAIM_METRIC:
                line["verdict"] = f"n/a (claim is {CLAIM_METRIC})"
            elif line["comparable"]:
                line["verdict"] = f"not comparable: {line['comparable']}"
            elif not math.isfinite(line["ci_low"]):
                line["verdict"] = f"n/a ({line['reason'] or 'no interval'})"
            else:
                try:
                    line["verdict"] = claim_verdict(row.claimed, line["ci_low"], line["ci_high"])
                except ValueError as e:
                    line["verdict"] = f"n/a ({e})"
            if row.row != baseline and metric == CLAIM_METRIC and not line["comparable"]:
                line["claimed_gain"] = claimed_gain(row.claimed, base_claimed)
                line["gain_verdict"] = gain_verdict(line["claimed_gain"], line["delta_low"], line["delta_high"])
        lines.append(line)
    table = pd.DataFrame(lines).set_index("row")
    table["p_holm"] = holm(table["p"].to_numpy(dtype=float))
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
                      ci: str = "corrected", rope: float = ROPE, clips: pd.DataFrame | None = None,
                      max_repeats: int | None = None) -> list[ClaimCheck]:
    """The seed's conclusions whose two rows are both in the suite, compared as the table compares rows."""
    names = set(sel.rows["row"])
    out = []
    for claim in claims:
        if claim.reference in names and claim.variant in names:
            paired = compare(sel, claim.variant, claim.reference, metric, ci, rope, clips=clips,
                             reference_label=claim.reference, max_repeats=max_repeats).paired
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
        a = t["answer"]
        if isinstance(a, Answer):  # its numbers are the main table's, its detail the details'
            gain = f" The seed's {t['gain_verdict']}." if t["gain_verdict"] else ""
            words = a.short() if what else a.short().replace("undecided", "**undecided**", 1)
            out.append((f"`{row}` is **{what}** `{baseline}`: " if what else f"`{row}` vs `{baseline}`: ")
                       + f"{words}{gain}")
            continue
        if what:
            out.append(f"`{row}` is **{what}** `{baseline}`: {_probs(t)} ({numbers}).")
        else:
            out.append(f"`{row}` vs `{baseline}`: **undecided**: {_probs(t)}, none reaches the decision "
                       f"threshold ({numbers}).")
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
