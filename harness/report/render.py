"""`harness report`: the ablation table with confidence intervals, rebuilt from MLflow.

It reads only the tracking store (never local training files) and changes no
run; the report and its plots are logged to a new run of kind "report".

The work is spread over small modules, so each can be tested on its own:
`runs` reads MLflow and selects the cells that count, `stats` computes (pure
functions), `table` turns the cells into the report's numbers and words,
`plots` draws, `study_report` adds a study section. This module renders the
markdown and runs the command.
"""
from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from harness import services, speakers, tracking
from harness.errors import HarnessError
from harness.figures import confusion_png
from harness.report.calibrated import SPEAKER_DEFAULT_MAX_REPEATS, SPEAKER_METRIC, speaker_ready
from harness.report.evaluations import read_evaluations
from harness.report.document import SuiteReport, ci_label, header_facts, render_markdown
from harness.report.plots import plot_delta, plot_forest, plot_val_curves
from harness.report.publish import publish
from harness.report.repeat_cap import default_table
from harness.report.runs import (
    available_metrics,
    column,
    find_experiment,
    has_repeats,
    read_clips,
    read_histories,
    read_pooled,
    row_classes,
    read_suite,
    search_frame,
    seed_values,
    select_cells,
)
from harness.report.study import read_study, render_study
from harness.report.table import CLAIM_METRIC, build_table, check_seed_claims, default_baseline
from harness.stats import CI_METHODS, DECISION_PROB, ROPE, higher_is_better
from harness.train.run import PREDICTIONS

DEFAULT_METRIC = "test_f1_macro"


def summed_confusion(cells: pd.DataFrame) -> np.ndarray | None:
    """The test confusion matrices of these cells summed; None when absent or of different shapes."""
    mats = [np.array(ast.literal_eval(s)) for s in cells["confusion"] if s]
    if not mats or len({m.shape for m in mats}) > 1:
        return None
    return np.sum(mats, axis=0)


def best_row(table: pd.DataFrame, metric: str) -> str | None:
    means = table["mean"].dropna()
    if means.empty:
        return None
    return str(means.idxmax() if higher_is_better(metric) else means.idxmin())


# --- putting it together ----------------------------------------------------------------

class NoSuiteRuns(HarnessError):
    """The experiment holds no row runs."""


def suite_report(c, exp, metric: str = DEFAULT_METRIC, baseline: str | None = None, ci: str | None = None,
                 rope: float = ROPE, threshold: float = DECISION_PROB) -> SuiteReport:
    """The report's numbers on an experiment. `ci` None: the default (`calibrated.default_ci`): the speaker
    method where it is calibrated for the suite's design (a CV comparison on up to
    `calibrated.SPEAKER_DEFAULT_MAX_REPEATS` repeats, or cross-corpus), else the corrected resampled t."""
    rows, cells = read_suite(c, exp.experiment_id)
    if rows.empty:
        raise NoSuiteRuns(f"no suite runs in experiment {exp.name!r}: run `python -m harness suite run ...` first")
    sel = select_cells(rows, cells)
    available = available_metrics(sel.finished)
    if len(sel.finished) and metric not in available:
        raise HarnessError(f"metric {metric!r} not found in any finished cell of {exp.name!r}; "
                           f"available: {', '.join(available)}")
    names = list(sel.rows["row"])
    if baseline is None:
        baseline = default_baseline(names)
    elif baseline not in names:
        raise HarnessError(f"unknown --baseline {baseline!r}; rows: {', '.join(names)}")
    clips = read_clips(c, sel.finished) if has_repeats(sel.finished) else None
    max_repeats = None
    if ci is None:  # with the speaker method's Δ beside those its repeat cap handed to the corrected t
        ci, max_repeats, t = default_table(sel, clips, metric, baseline, rope, threshold)
    elif ci == speakers.METHOD and not speaker_ready(sel, clips, metric):
        raise HarnessError(f"--ci speaker needs a cross-validated or cross-corpus suite (every row with runs has "
                           f"a complete repeat whose runs logged {PREDICTIONS}; a cross-corpus row two seeds) and "
                           f"--metric {SPEAKER_METRIC}; "
                           f"experiment {exp.name!r} is not one: use --ci corrected")
    else:
        t = build_table(sel, metric, baseline, ci, rope, threshold, clips)
    return SuiteReport(experiment=exp.name, metric=metric, ci=ci, baseline=baseline, sel=sel, table=t,
                       checks=check_seed_claims(sel, metric, ci=ci, rope=rope, clips=clips, max_repeats=max_repeats),
                       rope=rope, clips=clips, max_repeats=max_repeats)


