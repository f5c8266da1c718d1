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
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import tracking
from .errors import HarnessError
from .markdown import fmt_ci, fmt_delta, fmt_p, md_table, na, num
from .plots import confusion_png, plot_forest, plot_val_curves
from .runs import (Selection, column, available_metrics, find_experiment, read_histories, read_suite, search_frame,
                   seed_values, select_cells)
from .stats import ALPHA, higher_is_better
from .study_report import read_study, render_study
from .table import CLAIM_METRIC, ClaimCheck, build_table, check_seed_claims, default_baseline, what_the_data_supports

DEFAULT_METRIC = "test_f1_macro"


def _values_summary(series: pd.Series, width: int | None = None) -> str:
    counts = series[series != ""].astype(str).str[:width].value_counts()
    return ", ".join(f"{k} ({v} runs)" if len(counts) > 1 else k for k, v in counts.items()) or "not recorded"


@dataclass
class SuiteReport:
    experiment: str
    metric: str
    ci: str
    baseline: str
    sel: Selection
    table: pd.DataFrame
    checks: list[ClaimCheck]


def header_facts(sel: Selection) -> tuple[list[tuple[str, str]], list[str]]:
    """What was measured, and loud warnings when the cells are not comparable."""
    f, warn = sel.finished, []
    fps = f.loc[f["fingerprint"] != "", "fingerprint"].unique()
    if len(fps) > 1:
        by = f.groupby("fingerprint")["row"].unique()
        warn.append(f"**WARNING: the cells were trained on {len(fps)} different data sets** (fingerprints: "
                    + "; ".join(f"{fp}: {', '.join(rows)}" for fp, rows in by.items())
                    + "): rows are not comparable.")
    if f["split"].nunique() > 1:
        warn.append("**WARNING: the cells mix split kinds** (" + _values_summary(f["split"]) + "): "
                    "actor-disjoint and random-clip splits measure different things.")
    seeds = sorted(int(s) for s in f["seed"].dropna().unique())
    facts = [("data fingerprint", ", ".join(fps) or "not recorded"), ("data", _values_summary(f["data"])),
             ("split", _values_summary(f["split"])), ("seeds", ", ".join(map(str, seeds)) or "none finished"),
             ("profile", _values_summary(sel.rows["profile"])),
             ("git commit", _values_summary(f["git_commit"], 12)),
             ("mode", _values_summary(f["mode"])), ("model", _values_summary(f["model"]))]
    return facts, warn


def render_markdown(rep: SuiteReport, plots: dict[str, str] | None = None) -> str:
    t, metric = rep.table, rep.metric
    facts, warn = header_facts(rep.sel)
    ci_name = "Student t" if rep.ci == "t" else "bootstrap BCa (percentile where BCa is degenerate)"
    n_holm = int(t["p"].notna().sum())
    out = [f"# Ablation report: {rep.experiment}", "",
           f"- experiment: `{rep.experiment}`; metric: `{metric}` "
           f"({'higher' if higher_is_better(metric) else 'lower'} is better); baseline: `{rep.baseline}`"]
    out += [f"- {k}: {v}" for k, v in facts]
    out += ["", *[f"> {w}" for w in warn], *([""] if warn else [])]
    out += [f"**How to read this.** Each row was trained once per seed; the seed fixes the data split and the "
            f"initialisation. *95% CI* ({ci_name}) is where the mean over seeds plausibly lies, not the range of "
            f"a single run: a single run spreads more (see min–max). *Δ* is the row minus the baseline on the same "
            f"seeds (same split), with a t interval on those paired differences; a Δ CI that excludes 0 and a Holm "
            f"p < {ALPHA} mean the difference is larger than seed-to-seed noise. p is a paired t-test, adjusted "
            f"with Holm over the {n_holm} row{'' if n_holm == 1 else 's'} compared with the baseline. *P(better)* is the share of paired "
            f"seeds where the row beats the baseline (ties count ½).", ""]
    header = ["#", "row", "seeds", "failed", f"mean {metric}", f"95% CI ({rep.ci})", "std", "min–max",
              "Δ vs baseline", "Δ 95% CI", "pairs", "p (Holm)", "P(better)", "claimed (single run)",
              "claim vs CI", "accuracy", "best epoch", "wall s/run"]
    lines = []
    for i, (row, r) in enumerate(t.iterrows()):
        ok = r["n"] >= 2
        if r["baseline"]:
            delta = ["baseline"] + ["—"] * 4
        elif math.isfinite(r["delta"]):
            delta = [fmt_delta(r["delta"]), fmt_ci(r["delta_low"], r["delta_high"]), int(r["n_pairs"]),
                     fmt_p(r["p_holm"]), num(r["p_improve"], 2)]
        else:
            delta = [na(r["delta_reason"])] * 2 + [int(r["n_pairs"]), na(r["delta_reason"]), "n/a"]
        label = f"`{row}`" + (f" (study `{r['study']}`)" if r["study"] else "")
        lines.append([i, label, int(r["n"]), int(r["failed"]), num(r["mean"]),
                      fmt_ci(r["ci_low"], r["ci_high"]) if ok else na(r["reason"]),
                      num(r["std"]) if ok else "n/a",
                      f"{num(r['min'])}–{num(r['max'])}" if r["n"] else "n/a", *delta,
                      r["claimed"] or "—", r["verdict"] or "—", num(r["accuracy"]),
                      num(r["best_epoch"], 1), num(r["wall_time_s"], 1)])
    out += md_table(header, lines)
    fb = sorted(set(t.index[t["ci_method"] == "percentile"]))
    if fb:
        out += ["", f"Bootstrap BCa was degenerate for {', '.join(f'`{r}`' for r in fb)}: percentile interval used."]

    f = rep.sel.failed
    out += ["", "## Failed and killed runs", ""]
    if len(f):
        out += md_table(["row", "seed", "status", "reason", "finished on rerun", "run"],
                        [[f"`{r.row}`", r.seed, r.status, r.failure_reason or "not recorded",
                          "yes" if r.rerun_finished else "no", r.run_id] for r in f.itertuples()])
        out += ["", "They are counted (column *failed*: seeds without a finished rerun) and never averaged."]
    else:
        out.append("None.")
    if rep.sel.notes:
        out += ["", "## Notes on run selection", "", *[f"- {n}" for n in rep.sel.notes]]
    if plots:
        out += ["", "## Plots", ""] + [f"![{title}]({name})" for title, name in plots.items()]
    kinds = rep.sel.finished["data"].unique()
    data_kind = kinds[0] if len(kinds) == 1 else ""
    out += ["", "## What the data supports", "",
            *[f"- {s}" for s in what_the_data_supports(t, rep.checks, metric, rep.baseline, data_kind)]]
    return "\n".join(out) + "\n"


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


