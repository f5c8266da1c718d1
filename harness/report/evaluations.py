"""Evaluations of a suite's rows on other corpora (`harness predict --data_root`, runs of kind evaluation):
read from MLflow, and as a markdown section the report can place beside its rows.

Each is one scoring of a row's (or a run's) models on every usable clip of a corpus it never trained
on: no resampling, so no interval; the numbers say how the models carry over, not which row is better.
"""
from __future__ import annotations

import math

import pandas as pd

from harness.report.runs import column, search_frame

COLUMNS = ["run_id", "row", "source", "corpus", "n_clips", "f1_macro", "ua", "wa", "dropped", "start_time"]


def read_evaluations(c, experiment_id: str) -> pd.DataFrame:
    """The experiment's FINISHED evaluation runs, newest first: the row (or run) scored, the corpus, scores."""
    runs = search_frame(c, [experiment_id], "evaluation")
    if runs.empty:
        return pd.DataFrame(columns=COLUMNS)
    runs = runs[runs["status"] == "FINISHED"]
    out = pd.DataFrame({
        "run_id": runs["run_id"], "row": column(runs, "tags.harness.source_row"),
        "source": column(runs, "tags.harness.source_design"), "corpus": column(runs, "tags.harness.eval_corpus"),
        "n_clips": pd.to_numeric(column(runs, "metrics.n_test_clips", math.nan), errors="coerce"),
        "f1_macro": pd.to_numeric(column(runs, "metrics.test_f1_macro", math.nan), errors="coerce"),
        "ua": pd.to_numeric(column(runs, "metrics.test_ua", math.nan), errors="coerce"),
        "wa": pd.to_numeric(column(runs, "metrics.test_wa", math.nan), errors="coerce"),
        "dropped": column(runs, "tags.harness.labels_dropped"), "start_time": runs["start_time"]})
    return out.sort_values("start_time", ascending=False).reset_index(drop=True)[COLUMNS]


def evaluation_section(evals: pd.DataFrame) -> list[str]:
    """Markdown lines: one table line per evaluation ([] when there is none)."""
    if evals.empty:
        return []
    lines = ["## On other corpora, without retraining", "",
             "Each line scores a row's models (probabilities averaged over its runs) on every clip of another "
             "corpus whose label maps onto the model's (`harness predict --data_root`): one scoring, no interval.",
             "", "| row | corpus | clips | macro-F1 | UA | WA | left out | run |", "|---|---|---:|---:|---:|---:|---|---|"]
    for e in evals.itertuples():
        n = "" if math.isnan(e.n_clips) else f"{int(e.n_clips)}"
        lines.append(f"| {e.row or '(one run)'} | {e.corpus} | {n} | {e.f1_macro:.3f} | {e.ua:.3f} | {e.wa:.3f} | "
                     f"{e.dropped or 'none'} | `{e.run_id[:8]}` |")
    return lines
