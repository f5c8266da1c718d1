"""The report's answers where the MLflow UI shows them, refreshed by every suite run and every report.

- Each row's parent run: the mean and its 95% CI as metrics (`test_f1_macro_mean`,
  `test_f1_macro_ci95_low/high`, `n_seeds`, `n_resamples`), the decision as tag `harness.decision`
  (the UI can filter on it), and the answer as the run's note (`mlflow.note.content`, the runs
  table's Description column): "mean [CI], Δ delta [CI]" first, then the answer in the report's words.
- The experiment: `mlflow.experimentKind = custom_model_development`, so MLflow 3 opens it on its
  training runs rather than its GenAI overview, and the report's bottom line and main table as its
  description (the experiment's `mlflow.note.content`).
"""
from __future__ import annotations

import math

import pandas as pd

from harness import speakers, tracking
from harness.report.bottomline import bottom_line
from harness.report.document import SuiteReport, ci_label, main_table
from harness.report.verdict import Answer

NOTE_TAG = "mlflow.note.content"  # a run's or an experiment's description in the MLflow UI
DECISION_TAG = "harness.decision"  # better / worse / equivalent / undecided, or baseline


def mark_experiment(c, exp_id: str) -> None:
    """Open on the training runs in MLflow 3's UI (not the GenAI overview with "Traces 0")."""
    tracking.set_experiment_tags(c, exp_id, tracking.EXPERIMENT_KIND)


def row_note(t: pd.Series, baseline: str, ci: str, changes: str = "", profile: str = "") -> str:
    """A parent run's note (markdown, 2-4 lines) from the report's line for the row. The first line is the
    numbers alone, "mean [95% CI], Δ delta [95% CI]", in at most 50 characters: what the runs table's
    Description column shows; the next lines say what they are and the answer."""
    has_ci = math.isfinite(t["ci_low"])
    ci = t["ci_method"] if isinstance(t.get("ci_method"), str) and t["ci_method"] else ci  # the row's own
    head = f"{t['mean']:.3f}" + (f" [{t['ci_low']:.3f}, {t['ci_high']:.3f}]" if has_ci else "")
    n, seeds = int(t["n"]), int(t["n_seeds"])
    over = f"{n} resamples ({t['design']})" if n != seeds else f"{seeds} seed{'' if seeds == 1 else 's'}"
    mean = (f"pooled test macro-F1 of each repeat averaged over {over}" if ci == speakers.METHOD
            else f"test macro-F1: mean over {over}")
    what = [mean + (f" and its 95% CI ({ci})" if has_ci else ", no interval (fewer than 2 resamples)")]
    lines = []
    if t["baseline"]:
        head += ", baseline"
        what.append("this is the baseline row the others' Δ is measured against")
    elif not math.isfinite(t["delta"]):
        head += ", Δ n/a"
        what.append(f"no Δ against `{baseline}`: {t['delta_reason'] or 'no paired resample'}")
    else:
        dci = f" [{t['delta_low']:+.3f}, {t['delta_high']:+.3f}]" if math.isfinite(t["delta_low"]) else ""
        head += f", Δ {t['delta']:+.3f}{dci}"
        pairs = int(t["n_pairs"])
        dm = t.get("delta_method")
        what.append(f"Δ = this row − `{baseline}`, paired over {pairs} resample{'' if pairs == 1 else 's'} "
                    f"(same seed and fold){', and its 95% CI' if dci else ''}"
                    + (f" ({dm})" if dci and isinstance(dm, str) and dm and dm != ci else ""))
        if isinstance(t["answer"], Answer):
            lines.append(f"**{t['decision']}**: {t['answer'].short()}")
    out = [head, "; ".join(what) + ".", *lines]
    if changes:
        out.append(f"Profile `{profile or '?'}` changes the training ({changes}): not the suite file's setting.")
    return "  \n".join(out)


def experiment_note(rep: SuiteReport) -> str:
    """The experiment's description: the report's bottom line (its first sentence, the counts of decisions,
    is what the experiments list's Description column shows), the method, and the report's main table."""
    kinds = ", ".join(sorted(set(rep.sel.finished["data"]))) or "no finished run"
    return "\n".join([
        bottom_line(rep.table, rep.baseline, rep.metric, rep.rope), "",
        f"Every row vs `{rep.baseline}` on `{rep.metric}`; intervals `{ci_label(rep)}`, decisions at P ≥ 0.95 with a ROPE "
        f"of ±{rep.rope:g} (data: {kinds}). Refreshed by every `suite run` and `report`; the whole report: "
        f"`python -m harness report --experiment {rep.experiment}`.", "",
        *main_table(rep.table, rep.metric, claims=False)])


def publish(c, exp_id: str, rep: SuiteReport) -> None:
    """Write the report's numbers and words on the row parents and the experiment."""
    mark_experiment(c, exp_id)
    for row in rep.sel.rows.itertuples():
        if row.row not in rep.table.index:
            continue
        t = rep.table.loc[row.row]
        if not t["n"]:
            continue
        metrics = {"n_seeds": int(t["n_seeds"]), "n_resamples": int(t["n"]), "test_f1_macro_mean": float(t["mean"])}
        if math.isfinite(t["ci_low"]):
            metrics.update(test_f1_macro_ci95_low=float(t["ci_low"]), test_f1_macro_ci95_high=float(t["ci_high"]))
        if rep.metric == "test_f1_macro":
            tracking.log_metrics(c, row.run_id, metrics)
        tags = {NOTE_TAG: row_note(t, rep.baseline, rep.ci, row.profile_changes, row.profile),
                DECISION_TAG: "baseline" if t["baseline"] else (t["decision"] or "n/a")}
        tracking.set_tags(c, row.run_id, tags)
    tracking.set_experiment_tags(c, exp_id, {NOTE_TAG: experiment_note(rep)})
