"""A row's parent run: created once per config, and summarised for the MLflow UI.

The parent of a suite row (`harness.kind=row`) carries, once its cells have run,
the report's numbers and words for the row (`harness.report.publish`): mean and
95% CI as metrics, the decision as a tag, the answer as the run's note.
"""
from __future__ import annotations

import math
from typing import Sequence

from harness import tracking
from harness.stats import mean_ci, run_ratio
from harness.suite.file import RowSpec, Suite
from harness.suite.planning import search_runs


def row_ci(cells: Sequence) -> tuple[float, float]:
    """Mean test macro-F1 of a row's finished cell runs and the 95% half-width of the corrected
    resampled t (`--target-ci`'s stopping rule); nan half-width for fewer than 2."""
    values = [r.data.metrics["test_f1_macro"] for r in cells]
    mean = sum(values) / len(values) if values else math.nan
    if len(values) < 2:
        return mean, math.nan
    ratio = sum(cell_ratio(r) for r in cells) / len(cells)
    low, high, _ = mean_ci(values, "corrected", test_train_ratio=ratio)
    return mean, (high - low) / 2


def cell_ratio(run) -> float:
    """n_test / n_train of a cell run: its clip counts, or (older runs) the ratios of its config."""
    m, p = run.data.metrics, run.data.params
    return run_ratio(m.get("n_test_clips"), m.get("n_train_clips"), p.get("train_ratio"), p.get("val_ratio"),
                     p.get("cv_folds"))


def row_parent(c, exp_id: str, suite: Suite, row: RowSpec, extra: dict[str, str]) -> str:
    """The row's parent run for this config hash: found, or created once."""
    h = row.config.config_hash
    flt = f"tags.`harness.kind` = 'row' and tags.`harness.row` = '{row.name}' and tags.`harness.config_hash` = '{h}'"
    existing = search_runs(c, exp_id, flt)
    if existing:
        return min(existing, key=lambda r: r.info.start_time).info.run_id
    tags = {**tracking.environment_tags(), "harness.kind": "row", "harness.row": row.name,
            "harness.row_index": str([r.name for r in suite.rows].index(row.name)),
            "harness.config_hash": h, "harness.claimed_f1": row.claimed_f1, "harness.note": row.note,
            "harness.suite": suite.name, "harness.suite_file": str(suite.path), "harness.profile": suite.profile,
            "harness.profile_changes": row.profile_changes,
            **extra}
    run = c.create_run(exp_id, run_name=row.name, tags=tags)
    params = {k: v for k, v in row.config.to_params().items() if k not in ("seed", "data_root")}
    tracking.log_params(c, run.info.run_id, params)
    # Two processes may create it at once: keep the oldest, drop ours if it lost.
    existing = search_runs(c, exp_id, flt)
    winner = min(existing, key=lambda r: r.info.start_time).info.run_id
    if winner != run.info.run_id:
        c.delete_run(run.info.run_id)
    return winner


def close_parents(c, exp_id: str, parents: dict[str, str]) -> None:
    """Summarise the experiment in the MLflow UI with the report's default numbers and words (each row's
    parent: mean, CI, note, `harness.decision`; the experiment: its description and kind), then mark the
    parents finished."""
    from harness.report.publish import publish
    from harness.report.render import NoSuiteRuns, suite_report

    exp = c.get_experiment(exp_id)
    try:
        publish(c, exp_id, suite_report(c, exp))
    except NoSuiteRuns:
        pass
    for run_id in parents.values():
        if c.get_run(run_id).info.status == "RUNNING":
            c.set_terminated(run_id, status="FINISHED")
