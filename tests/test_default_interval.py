"""The report's default interval follows the calibration: the speaker method where it was measured
calibrated (a cross-validated comparison on up to 3 repeats), the corrected t beyond (4 repeats missed)."""
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
    assert ci == speakers.METHOD and cap == calibrated.SPEAKER_DEFAULT_MAX_REPEATS == 3
    assert list(t["ci_method"]) == [speakers.METHOD] * 2 and t.loc["variant", "delta_method"] == speakers.METHOD
    # the speaker method's mean is the repeats' pooled macro-F1, not the folds' mean
    assert t.loc["variant", "mean"] != pytest.approx(sel.finished.query("row == 'variant'")["metrics.test_f1_macro"].mean())
    assert document._fallback_lines(document.SuiteReport("e", "test_f1_macro", ci, "baseline", sel, t, [],
                                                         max_repeats=cap)) == []


def test_three_repeats_are_the_last_the_default_speaker_method_serves():
    sel, clips = cv_suite(repeats=3)
    ci, cap, t = default_table(sel, clips)
    assert ci == speakers.METHOD and list(t["ci_method"]) == [speakers.METHOD] * 2
    assert t.loc["variant", "delta_method"] == speakers.METHOD


def test_on_four_repeats_the_default_is_the_corrected_t_throughout():
    sel, clips = cv_suite(repeats=4)
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
    assert ci == speakers.METHOD and cap == 3
    # the variant's Δ rests on the 2 repeats both completed: the speaker method's
    assert t.loc["variant", "delta_method"] == speakers.METHOD and t.loc["variant", "ci_method"] == speakers.METHOD
    # the baseline's own mean rests on 4: the corrected t's, over its resamples
    assert t.loc["baseline", "ci_method"] == "corrected"
    assert t.loc["baseline", "mean"] == pytest.approx(
        sel.finished.query("row == 'baseline'")["metrics.test_f1_macro"].mean())
    rep = document.SuiteReport("e", "test_f1_macro", ci, "baseline", sel, t, [], max_repeats=cap)
    line, = document._fallback_lines(rep)
    assert line.startswith("- intervals of `baseline` (") and "more than 3 repeats" in line
    assert "corrected resampled t" in line and "`variant`" not in line
    assert document.ci_label(rep) == "speaker; corrected for 1 row"
    # the row's note in MLflow names its own method
    assert "mean over 16 resamples" in publish.row_note(t.loc["baseline"], "baseline", ci)
    assert "(corrected)" in publish.row_note(t.loc["baseline"], "baseline", ci)
    assert "pooled test macro-F1" in publish.row_note(t.loc["variant"], "baseline", ci)


def test_the_default_prices_repeats_past_its_cap_with_the_corrected_t_and_a_named_speaker_method_does_not():
    sel, clips = cv_suite(repeats=2)
    capped = table.compare(sel, "variant", "baseline", "test_f1_macro", speakers.METHOD, clips=clips, max_repeats=3)
    named = table.compare(sel, "variant", "baseline", "test_f1_macro", speakers.METHOD, clips=clips)
    corrected = table.compare(sel, "variant", "baseline", "test_f1_macro", "corrected", clips=clips)
    # the same interval today; past 3 repeats the default would state the corrected t's
    assert capped.paired.low == named.paired.low and capped.paired.high == named.paired.high
    assert capped.answer.ev.se_at(6) == pytest.approx(corrected.answer.ev.se_at(6))
    assert "4 more repeats" in capped.answer.sentence() and "(past 3 repeats the report states the corrected t)" in capped.answer.sentence()
    assert "the corrected t" not in named.answer.sentence()