def write_plots(c, rep: SuiteReport, out: Path) -> dict[str, str]:
    """The PNGs beside the markdown; returns {title: relative file name}."""
    stem = out.with_suffix("")
    plots = {}
    points = {row: seed_values(rep.sel.finished, row, rep.metric).to_numpy() for row in rep.table.index}
    forest = plot_forest(rep.table, points, Path(f"{stem}-forest.png"), metric=rep.metric, baseline=rep.baseline,
                         ci_label=ci_label(rep), experiment=rep.experiment,
                         show_claims=rep.metric == CLAIM_METRIC and not rep.table["comparable"].astype(bool).any())
    plots[f"{rep.metric}: mean and 95% CI per row"] = forest.name
    if (~rep.table["baseline"].astype(bool)).any():
        delta = plot_delta(rep.table, Path(f"{stem}-delta.png"), metric=rep.metric, baseline=rep.baseline,
                           rope=rep.rope, ci_label=ci_label(rep), experiment=rep.experiment)
        plots[f"{rep.metric}: paired Δ vs {rep.baseline}, ROPE and decision per row"] = delta.name
    history = read_histories(c, rep.sel.finished)
    if len(history):
        curves = plot_val_curves(history, list(rep.table.index), Path(f"{stem}-val-f1.png"),
                                 f"{rep.experiment}: validation macro-F1 per epoch "
                                 f"(mean over runs, band = min–max)")
        plots["validation macro-F1 per epoch"] = curves.name
    # One test confusion per row, summed over its runs' tags: a cell logs the numbers, never the figure.
    best = best_row(rep.table, rep.metric)
    names: set[str] = set()
    for row in rep.table.index:
        cells = rep.sel.finished[rep.sel.finished["row"] == row]
        cm = summed_confusion(cells)
        classes = row_classes(rep.sel.finished, row) if cm is not None else ()
        if cm is None or len(classes) != cm.shape[0]:
            continue
        name = f"{stem.name}-confusion-{_slug(row)}"
        name = name if name not in names else f"{name}-{len(names) + 1}"  # two rows with one slug
        names.add(name)
        mark = [f"(best mean {rep.metric})"] if row == best else []
        # short lines: the figure is sized for the class count, not the title
        png = confusion_png(cm.tolist(), classes, stem.parent / f"{name}.png",
                            "\n".join([row, *mark, f"test confusion, sum of {len(cells)} runs"]))
        plots[f"test confusion matrix of `{row}`{' (best mean)' if row == best else ''}"] = png.name
    return plots


def log_report(c, experiment_id: str, files: Sequence[Path], tags: dict[str, str]) -> str:
    """A new run of kind "report" holding the markdown and the plots; the suite runs are untouched."""
    with tracking.tracked_run(c, experiment_id, "report", {"harness.kind": "report", **tags}) as run_id:
        for f in files:
            c.log_artifact(run_id, str(f))
    return run_id


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "report"