def suite_report(c, exp, metric: str = DEFAULT_METRIC, baseline: str | None = None, ci: str = "t") -> SuiteReport:
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
    return SuiteReport(experiment=exp.name, metric=metric, ci=ci, baseline=baseline, sel=sel,
                       table=build_table(sel, metric, baseline, ci), checks=check_seed_claims(sel, metric))


def write_plots(c, rep: SuiteReport, out: Path) -> dict[str, str]:
    """The PNGs beside the markdown; returns {title: relative file name}."""
    from .data import class_names

    stem = out.with_suffix("")
    plots = {}
    points = {row: seed_values(rep.sel.finished, row, rep.metric).to_numpy() for row in rep.table.index}
    forest = plot_forest(rep.table, points, Path(f"{stem}-forest.png"), metric=rep.metric, baseline=rep.baseline,
                         ci_label=rep.ci, experiment=rep.experiment, show_claims=rep.metric == CLAIM_METRIC)
    plots[f"{rep.metric}: mean and 95% CI per row"] = forest.name
    history = read_histories(c, rep.sel.finished)
    if len(history):
        curves = plot_val_curves(history, list(rep.table.index), Path(f"{stem}-val-f1.png"),
                                 f"{rep.experiment}: validation macro-F1 per epoch "
                                 f"(mean over seeds, band = min–max)")
        plots["validation macro-F1 per epoch"] = curves.name
    best = best_row(rep.table, rep.metric)
    cells = rep.sel.finished[rep.sel.finished["row"] == best]
    cm = summed_confusion(cells) if best else None
    if cm is not None:
        classes = class_names(cells["mode"].iloc[0])
        if len(classes) == cm.shape[0]:
            # short lines: the figure is sized for the class count, not the title
            png = confusion_png(cm.tolist(), classes, Path(f"{stem}-confusion.png"),
                                f"{best}\n(best mean {rep.metric})\ntest confusion, sum of {len(cells)} seeds")
            plots[f"test confusion matrix of `{best}`"] = png.name
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
    c = tracking.client(args.tracking_uri)
    out = Path(args.out) if args.out else Path("reports") / f"{_slug(args.experiment or args.study)}.md"
    exp = find_experiment(c, args.experiment) if args.experiment else None

    rep = None
    if exp is not None:
        try:
            rep = suite_report(c, exp, args.metric, args.baseline, args.ci)
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
    plots = write_plots(c, rep, out) if rep else {}
    text = render_markdown(rep, plots) if rep else f"# Study report: {args.study}\n"
    if study:
        text += "\n" + render_study(study)
    out.write_text(text)

    log_exp = exp.experiment_id if rep else study.experiment_id
    tags = {"harness.report.metric": args.metric, "harness.report.ci": args.ci,
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
    p.add_argument("--ci", choices=("t", "bootstrap"), default="t",
                   help="CI of the mean: Student t (default), or BCa bootstrap with a fixed seed")
    p.add_argument("--out", type=Path, metavar="FILE", help="markdown file (default: reports/<experiment>.md); "
                                                           "plots are written beside it")
    p.add_argument("--tracking_uri", metavar="URI",
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    p.set_defaults(func=cmd_report)