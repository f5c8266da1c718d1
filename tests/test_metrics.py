"""The scores of a run: macro averages over the classes that occur."""
from __future__ import annotations

import pytest

from harness.metrics import scores


def test_a_perfect_classifier_scores_1_on_a_test_fold_that_lacks_classes():
    # a speaker who acted only angry and sad, among four classes
    got = scores(["angry", "sad", "sad", "angry"], ["angry", "sad", "sad", "angry"])
    assert got == {"f1_macro": 1.0, "ua": 1.0, "wa": 1.0}


def test_a_false_alarm_of_an_absent_class_still_costs():
    got = scores(["angry", "sad", "sad", "angry"], ["angry", "sad", "sad", "calm"])
    assert got["ua"] == pytest.approx((0.5 + 1.0) / 2)  # angry's recall halves; calm has no true clip
    # F1 over angry, sad and the predicted calm: (2/3 + 1 + 0) / 3
    assert got["f1_macro"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    assert got["wa"] == 0.75


def test_where_every_class_occurs_these_are_the_plain_macro_averages():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    true = [0, 1, 2, 0, 1, 2, 2, 1]
    pred = [0, 2, 2, 0, 1, 1, 2, 1]
    got = scores(true, pred)
    assert got["f1_macro"] == pytest.approx(f1_score(true, pred, average="macro"))
    assert got["ua"] == pytest.approx(balanced_accuracy_score(true, pred))


def test_every_score_is_sklearns_on_random_labels_with_classes_missing():
    # numpy, not sklearn.metrics, in the training process (its import is 40% of a worker's start): held to
    # sklearn on draws where classes go missing from the truth, the predictions or both
    import numpy as np
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

    from harness.metrics import confusion, f1_per_class

    rng = np.random.default_rng(0)
    names = ["neutral", "happy", "sad", "angry", "fearful"]
    for _ in range(300):
        n = int(rng.integers(1, 30))
        true = [names[i] for i in rng.integers(0, int(rng.integers(1, 6)), n)]
        pred = [names[i] for i in rng.integers(0, int(rng.integers(1, 6)), n)]
        seen = sorted(set(true) | set(pred), key=str)
        got = scores(true, pred)
        assert got["f1_macro"] == pytest.approx(f1_score(true, pred, labels=seen, average="macro", zero_division=0))
        assert got["ua"] == pytest.approx(recall_score(true, pred, labels=sorted(set(true)), average="macro",
                                                       zero_division=0))
        assert got["wa"] == pytest.approx(accuracy_score(true, pred))
        m = confusion(true, pred, names)
        assert (m == confusion_matrix(true, pred, labels=names)).all()
        assert f1_per_class(m) == pytest.approx(f1_score(true, pred, labels=names, average=None, zero_division=0))
