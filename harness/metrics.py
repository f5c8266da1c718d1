"""The scores a run reports, as pure functions of true and predicted labels (any hashable labels).

Macro averages run over the classes that occur: macro-F1 over those in the truth or the predictions,
UA (unweighted accuracy: the mean per-class recall) over those in the truth. A test fold without a
class (leave-one-speaker-out on a speaker who never acts it) then neither caps a perfect classifier
below 1 nor hides a false alarm of that class: predicting it still costs the true classes' recall.
Where every class occurs, as in a pooled repeat, these are scikit-learn's plain macro averages.

Computed from one confusion matrix with numpy rather than with sklearn.metrics: importing it costs a
training process about 2 s (40% of its start, measured on this project's 2-core VM) and every suite
worker pays it. tests/test_metrics.py holds each function to sklearn's on random labels.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion(true: Sequence, pred: Sequence, labels: Sequence) -> np.ndarray:
    """Counts, rows true and columns predicted, in the order of `labels` (sklearn's confusion_matrix);
    a label outside `labels` is not counted."""
    index = {c: i for i, c in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    pairs = [(index[t], index[p]) for t, p in zip(true, pred) if t in index and p in index]
    if pairs:
        rows, cols = np.array(pairs).T
        np.add.at(m, (rows, cols), 1)
    return m


def f1_per_class(m: np.ndarray) -> np.ndarray:
    """F1 of each class of a confusion matrix; 0 for a class with no true and no predicted clip
    (sklearn's zero_division=0)."""
    tp = np.diag(m).astype(float)
    denom = m.sum(axis=0) + m.sum(axis=1)  # 2tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def scores_of(m: np.ndarray) -> dict[str, float]:
    """{"f1_macro", "ua", "wa"} of a confusion matrix, macro averages over the classes that occur (F1: in the
    truth or the predictions; UA: in the truth)."""
    support, predicted = m.sum(axis=1), m.sum(axis=0)
    occurs, seen = support > 0, (support + predicted) > 0
    total = m.sum()
    return {"f1_macro": float(f1_per_class(m)[seen].mean()) if seen.any() else 0.0,
            "ua": float((np.diag(m)[occurs] / support[occurs]).mean()) if occurs.any() else 0.0,
            "wa": float(np.trace(m) / total) if total else 0.0}


def scores(true: Sequence, pred: Sequence) -> dict[str, float]:
    """{"f1_macro", "ua", "wa"} of one set of predictions (wa: accuracy)."""
    true, pred = list(true), list(pred)
    return scores_of(confusion(true, pred, sorted(set(true) | set(pred), key=str)))
