"""What the default interval's repeat cap costs: the speaker method serves a cross-validated comparison
on up to `calibrated.SPEAKER_DEFAULT_MAX_REPEATS` repeats, the corrected t beyond (its calibration missed
there). A user who adds the repeat past the cap gets a wider interval; this module prices that from the
same runs, for the report's bottom line, racing's summary and `suite run`'s warning.

`default_table` is the report's table under the default interval, with the speaker method's Δ
half-width beside each comparison the cap handed to the corrected t (column `speaker_half`);
`cap_costs` words both sides of the cap; `switch_warning` is `suite run`'s line before a repeat
past the cap is run.
"""
from __future__ import annotations

import math

import pandas as pd

from harness import speakers
from harness.report.calibrated import SPEAKER_DEFAULT_MAX_REPEATS, SPEAKER_IS_DEFAULT, default_interval, \
    is_cross_corpus, speaker_ready
from harness.report.runs import Selection
from harness.report.table import build_table, compare
from harness.report.verdict import Answer
from harness.stats import DECISION_PROB, ROPE

# The corrected t over 3 repeats, where the cap hands comparisons to it, measured on new synthetic speaker
# populations (docs/statistics.md; runs 8 and 9, 2026-12-07): std(Δ̂)/SE 0.42-0.46 with 24 speakers, 0.44-0.49
# with 10, that is intervals 1/0.49-1/0.42 = 2.0-2.4 times as wide as the spread of Δ̂ needs (0.34-0.45 over 4-6).
CORRECTED_OVER_WIDTH = "2.0-2.4x: std(Δ̂)/SE 0.42-0.49 over 3 repeats"


def default_table(sel: Selection, clips: pd.DataFrame | None, metric: str, baseline: str, rope: float = ROPE,
                  threshold: float = DECISION_PROB) -> tuple[str, int | None, pd.DataFrame]:
    """(method, repeat cap, table) of the report's default, as the report and racing use it; where the cap
    handed a comparison to the corrected t, the speaker method's Δ half-width on the same runs beside it."""
    ci, cap = default_interval(sel, clips, metric)
    t = build_table(sel, metric, baseline, ci, rope, threshold, clips, cap)
    t["speaker_half"] = math.nan
    if not (SPEAKER_IS_DEFAULT and speaker_ready(sel, clips, metric)) or is_cross_corpus(sel):
        return ci, cap, t
    for row, r in t.iterrows():
        if r["baseline"] or not isinstance(r["answer"], Answer) or r["delta_method"] == speakers.METHOD:
            continue
        if r["answer"].ev.repeats <= SPEAKER_DEFAULT_MAX_REPEATS:
            continue  # the corrected t serves it for want of a complete repeat, not because of the cap
        beside = compare(sel, str(row), baseline, metric, speakers.METHOD, rope, threshold, clips)
        if beside.paired.method == speakers.METHOD and beside.answer is not None:
            t.loc[row, "speaker_half"] = (beside.answer.high - beside.answer.low) / 2
    return ci, cap, t


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _widths(values) -> str:
    values = list(values)
    lo, hi = min(values), max(values)
    return f"±{lo:.3f}" if f"{lo:.3f}" == f"{hi:.3f}" else f"±{lo:.3f} to ±{hi:.3f}"


def _rows(names: list[str], compared: int) -> str:
    if len(names) == compared:
        return "every comparison" if compared > 1 else "the comparison"
    return ", ".join(f"`{n}`" for n in names)


def cap_costs(table: pd.DataFrame) -> list[str]:
    """The bottom line's sentences on the cap, each priced from the runs: what the repeat past it would cost
    the comparisons at it (or open below it, where the repeats within it would not decide them), and what it
    costs those already past it."""
    compared = table[~table["baseline"].astype(bool) & table["answer"].map(lambda a: isinstance(a, Answer))]
    at, past = {}, {}
    for row, r in compared.iterrows():
        a, ev = r["answer"], r["answer"].ev
        half = (a.high - a.low) / 2
        # at the cap, or open where the repeats within it would not decide it
        within = a.extra_repeats is not None and ev.repeats + a.extra_repeats <= (ev.cap or 0)
        if ev.cap is not None and ev.beyond is not None and (ev.repeats >= ev.cap
                                                              or (a.decision == "undecided" and not within)):
            at[str(row)] = (half, ev.half_at(ev.cap + 1), ev.cap)
        elif math.isfinite(r.get("speaker_half", math.nan)):
            past[str(row)] = (half, r["speaker_half"])
    out = []
    if at:
        cap = next(iter(at.values()))[2]
        out.append(f"A {_ordinal(cap + 1)} repeat switches the default interval of {_rows(list(at), len(compared))} "
                   f"from the speaker method (calibrated up to {cap} repeats) to the corrected t: a Δ half-width "
                   f"of {_widths(v[1] for v in at.values())} at {cap + 1} repeats, against "
                   f"{_widths(v[0] for v in at.values())} today.")
    if past:
        cap = SPEAKER_DEFAULT_MAX_REPEATS
        out.append(f"On more than {cap} repeats the default interval of {_rows(list(past), len(compared))} is the "
                   f"corrected t (the speaker method's calibration missed there): a Δ half-width of "
                   f"{_widths(v[0] for v in past.values())}, against {_widths(v[1] for v in past.values())} by the "
                   f"speaker method on the same runs (`report --ci speaker`, not calibrated there).")
    return out


def switch_warning(repeats: int) -> str:
    """`suite run`'s one line before a cross-validated suite runs its repeat past the cap ("" when it won't)."""
    cap = SPEAKER_DEFAULT_MAX_REPEATS
    if not SPEAKER_IS_DEFAULT or repeats <= cap:
        return ""
    return (f"warning: this run can reach {repeats} repeats: from the {_ordinal(cap + 1)} repeat of a "
            f"cross-validated comparison the report's default interval is the corrected t, not the speaker method "
            f"(calibrated up to {cap} repeats), and its intervals are about twice as wide as needed (measured "
            f"{CORRECTED_OVER_WIDTH}, docs/statistics.md)")
