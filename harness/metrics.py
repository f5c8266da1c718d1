"""The scores a run reports, as pure functions of true and predicted labels (any hashable labels).

Macro averages run over the classes that occur: macro-F1 over those in the truth or the predictions,
UA (unweighted accuracy: the mean per-class recall) over those in the truth. A test fold without a
class (leave-one-speaker-out on a speaker who never acts it) then neither caps a perfect classifier
below 1 nor hides a false alarm of that class: predicting it still costs the true classes' recall.
Where every class occurs, as in a pooled repeat, these are scikit-learn's plain macro averages.
"""
from __future__ import annotations

from typing import Sequence


def scores(true: Sequence, pred: Sequence) -> dict[str, float]:
    """{"f1_macro", "ua", "wa"} of one set of predictions (wa: accuracy)."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    seen = sorted(set(true) | set(pred), key=str)
    truth = sorted(set(true), key=str)
    return {"f1_macro": float(f1_score(true, pred, labels=seen, average="macro", zero_division=0)),
            "ua": float(recall_score(true, pred, labels=truth, average="macro", zero_division=0)),
            "wa": float(accuracy_score(true, pred))}
