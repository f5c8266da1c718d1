"""The suite's bottom line: the count of decisions, the best row with its Δ and interval, and what would
decide the open rows, said once for the suite (more repeats, more speakers, or neither)."""
from __future__ import annotations

import math

import pandas as pd

from harness.report.bottomline import bottom_line
from harness.report.verdict import Evidence, answer


def ev(delta, floor_sd, train_sd, repeats=2, cap=None, beyond_sd=None):
    beyond = None if beyond_sd is None else Evidence(delta=delta, floor_var=beyond_sd ** 2, train_var=train_sd ** 2,
                                                     repeats=repeats, df=4 * repeats - 1, n_speakers=24)
    return Evidence(delta=delta, floor_var=floor_sd ** 2, train_var=train_sd ** 2, repeats=repeats, df=20,
                    n_speakers=24, cap=cap, beyond=beyond)


def table(**rows) -> pd.DataFrame:
    """A report table of these comparisons (row name -> Evidence, or None for a row without a Δ)."""
    lines = [{"row": "base", "n": 8, "baseline": True, "decision": "", "delta": math.nan, "delta_low": math.nan,
              "delta_high": math.nan, "answer": None, "delta_reason": ""}]
    for name, e in rows.items():
        a = answer(e) if e is not None else None
        lines.append({"row": name, "n": 8 if a else 1, "baseline": False, "decision": a.decision if a else "",
                      "delta": e.delta if a else math.nan, "delta_low": a.low if a else math.nan,
                      "delta_high": a.high if a else math.nan, "answer": a, "delta_reason": "" if a else "1 seed"})
    return pd.DataFrame(lines).set_index("row")


def test_the_counts_the_best_row_and_nothing_left_to_run():
    t = table(up=ev(0.08, 0.01, 0.01), down=ev(-0.08, 0.01, 0.01), same=ev(0.001, 0.001, 0.002))
    line = bottom_line(t, "base", "test_f1_macro", 0.01)
    up = t.loc["up"]
    assert line == (f"Of 3 rows compared with `base` on `test_f1_macro`: 1 better, 1 equivalent (within ±0.01), "
                    f"1 worse, 0 undecided. Best: `up`, Δ +0.080 [{up['delta_low']:.3f}, {up['delta_high']:.3f}] "
                    f"(better). Every row is decided: nothing more to run for these comparisons.")


def test_where_lower_is_better_the_best_row_has_the_lowest_delta_and_none_may_beat_the_baseline():
    t = table(up=ev(0.08, 0.01, 0.01), down=ev(-0.08, 0.01, 0.01))
    assert "Best: `down`, Δ -0.080" in bottom_line(t, "base", "val_loss", 0.01)
    worse = table(a=ev(-0.08, 0.01, 0.01), b=ev(-0.02, 0.01, 0.01))
    assert "No row beats `base` on average; the closest: `b`, Δ -0.020" in bottom_line(worse, "base", "test_f1_macro",
                                                                                        0.01)


def test_what_would_decide_the_open_rows_is_said_once_per_kind_of_step():
    # two rows more repeats would decide, one only more speakers, one neither (past the cap's repeats the
    # corrected t's floor is too wide, and more speakers alone leave the training runs too wide), one without a Δ
    t = table(r1=ev(-0.05, 0.005, 0.025), r2=ev(-0.05, 0.005, 0.025), spk=ev(0.04, 0.02, 0.01),
              stuck=ev(0.05, 0.005, 0.03, cap=3, beyond_sd=0.03), new=None)
    routes = {r: t.loc[r, "answer"].route() for r in ("r1", "r2", "spk", "stuck")}
    assert routes == {"r1": "repeats", "r2": "repeats", "spk": "speakers", "stuck": "neither"}
    line = bottom_line(t, "base", "test_f1_macro", 0.01)
    k, n = t.loc["r1", "answer"].extra_repeats, t.loc["spk", "answer"].speakers_needed[0]
    assert line.count("Next:") == 1
    assert (f"Next: about {k} more repeat{'' if k == 1 else 's'} would decide `r1` and `r2` if Δ holds (`suite run "
            f"--until-decided` adds them only where needed); more speakers, not more repeats, would decide `spk` "
            f"(about {n} speakers); neither more repeats (up to 64 more) nor up to 100x today's speakers would decide "
            f"`stuck` at today's Δ; `new` needs runs paired with the baseline's for a Δ (1 seed).") in line
    assert "4 undecided, 1 without a Δ" in line
    # the open row the cap keeps from deciding is told what the repeat past it would cost
    assert "A 4th repeat switches the default interval of `stuck` from the speaker method" in line


def test_different_repeat_counts_are_named_per_row_in_the_one_clause():
    t = table(near=ev(-0.05, 0.005, 0.025), far=ev(-0.03, 0.005, 0.025))
    ks = [t.loc[r, "answer"].extra_repeats for r in ("near", "far")]
    assert ks[0] != ks[1]
    assert (f"Next: more repeats would decide `near` and `far`: about {ks[0]} for `near`, {ks[1]} for `far`, if Δ "
            f"holds") in bottom_line(t, "base", "test_f1_macro", 0.01)
