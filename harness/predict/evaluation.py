"""Scoring trained models on a labelled corpus they never saw, and recording it as an MLflow run.

The run (tag `harness.kind` = `evaluation`) goes into the source's experiment, linked to the runs whose
models predicted (`harness.source_runs`, and for a row `harness.source_row` and its parent run). It holds
what a cell's test scoring holds: test_f1_macro, test_ua, test_wa, per-class F1, the confusion as the tag
`harness.test_confusion` and as a figure, and the per-clip predictions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from harness import metrics, tracking

KIND = "evaluation"
PREDICTIONS = "eval_predictions.csv"


def scores(truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> dict:
    """test_f1_macro, test_ua, test_wa (accuracy), per-class F1 and the confusion (rows true, columns
    predicted, in the model's class order), as a cell's test scoring reports them."""
    m = metrics.confusion(list(truth), list(predicted), list(classes))
    got = metrics.scores_of(m)
    out = {"test_f1_macro": got["f1_macro"], "test_ua": got["ua"], "test_wa": got["wa"],
           "test_accuracy": got["wa"], "n_test_clips": int(m.sum())}
    out.update({f"test_f1_{c}": float(v) for c, v in zip(classes, metrics.f1_per_class(m))})
    return {"metrics": out, "confusion": m.tolist()}


def log_run(c, source, inputs, table, result: dict, classes: Sequence[str], workdir: Path,
            run_name: str | None = None) -> str:
    """One FINISHED run of kind evaluation in the source's experiment; returns its id."""
    from harness.figures import confusion_png

    corpus = inputs.corpus
    tags = {"harness.kind": KIND, "harness.source_runs": ",".join(source.run_ids),
            "harness.source_design": source.design, "harness.source_experiment": source.experiment,
            **({"harness.source_row": source.row, "harness.source_row_run": source.parent_run_id}
               if source.row else {}),
            "harness.eval_corpus": corpus.describe() or corpus.name, "harness.data_root": str(corpus.root),
            "harness.data_fingerprint": corpus.fingerprint, "harness.classes": ",".join(classes),
            "harness.label_mapping": ", ".join(f"{k}->{v}" for k, v in sorted(inputs.labels.items())),
            **({"harness.labels_dropped": inputs.dropped} if inputs.dropped else {}),
            **({"harness.clips_unreadable": str(len(inputs.skipped))} if inputs.skipped else {}),
            "harness.test_confusion": str(result["confusion"])}
    name = run_name or f"eval-{source.row or source.run_ids[0][:8]}-on-{corpus.name}"
    with tracking.tracked_run(c, source.experiment_id, name, tags) as run_id:
        tracking.log_metrics(c, run_id, {**result["metrics"], "n_models": len(source.run_ids)})
        csv_path = workdir / PREDICTIONS
        table.to_csv(csv_path, index=False, float_format="%.6f")
        c.log_artifact(run_id, str(csv_path))
        m = result["metrics"]
        png = confusion_png(result["confusion"], tuple(classes), workdir / "confusion_matrix.png",
                            f"{source.row or source.run_ids[0][:8]} on {corpus.name}: macro-F1 {m['test_f1_macro']:.3f}")
        c.log_artifact(run_id, str(png))
    return run_id

