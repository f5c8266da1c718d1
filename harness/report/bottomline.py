"""The suite's bottom line in one short paragraph: how many rows beat, tie with (equivalent) or lose to the
baseline and how many are open, the best row with its Δ and interval, and what would decide the open rows,
said once for the suite. The report opens with it, the MLflow experiment's description starts with it and
racing closes with it: one function, so they say it in the same words."""
from __future__ import annotations

import math

import pandas as pd

from harness.report.markdown import fmt_ci, fmt_delta
from harness.report.repeat_cap import cap_costs
from harness.report.verdict import MAX_EXTRA_REPEATS, MAX_SPEAKER_FACTOR, Answer
from harness.stats import higher_is_better

DECISIONS = ("better", "equivalent", "worse", "undecided")


def _names(rows) -> str:
    rows = [f"`{r}`" for r in rows]
    return rows[0] if len(rows) == 1 else f"{', '.join(rows[:-1])} and {rows[-1]}"


def _counts(t: pd.DataFrame, baseline: str, metric: str, rope: float) -> str:
    n = {d: int((t["decision"] == d).sum()) for d in DECISIONS}
    none = int((t["decision"] == "").sum())
    rows = f"{len(t)} row{'' if len(t) == 1 else 's'}"
    parts = [f"{n['better']} better", f"{n['equivalent']} equivalent (within ±{rope:g})", f"{n['worse']} worse",
             f"{n['undecided']} undecided"] + ([f"{none} without a Δ"] if none else [])
    return f"Of {rows} compared with `{baseline}` on `{metric}`: {', '.join(parts)}."


def _best(t: pd.DataFrame, baseline: str, metric: str) -> str:
    with_delta = t[t["delta"].astype(float).map(math.isfinite)]
    if with_delta.empty:
        return ""
    gain = with_delta["delta"].astype(float) * (1 if higher_is_better(metric) else -1)
    row = gain.idxmax()
    r = with_delta.loc[row]
    said = f"`{row}`, Δ {fmt_delta(r['delta'])} {fmt_ci(r['delta_low'], r['delta_high'])} ({r['decision']})"
    return f"Best: {said}." if gain[row] > 0 else f"No row beats `{baseline}` on average; the closest: {said}."


def _next(t: pd.DataFrame) -> str:
    """What would decide the open rows, once for the suite: a clause per kind of step, not a line per row."""
    answers = {row: a for row, a in t["answer"].items() if isinstance(a, Answer) and a.decision == "undecided"}
    no_delta = [row for row, r in t.iterrows() if not r["decision"]]
    if not answers and not no_delta:
        return "Every row is decided: nothing more to run for these comparisons."
    by: dict[str, list] = {}
    for row, a in answers.items():
        by.setdefault(a.route(), []).append(row)
    out = []
    if "repeats" in by:
        rows = by["repeats"]
        counts = [answers[r].extra_repeats for r in rows]
        race = "(`suite run --until-decided` adds them only where needed)"
        if all(k is not None for k in counts) and len(set(counts)) == 1:
            out.append(f"about {counts[0]} more repeat{'' if counts[0] == 1 else 's'} would decide {_names(rows)} "
                       f"if Δ holds {race}")
        elif all(k is not None for k in counts):
            each = ", ".join(f"{k} for `{r}`" for r, k in zip(rows, counts))
            out.append(f"more repeats would decide {_names(rows)}: about {each}, if Δ holds {race}")
        else:
            out.append(f"more repeats would decide {_names(rows)} or spread their identical differences")
    if "speakers" in by:
        rows = by["speakers"]
        sizes = [answers[r].speakers_needed for r in rows]
        known = [s for s in sizes if s]
        about = (f" (about {', '.join(str(n) for n, _ in known)} speakers"
                 f"{' with more repeats' if any(too for _, too in known) else ''})") if known else ""
        out.append(f"more speakers, not more repeats, would decide {_names(rows)}{about}")
    if "neither" in by:
        out.append(f"neither more repeats (up to {MAX_EXTRA_REPEATS} more) nor up to {MAX_SPEAKER_FACTOR}x "
                   f"today's speakers would decide {_names(by['neither'])} at today's Δ")
    if no_delta:
        reasons = {row: t.loc[row, "delta_reason"] or "no paired resample" for row in no_delta}
        out.append(f"{_names(no_delta)} need{'s' if len(no_delta) == 1 else ''} runs paired with the baseline's "
                   f"for a Δ (" + "; ".join(f"`{r}`: {why}" if len(no_delta) > 1 else why
                                           for r, why in reasons.items()) + ")")
    text = "; ".join(out)
    return f"Next: {text}."


def bottom_line(table: pd.DataFrame, baseline: str, metric: str, rope: float) -> str:
    """The paragraph (markdown): the counts, the best row, what would decide the open rows, and what the
    default interval's repeat cap costs where it matters."""
    t = table[(table["n"] > 0) & ~table["baseline"].astype(bool)]
    if t.empty:
        return f"No row has run beside `{baseline}` yet: nothing to compare."
    return " ".join(s for s in [_counts(t, baseline, metric, rope), _best(t, baseline, metric), _next(t),
                                *cap_costs(table)] if s)
