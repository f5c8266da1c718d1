"""Speaker-grouped cross-validation: one repeat (a seed) = K fold runs, and its pooled test score.

`harness train --cv_folds K` runs a repeat: a parent run (`harness.kind=repeat`)
with the K fold runs nested under it. Each fold run is an ordinary training run
(selection on its own validation actors, its test fold scored once) that logs
`test_predictions.csv`; every clip of the corpus is in exactly one test fold, so
the repeat's `test_f1_macro` is the macro-F1 of the pooled predictions, and
`test_f1_macro_fold_mean` the mean of the folds' scores.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from harness import tracking
from harness.config import RunConfig
from harness.figures import confusion_png
from harness.metrics import confusion, scores


def pooled_scores(predictions: pd.DataFrame) -> dict[str, float]:
    """Macro-F1, accuracy (WA) and UA (mean per-class recall) of pooled predictions (columns `true`, `pred`:
    class names), averaged over the classes that occur (`harness.metrics`)."""
    got = scores(predictions["true"].astype(str).tolist(), predictions["pred"].astype(str).tolist())
    return {"test_f1_macro": got["f1_macro"], "test_accuracy": got["wa"], "test_wa": got["wa"], "test_ua": got["ua"]}


def read_predictions(path: Path) -> pd.DataFrame:
    # Clip paths and class names stay strings, whatever they look like.
    return pd.read_csv(path, dtype={"clip": str, "true": str, "pred": str})


def run_repeat(cfg: RunConfig, experiment: str, tracking_uri: str | None = None, out_dir: Path = Path("artifacts"),
               parent_run_id: str | None = None, extra_tags: dict | None = None, on_fold=None,
               on_epoch=None) -> dict:
    """Every fold of `cfg.cv_folds` for `cfg.seed`, nested under one repeat run; returns its metrics."""
    from harness.train import run as training

    assert cfg.cv_folds >= 2 and cfg.fold is None
    c = tracking.client(tracking_uri)
    exp_id = tracking.get_or_create_experiment(c, experiment)
    tags = {"harness.kind": "repeat", "harness.seed": str(cfg.seed), "harness.config_hash": cfg.config_hash,
            "harness.cv_folds": str(cfg.cv_folds), **(extra_tags or {})}
    t0 = time.time()
    name = f"{cfg.model}-seed{cfg.seed}-cv{cfg.cv_folds}"
    with tracking.tracked_run(c, exp_id, name, tags, parent_run_id) as run_id:
        tracking.log_params(c, run_id, cfg.to_params())
        folds, frames = [], []
        data = None
        for fold in range(cfg.cv_folds):
            fcfg = cfg.replace(fold=fold)
            data = training.prepare(fcfg, reuse=data)  # the corpus and its features once; each fold its split
            if on_fold is not None:
                on_fold(fold, data)
            # One confusion figure for the repeat's pooled predictions (below), not one per fold: a figure
            # cost a cached logreg fold more than its fit. The folds keep theirs as numbers (harness.test_confusion).
            res = training.run(fcfg, experiment=experiment, tracking_uri=tracking_uri, out_dir=Path(out_dir) / f"fold{fold}",
                               run_name=f"{name}/fold{fold}", parent_run_id=run_id, data=data,
                               extra_tags={"harness.kind": "fold"}, on_epoch=on_epoch, confusion_figure=False)
            folds.append(res)
            frames.append(read_predictions(Path(out_dir) / f"fold{fold}" / training.PREDICTIONS))
        pooled = pd.concat(frames, ignore_index=True)
        path = Path(out_dir) / training.PREDICTIONS
        pooled.to_csv(path, index=False)
        c.log_artifact(run_id, str(path))
        classes = list(data.classes)
        got = pooled_scores(pooled)
        png = confusion_png(confusion(pooled["true"].tolist(), pooled["pred"].tolist(), classes).tolist(), classes,
                            Path(out_dir) / "confusion_matrix.png",
                            f"pooled test, {cfg.model}, seed {cfg.seed}: macro-F1 {got['test_f1_macro']:.3f}")
        c.log_artifact(run_id, str(png))
        metrics = {**pooled_scores(pooled),
                   "test_f1_macro_fold_mean": float(np.mean([r["test_f1_macro"] for r in folds])),
                   "n_folds": cfg.cv_folds, "n_test_clips": len(pooled), "wall_time_s": time.time() - t0}
        tracking.log_metrics(c, run_id, metrics)
    return {"run_id": run_id, **metrics, "folds": folds}