def cmd_report(args: argparse.Namespace) -> int:
    if not args.experiment and not args.study:
        raise HarnessError("give --experiment NAME (a suite's experiment) and/or --study NAME")
    if args.rope < 0:
        raise HarnessError(f"invalid --rope {args.rope}: expected a width >= 0 (in units of the metric)")
    c = services.existing_client(args.tracking_uri)  # a mistyped store is an error, never a new empty one
    out = Path(args.out) if args.out else Path("reports") / f"{_slug(args.experiment or args.study)}.md"
    exp = find_experiment(c, args.experiment) if args.experiment else None

    rep = None
    if exp is not None:
        try:
            rep = suite_report(c, exp, args.metric, args.baseline, args.ci, args.rope)
            rep.evaluations = read_evaluations(c, exp.experiment_id)
        except NoSuiteRuns as e:
            if not args.study:  # without rows, an experiment given beside --study is where the study lives
                studies = search_frame(c, [exp.experiment_id], "study")
                if len(studies):
                    names = ", ".join(sorted(set(column(studies, "tags.harness.study"))))
                    raise HarnessError(f"{e}; it holds studies ({names}): use --study NAME") from None
                raise
    study = None
    if args.study:
        # Studies log to an experiment named after the study unless told otherwise.
        named = c.get_experiment_by_name(args.study)
        where = [e for e in (named, exp) if e is not None and e.lifecycle_stage != "deleted"]
        if not where:
            find_experiment(c, args.study)  # raises, listing the experiments
        study = read_study(c, args.study, where)

    out.parent.mkdir(parents=True, exist_ok=True)
    if rep:
        publish(c, exp.experiment_id, rep)  # the parents' notes and the experiment's description: this report's words
    plots = write_plots(c, rep, out) if rep else {}
    text = render_markdown(rep, plots, read_pooled(rep.clips, rep.sel.finished) if rep.clips is not None else None) if rep else f"# Study report: {args.study}\n"
    if study:
        text += "\n" + render_study(study)
    out.write_text(text)

    log_exp = exp.experiment_id if rep else study.experiment_id
    tags = {"harness.report.metric": args.metric, "harness.report.ci": rep.ci if rep else (args.ci or ""), "harness.report.rope": str(args.rope),
            "harness.report.baseline": rep.baseline if rep else "", "harness.report.study": args.study or ""}
    run_id = log_report(c, log_exp, [out, *(out.parent / p for p in plots.values())], tags)
    if rep:
        for w in header_facts(rep.sel)[1]:
            print(w.replace("**", ""))
    print(f"wrote {out} ({len(plots)} plot(s)); logged as run {run_id} (kind report)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="the ablation table with CIs, paired Δ and plots, from MLflow")
    p.add_argument("--experiment", metavar="NAME", help="the suite's MLflow experiment")
    p.add_argument("--study", metavar="NAME", help="add a section for this Optuna study (looked up in the "
                                                   "experiment named after it, else in --experiment)")
    p.add_argument("--baseline", metavar="ROW", help="row to compare with (default: the first row named "
                                                     "baseline*, else the first row)")
    p.add_argument("--metric", default=DEFAULT_METRIC, help=f"cell metric to tabulate (default: {DEFAULT_METRIC})")
    p.add_argument("--ci", choices=(speakers.METHOD, *CI_METHODS), default=None,
                   help="intervals, Δ and p (default: speaker where it is calibrated, else corrected): "
                        "speaker (the speaker as the unit, variance split into speakers and training runs; the "
                        "default for cross-corpus suites and for cross-validated comparisons on up to "
                        f"{SPEAKER_DEFAULT_MAX_REPEATS} repeats: it covered 0.941 of new 24- and 0.942 of 10-speaker "
                        "populations at 2 repeats, 0.927 and 0.933 at 3, see docs/statistics.md), corrected (the corrected resampled t of Nadeau & "
                        "Bengio, for resamples whose training sets overlap: safe, about twice too wide), t (plain "
                        "Student t), or bootstrap (BCa, fixed seed)")
    p.add_argument("--rope", type=float, default=ROPE,
                   help=f"region of practical equivalence for the decisions, in metric units (default: {ROPE})")
    p.add_argument("--out", type=Path, metavar="FILE", help="markdown file (default: reports/<experiment>.md); "
                                                           "plots are written beside it")
    p.add_argument("--tracking_uri", metavar="URI",
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    p.set_defaults(func=cmd_report)