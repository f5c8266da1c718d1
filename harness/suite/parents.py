"""A row's parent run: created once per config, and summarised for the MLflow UI.

The parent of a suite row (`harness.kind=row`) carries, once its cells have run,
the row's mean test macro-F1 and the report's default 95% interval (corrected for
overlapping training sets) as metrics, and the answer in words as the run's note
(`mlflow.note.content`): mean, CI, n and the paired Δ vs the baseline row.
"""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from harness import tracking
from harness.stats import mean_ci, paired_delta, run_ratio
from harness.suite.file import RowSpec, Suite
from harness.suite.planning import finished_cells, search_runs


def row_ci(cells: Sequence) -> tuple[float, float]:
    """Mean test macro-F1 of a row's finished cell runs and the 95% half-width of the report's
    default interval (corrected for overlapping training sets); nan half-width for fewer than 2."""
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


def close_parents(c, exp_id: str, parents: dict[str, str], fingerprint: str, suite: Suite | None = None) -> None:
    """Summarise each row on its parent run for the MLflow UI: mean, 95% CI and n as metrics, and the
    answer in words as the run's note (`mlflow.note.content`): mean, CI, n and Δ vs the baseline row.

    The baseline is the report's default: the first row (of `suite`, else of `parents`) whose name
    starts with "baseline", else the first row."""
    from harness.report.table import default_baseline

    order = [r.name for r in suite.rows] if suite is not None else list(parents)
    baseline = default_baseline(order) if order else None
    # Only the rows summarised here (and the baseline), at their current config: one query per row.
    rows = None if suite is None else [r for r in suite.rows if r.name in parents or r.name == baseline]
    done = finished_cells(c, exp_id, fingerprint, rows)
    cells = {}
    for row, run_id in parents.items():
        cells[row] = [r for (name, _, _, _), r in done.items()
                      if name == row and r.data.tags.get("mlflow.parentRunId") == run_id
                      and "test_f1_macro" in r.data.metrics]
    if baseline is not None and baseline not in cells and suite is not None:  # a run of other rows only
        h = suite.row(baseline).config.config_hash
        cells[baseline] = [r for (name, _, _, hh), r in done.items()
                           if name == baseline and hh == h and "test_f1_macro" in r.data.metrics]
    for row, run_id in parents.items():
        mine = cells[row]
        if not mine:
            continue
        mean, half = row_ci(mine)
        metrics = {"n_seeds": len({r.data.tags["harness.seed"] for r in mine}), "n_resamples": len(mine),
                   "test_f1_macro_mean": mean}
        if not math.isnan(half):  # the metric's range bounds the interval
            metrics.update(test_f1_macro_ci95_low=max(0.0, mean - half), test_f1_macro_ci95_high=min(1.0, mean + half))
        tracking.log_metrics(c, run_id, metrics)
        parent = c.get_run(run_id)
        tags = parent.data.tags
        tracking.set_tags(c, run_id, {NOTE_TAG: row_note(row, mine, baseline, cells.get(baseline, []),
                                                          tags.get("harness.profile_changes", ""),
                                                          tags.get("harness.profile", ""))})
        if parent.info.status == "RUNNING":
            c.set_terminated(run_id, status="FINISHED")


NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI


def _resample(run) -> tuple[int, int | None]:
    """(seed, fold) of a cell run: what pairs it with the same resample of another row."""
    fold = run.data.tags.get("harness.fold", "")
    return int(run.data.tags["harness.seed"]), (int(fold) if fold != "" else None)


def _scores(cells: Sequence) -> pd.Series:
    return pd.Series({_key(r): r.data.metrics["test_f1_macro"] for r in cells}, dtype=float)


def _key(run) -> str:
    seed, fold = _resample(run)
    return f"{seed}" if fold is None else f"{seed}/{fold}"


def paired_difference(cells: Sequence, reference: Sequence) -> tuple[float, float, float, int]:
    """Δ = row − reference in test macro-F1 over the resamples both finished, matched on (seed, fold):
    (mean Δ, 95% low, 95% high, pairs), with the corrected interval of `row_ci` (nan below 2 pairs)."""
    mine, ref = _scores(cells), _scores(reference)
    keys = mine.index.intersection(ref.index)
    if not len(keys):
        return math.nan, math.nan, math.nan, 0
    paired = set(keys)
    both = [r for r in [*cells, *reference] if _key(r) in paired]
    p = paired_delta(mine, ref, method="corrected", test_train_ratio=sum(map(cell_ratio, both)) / len(both),
                     bounds=(0.0, 1.0))  # the report's statistics; it leaves Δ n/a below 2 pairs, the note does not
    return float((mine[keys] - ref[keys]).mean()), p.low, p.high, len(keys)


def row_note(row: str, cells: Sequence, baseline: str | None, baseline_cells: Sequence, changes: str = "",
             profile: str = "") -> str:
    """The parent run's note (markdown, 2-3 lines): the row's answer at a glance. The first line is the
    numbers alone, "mean [95% CI], Δ delta [95% CI]", in at most 50 characters: what the runs table's
    Description column shows; the next line says what they are."""
    mean, half = row_ci(cells)
    seeds = len({r.data.tags["harness.seed"] for r in cells})
    folds = len({_resample(r)[1] for r in cells})
    n = f"{len(cells)} resamples ({seeds} seed{'' if seeds == 1 else 's'} × {folds} folds)" \
        if len(cells) != seeds else f"{seeds} seed{'' if seeds == 1 else 's'}"
    ci = f" [{max(0.0, mean - half):.3f}, {min(1.0, mean + half):.3f}]" if not math.isnan(half) else ""
    head = f"{mean:.3f}{ci}"
    what = [f"test macro-F1: mean over {n}" + (" and its 95% CI (corrected resampled t)" if ci else
                                                ", no interval (fewer than 2 resamples)")]
    if baseline is None:
        pass
    elif row == baseline:
        head += ", baseline"
        what.append("this is the baseline row the others' Δ is measured against")
    else:
        delta, low, high, pairs = paired_difference(cells, baseline_cells)
        if pairs == 0:
            head += ", Δ n/a"
            what.append(f"no resample finished in both this row and `{baseline}`, so no Δ")
        else:
            dci = f" [{low:+.3f}, {high:+.3f}]" if not math.isnan(low) else ""
            head += f", Δ {delta:+.3f}{dci}"
            what.append(f"Δ = this row − `{baseline}`, paired over {pairs} resample{'' if pairs == 1 else 's'} "
                        f"(same seed and fold){', and its 95% CI' if dci else ''}")
    lines = [head, "; ".join(what) + "."]
    if changes:
        lines.append(f"Profile `{profile or '?'}` changes the training ({changes}): not the suite file's setting.")
    return "  \n".join(lines)
