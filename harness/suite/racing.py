"""Racing rows to a decision: spend each new repeat only where the answer is still open.

`suite run --until-decided` first runs the file's seeds (at least 2 repeats per
row), then goes round by round (Maron & Moore 1994; F-Race, Birattari et al.
2002): every row whose decision against the baseline is still open gets one more
repeat (a seed, or every fold of it under cross-validation), and so does the
baseline, so that the new repeat is paired. A decided row gets no more runs. It
stops when every row is decided or the next round would spend more training runs
than `--budget` allows; the budget is never exceeded. A row is also given up
(undecidable) after `FUTILITY_AFTER` paired repeats when even unlimited repeats
could not decide it at today's Δ: repeats average out the training noise but not the
speakers (the speaker part of the variance measured by `harness.speakers` where the report's
default speaker method serves the comparison: cross-corpus, or cross-validated on up to 2 repeats;
otherwise the corrected t's floor s² · n_test/n_train), so a small
effect near the ROPE's edge can stay open forever (`verdict.Answer.floor_decides`).

Decisions are the report's (the same method, numbers and ROPE; racing prints the report's
bottom line, which says where a repeat past the default interval's cap switched a comparison to
the corrected t, and each row's answer, word for word), but a row stops only at a stricter threshold,
`RACING_PROB` = 0.99 rather than the report's 0.95: looking at the data after
every round and stopping when it looks decided is optional stopping, and each
look is another chance to stop on noise. With up to ~5 looks per row,
0.99 ≈ 1 − 0.05/5 keeps the chance of stopping on a wrong decision near the
report's 5% (a Bonferroni bound over the looks).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pandas as pd

from harness import tracking
from harness.errors import HarnessError
from harness.report.bottomline import bottom_line
from harness.report.repeat_cap import default_table
from harness.report.runs import has_repeats, read_clips, read_suite, select_cells
from harness.report.verdict import Answer, answer
from harness.stats import DECISION_PROB, ROPE, decide
from harness.suite.file import RowSpec, Suite
from harness.suite.planning import Cell, row_cells, row_fingerprints

RACING_PROB = 0.99
RACE_TAG = "harness.racing"  # on each row's parent: {"rounds", "budget", "threshold", "start_seeds"} as JSON
DEFAULT_BUDGET_FACTOR = 3  # without --budget: three times the cells of the first seeds
FUTILITY_AFTER = 4  # paired repeats before a row may be given up as undecidable (early estimates are too noisy)


@dataclass(frozen=True)
class Standing:
    """Where the race is: each row's decision and the finished cells so far."""
    decisions: dict[str, str]  # row -> better / worse / equivalent / undecided / undecidable (baseline: "baseline")
    finished: frozenset[tuple[str, int, int | None]]  # (row, seed, fold) of finished cells
    spent: int  # finished cells of the raced rows
    answers: dict[str, Answer] = field(default_factory=dict)  # row -> the report's answer (its threshold, 0.95)
    bottom: str = ""  # the report's bottom line on these runs, word for word (what the cap costs included)


def standing(c, exp_id: str, rows: Sequence[RowSpec], baseline: str, fingerprint: str | Mapping[str, str],
             threshold: float = RACING_PROB, rope: float = ROPE) -> Standing:
    """The report's statistics on the finished cells of these rows (this data, current configs): one data
    fingerprint, or each row's own."""
    parents, cells = read_suite(c, exp_id)
    names = {r.name for r in rows}
    hashes = {r.name: r.config.config_hash for r in rows}
    parents = parents[parents["row"].isin(names) & (parents["config_hash"] == parents["row"].map(hashes))]
    fps = row_fingerprints(fingerprint, rows)
    if len(cells):
        cells = cells[cells["fingerprint"] == cells["row"].map(fps)]
    sel = select_cells(parents, cells)
    fin = sel.finished
    finished = frozenset((r, int(s), None if pd.isna(f) else int(f))
                         for r, s, f in zip(fin["row"], fin["seed"], fin["fold"]))
    decisions = {r.name: "undecided" for r in rows}
    decisions[baseline] = "baseline"
    answers: dict[str, Answer] = {}
    bottom = ""
    if len(fin):
        clips = read_clips(c, fin) if has_repeats(fin) else None
        _, _, table = default_table(sel, clips, "test_f1_macro", baseline, rope, DECISION_PROB)
        bottom = bottom_line(table, baseline, "test_f1_macro", rope)
        for row, t in table.iterrows():
            a = t["answer"]
            if row == baseline or row not in decisions or a is None:
                continue
            answers[row] = a
            # the same evidence at racing's stricter threshold
            strict = answer(a.ev, rope, threshold, a.higher_better)
            decisions[row] = decide(strict.p_better, strict.p_equivalent, strict.p_worse, threshold) \
                if a.ev.var > 0 else "undecided"
            repeats = fin.loc[fin["row"] == row, "seed"].nunique()
            if decisions[row] == "undecided" and repeats >= FUTILITY_AFTER and not strict.floor_decides:
                decisions[row] = "undecidable"
    return Standing(decisions=decisions, finished=finished, spent=len(finished), answers=answers, bottom=bottom)


