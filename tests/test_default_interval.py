"""The report's default interval follows the calibration: the speaker method where it was measured
calibrated (a cross-validated comparison on up to 2 repeats), the corrected t beyond (3 repeats missed,
pooled over two fresh runs; 4 missed twice)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from harness import speakers
from harness.report import calibrated, document, publish, table
from harness.report.runs import Selection

CLASSES = ("neutral", "positive", "negative")
S, K = 8, 4  # speakers, folds


def cv_suite(repeats: int, seed: int = 0) -> tuple[Selection, pd.DataFrame]:
    """Two rows of `repeats` × 4-fold speaker CV on 8 speakers, with their cells and pooled predictions; the
    variant is better (skill 0.75 against 0.6)."""
    rng = np.random.default_rng(seed)
    cells, clips = [], []
    for r in range(repeats):
        folds = rng.permutation(S) % K
        for row, skill in (("baseline", 0.6), ("variant", 0.75)):
            mine = []
            for s in range(S):
                p = np.clip(skill + 0.1 * np.sin(s) + rng.normal(0, 0.05), 0.05, 0.95)
                for i in range(12):
                    true = CLASSES[i % 3]
                    pred = true if rng.random() < p else CLASSES[rng.integers(3)]
                    mine.append({"row": row, "repeat": r, "fold": int(folds[s]), "speaker": f"{s:02d}",
                                 "clip": f"{s}/{i}", "true": true, "pred": pred})
            mine = pd.DataFrame(mine)
            clips.append(mine)
            for f, g in mine.groupby("fold"):
                cells.append({"row": row, "seed": r, "fold": f, "resample": f"{r}/{f}", "ratio": 2 / 6,
                              "cv_folds": K, "data": "synthetic", "classes": ",".join(CLASSES),
                              "mode": "sentiment", "split": "actor", "status": "FINISHED",
                              "metrics.test_f1_macro": f1_score(g["true"], g["pred"], labels=list(CLASSES),
                                                                average="macro")})
    rows = pd.DataFrame([{"row": n, "claimed": "", "study": "", "profile": "", "profile_changes": ""}
                         for n in ("baseline", "variant")])
    failed = pd.DataFrame(columns=["row", "resample", "rerun_finished"])
    return Selection(rows=rows, finished=pd.DataFrame(cells), failed=failed), pd.concat(clips, ignore_index=True)


def default_table(sel: Selection, clips: pd.DataFrame) -> tuple[str, int | None, pd.DataFrame]:
    ci = calibrated.default_ci(sel, clips, "test_f1_macro")
    cap = calibrated.default_max_repeats(sel, ci)
    return ci, cap, table.build_table(sel, "test_f1_macro", "baseline", ci, clips=clips, max_repeats=cap)


def test_on_two_repeats_the_default_is_the_speaker_method_for_every_number():
    sel, clips = cv_suite(repeats=2)
    ci, cap, t = default_table(sel, clips)
    assert ci == speakers.METHOD and cap == calibrated.SPEAKER_DEFAULT_MAX_REPEATS == 2
    assert list(t["ci_method"]) == [speakers.METHOD] * 2 and t.loc["variant", "delta_method"] == speakers.METHOD
    # the speaker method's mean is the repeats' pooled macro-F1, not the folds' mean
    assert t.loc["variant", "mean"] != pytest.approx(sel.finished.query("row == 'variant'")["metrics.test_f1_macro"].mean())
    assert document._fallback_lines(document.SuiteReport("e", "test_f1_macro", ci, "baseline", sel, t, [],
                                                         max_repeats=cap)) == []


@pytest.mark.parametrize("repeats", [3, 4])
def test_past_two_repeats_the_default_is_the_corrected_t_throughout(repeats):
    sel, clips = cv_suite(repeats=repeats)
    ci, cap, t = default_table(sel, clips)
    assert ci == "corrected" and cap is None
    assert list(t["ci_method"]) == ["corrected"] * 2 and t.loc["variant", "delta_method"] == "corrected"
    # the speaker method named by the user serves every repeat
    asked = table.build_table(sel, "test_f1_macro", "baseline", speakers.METHOD, clips=clips)
    assert asked.loc["variant", "delta_method"] == speakers.METHOD
    assert list(asked["ci_method"]) == [speakers.METHOD] * 2


def raced() -> tuple[Selection, pd.DataFrame]:
    """The baseline raced to 4 repeats (paired with another row, not shown), the variant stopped at 2."""
    sel, clips = cv_suite(repeats=4)
    keep = (sel.finished["row"] == "baseline") | (sel.finished["seed"] < 2)
    sel = Selection(rows=sel.rows, finished=sel.finished[keep], failed=sel.failed)
    return sel, clips[(clips["row"] == "baseline") | (clips["repeat"] < 2)]


def test_each_number_is_by_the_repeats_it_rests_on_and_the_header_says_which_the_corrected_t_serves():
    sel, clips = raced()
    ci, cap, t = default_table(sel, clips)
    assert ci == speakers.METHOD and cap == 2
    # the variant's Δ rests on the 2 repeats both completed: the speaker method's
    assert t.loc["variant", "delta_method"] == speakers.METHOD and t.loc["variant", "ci_method"] == speakers.METHOD
    # the baseline's own mean rests on 4: the corrected t's, over its resamples
    assert t.loc["baseline", "ci_method"] == "corrected"
    assert t.loc["baseline", "mean"] == pytest.approx(
        sel.finished.query("row == 'baseline'")["metrics.test_f1_macro"].mean())
    rep = document.SuiteReport("e", "test_f1_macro", ci, "baseline", sel, t, [], max_repeats=cap)
    line, = document._fallback_lines(rep)
    assert line.startswith("- intervals of `baseline` (") and "more than 2 repeats" in line
    assert "corrected resampled t" in line and "`variant`" not in line
    assert document.ci_label(rep) == "speaker; corrected for 1 row"
    # the row's note in MLflow names its own method
    assert "mean over 16 resamples" in publish.row_note(t.loc["baseline"], "baseline", ci)
    assert "(corrected)" in publish.row_note(t.loc["baseline"], "baseline", ci)
    assert "pooled test macro-F1" in publish.row_note(t.loc["variant"], "baseline", ci)


def test_the_default_prices_repeats_past_its_cap_with_the_corrected_t_and_a_named_speaker_method_does_not():
    sel, clips = cv_suite(repeats=2)
    capped = table.compare(sel, "variant", "baseline", "test_f1_macro", speakers.METHOD, clips=clips, max_repeats=2)
    named = table.compare(sel, "variant", "baseline", "test_f1_macro", speakers.METHOD, clips=clips)
    corrected = table.compare(sel, "variant", "baseline", "test_f1_macro", "corrected", clips=clips)
    # the same interval today; past 2 repeats the default would state the corrected t's
    assert capped.paired.low == named.paired.low and capped.paired.high == named.paired.high
    assert capped.answer.ev.se_at(6) == pytest.approx(corrected.answer.ev.se_at(6))
    assert capped.answer.more_repeats().endswith("(the corrected t: past 2 repeats)")
    assert "the corrected t" not in named.answer.more_repeats() + named.answer.floor()


# --- what the cap costs, said where a user adds the repeat past it ---------------------------------------

def bottom(sel: Selection, clips: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    from harness.report import bottomline, repeat_cap

    _, _, t = repeat_cap.default_table(sel, clips, "test_f1_macro", "baseline")
    return t, bottomline.bottom_line(t, "baseline", "test_f1_macro", 0.01)


def test_at_two_repeats_the_bottom_line_prices_the_third_with_the_corrected_t_from_the_same_runs():
    sel, clips = cv_suite(repeats=2)
    t, line = bottom(sel, clips)
    today = (t.loc["variant", "delta_high"] - t.loc["variant", "delta_low"]) / 2  # the speaker method's
    # the corrected t's Δ on the same runs, projected to a 3rd repeat (its training part shrinks as 2/3)
    corrected = table.compare(sel, "variant", "baseline", "test_f1_macro", "corrected", clips=clips).answer.ev
    third = corrected.half_at(3)
    assert third == pytest.approx(t.loc["variant", "answer"].ev.half_at(3)) and third > today
    assert (f"A 3rd repeat switches the default interval of the comparison from the speaker method (calibrated up "
            f"to 2 repeats) to the corrected t: a Δ half-width of ±{third:.3f} at 3 repeats, against "
            f"±{today:.3f} today.") in line


def test_past_the_cap_the_bottom_line_states_both_widths():
    sel, clips = cv_suite(repeats=4)
    t, line = bottom(sel, clips)
    corrected = (t.loc["variant", "delta_high"] - t.loc["variant", "delta_low"]) / 2
    named = table.compare(sel, "variant", "baseline", "test_f1_macro", speakers.METHOD, clips=clips).answer
    speaker = (named.high - named.low) / 2
    assert t.loc["variant", "speaker_half"] == pytest.approx(speaker) and speaker < corrected
    assert (f"On more than 2 repeats the default interval of the comparison is the corrected t (the speaker "
            f"method's calibration missed there): a Δ half-width of ±{corrected:.3f}, against ±{speaker:.3f} by the "
            f"speaker method on the same runs (`report --ci speaker`, not calibrated there).") in line
    assert "A 3rd repeat" not in line


def test_below_the_cap_a_comparison_the_repeats_within_it_decide_hears_nothing_of_it(monkeypatch):
    from harness.report import repeat_cap

    # Under today's cap of 2 no cross-validated comparison is below it with a repeat to gain (1 repeat cannot
    # tell speakers from training noise, so more repeats never decide it): the rule, under a cap of 3.
    for module in (calibrated, repeat_cap):
        monkeypatch.setattr(module, "SPEAKER_DEFAULT_MAX_REPEATS", 3)
    sel, clips = cv_suite(repeats=2)
    t, line = bottom(sel, clips)
    a = t.loc["variant", "answer"]
    assert a.decision == "undecided" and a.extra_repeats == 1 and t["speaker_half"].isna().all()
    assert "Next: about 1 more repeat would decide `variant` if Δ holds" in line
    assert "repeat switches" not in line and "corrected t" not in line


def test_a_raced_comparison_past_the_cap_is_named_and_one_within_it_is_not():
    # the variant raced to 4 repeats beside the baseline, another row stopped at 2
    sel, clips = cv_suite(repeats=4)
    stopped = clips[(clips["row"] == "variant") & (clips["repeat"] < 2)].assign(row="stopped")
    cells = sel.finished[(sel.finished["row"] == "variant") & (sel.finished["seed"] < 2)].assign(row="stopped")
    rows = pd.concat([sel.rows, pd.DataFrame([{"row": "stopped", "claimed": "", "study": "", "profile": "",
                                               "profile_changes": ""}])], ignore_index=True)
    sel = Selection(rows=rows, finished=pd.concat([sel.finished, cells], ignore_index=True), failed=sel.failed)
    t, line = bottom(sel, pd.concat([clips, stopped], ignore_index=True))
    assert t.loc["variant", "delta_method"] == "corrected" and t.loc["stopped", "delta_method"] == speakers.METHOD
    assert "On more than 2 repeats the default interval of `variant` is the corrected t" in line