def summary_lines(st: Standing, rounds: int, budget: int) -> list[str]:
    """Racing's closing words: what stopped it, then the report's bottom line and each row's answer, as the
    report words them."""
    decided = [f"{r} ({d})" for r, d in st.decisions.items() if d in ("better", "worse", "equivalent")]
    given_up = [r for r, d in st.decisions.items() if d == "undecidable"]
    still = [r for r, d in st.decisions.items() if d == "undecided"]
    head = f"racing: {rounds} round(s), {st.spent} training runs (budget {budget})"
    parts = [f"stopped at P ≥ {RACING_PROB}: {', '.join(decided)}" if decided else "no row reached "
             f"P ≥ {RACING_PROB}"]
    if given_up:
        parts.append(f"given up as undecidable (more seeds cannot decide them at today's Δ): {', '.join(given_up)}")
    if still:
        parts.append(f"still open: {', '.join(still)}")
    # then the report's words: its bottom line (which says so where a repeat past the default's cap switched a
    # comparison to the corrected t) and each row's answer
    return ([f"{head}; " + "; ".join(parts)] + ([st.bottom] if st.bottom else [])
            + [f"  {r}: {a.short()}" for r, a in st.answers.items()])


def complete_seeds(row: RowSpec, finished: frozenset) -> set[int]:
    """Seeds whose every cell (every fold) of this row finished."""
    by_seed: dict[int, int] = {}
    for name, seed, _ in finished:
        if name == row.name:
            by_seed[seed] = by_seed.get(seed, 0) + 1
    return {s for s, n in by_seed.items() if n == max(row.config.cv_folds, 1)}


def next_round(rows: Sequence[RowSpec], baseline: str, st: Standing) -> list[Cell]:
    """One more repeat for every undecided row, and the baseline's repeat of the same seed: the lowest seed
    some undecided row has not completed. Empty when every row is decided."""
    open_rows = [r for r in rows if st.decisions.get(r.name) == "undecided"]
    if not open_rows:
        return []
    seed = min(min(set(range(len(st.finished) + 2)) - complete_seeds(r, st.finished)) for r in open_rows)
    base = next(r for r in rows if r.name == baseline)
    cells = []
    for r in [base, *open_rows]:
        cells += [c for c in row_cells(r, [seed]) if (c.row, c.seed, c.fold) not in st.finished]
    return cells


def max_rounds(rows: Sequence[RowSpec], baseline: str, budget: int, first: int) -> int:
    """The most racing rounds `budget` allows after the `first` cells: each round adds a repeat to the baseline
    and at least one open row, the cheapest such round (fewest folds) every time."""
    folds = {r.name: max(r.config.cv_folds, 1) for r in rows}
    others = [n for name, n in folds.items() if name != baseline]
    cost = folds.get(baseline, 1) + (min(others) if others else 0)
    return max(0, budget - first) // cost


def race_tags(rounds: int, budget: int, threshold: float, start_seeds: Sequence[int]) -> dict[str, str]:
    return {RACE_TAG: json.dumps({"rounds": rounds, "budget": budget, "threshold": threshold,
                                  "start_seeds": list(start_seeds)})}


def check_racing(suite: Suite, selected: Sequence[RowSpec], seeds: Sequence[int], until_decided: bool,
                 budget: int | None, target_ci: float | None) -> str:
    """`--until-decided`'s flags, checked before any work; returns the baseline row it races against."""
    from harness.report.table import default_baseline

    if budget is not None and not until_decided:
        raise HarnessError("--budget goes with --until-decided")
    if budget is not None and budget < 1:
        raise HarnessError(f"invalid --budget {budget}: expected a number of training runs >= 1")
    baseline = default_baseline([r.name for r in suite.rows])
    if not until_decided:
        return baseline
    if target_ci is not None:
        raise HarnessError("--until-decided and --target-ci are two stopping rules: use one")
    if len(seeds) < 2:
        raise HarnessError(f"--until-decided needs at least 2 starting seeds (a decision needs 2 paired repeats), "
                           f"got {list(seeds)}")
    if baseline not in {r.name for r in selected}:
        raise HarnessError(f"--until-decided races rows against the baseline row {baseline!r}: include it in --rows")
    if len(selected) < 2:
        raise HarnessError("--until-decided needs a row besides the baseline")
    return baseline


def record_race(c, exp_id: str, parents: dict[str, str], fingerprint: str | Mapping[str, str],
                rows: Sequence[RowSpec], start: Sequence[int], budget: int) -> None:
    """On each row's parent: that its seeds came from a sequential design, how many rounds, the budget."""
    st = standing(c, exp_id, rows, rows[0].name, fingerprint)
    seeds_run = {s for _, s, _ in st.finished}
    rounds = len(seeds_run - set(start))
    for run_id in parents.values():
        tracking.set_tags(c, run_id, race_tags(rounds, budget, RACING_PROB, start))
