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
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from harness import services, tracking
from harness.errors import HarnessError
from harness.figures import confusion_png
from harness.report.markdown import fmt_ci, fmt_delta, fmt_p, md_table, na, num
from harness.report.plots import plot_forest, plot_val_curves
from harness.report.runs import (
    Selection,
    available_metrics,
    column,
    find_experiment,
    read_histories,
    read_pooled,
    read_suite,
    search_frame,
    seed_values,
    select_cells,
)
from harness.report.study import read_study, render_study
from harness.report.table import (
    CLAIM_METRIC,
    ClaimCheck,
    build_table,
    check_seed_claims,
    default_baseline,
    what_the_data_supports,
)
from harness.stats import CI_METHODS, DECISION_PROB, ROPE, higher_is_better

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
    rope: float = ROPE


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
             *([("design", racing_text)] if (racing_text := _racing(sel.rows)) else []),
             ("git commit", _values_summary(f["git_commit"], 12)),
             ("mode", _values_summary(f["mode"])), ("model", _values_summary(f["model"]))]
    return facts, warn


CI_NAMES = {
    "corrected": "corrected resampled t (Nadeau & Bengio 2003; Bouckaert & Frank 2004): the variance of the mean "
                 "is s² · (1/J + n_test/n_train), because resamples that share most of their training data are "
                 "correlated and a plain t interval over them is too narrow, more so the more resamples are added",
    "t": "plain Student t over resamples, as if they were independent (too narrow when training sets overlap; "
         "`--ci corrected` is the default)",
    "bootstrap": "bootstrap BCa over resamples, as if they were independent (percentile where BCa is degenerate)",
}


def _decision_cell(r) -> str:
    if r["baseline"]:
        return "baseline"
    if not r["decision"]:
        return na(r["delta_reason"])
    if r["decision"] == "undecided":
        name, p = max((("better", r["p_better"]), ("equivalent", r["p_equivalent"]), ("worse", r["p_worse"])),
                      key=lambda kv: kv[1])
        if p >= DECISION_PROB:  # only a degenerate posterior gets here: every paired difference identical
            return "undecided (identical differences: no spread to judge from)"
        return f"undecided (likeliest: {name} {p:.2f})"
    return f"**{r['decision']}** ({r['p_' + r['decision']]:.2f})"


def describe_race(tag: str) -> str:
    """The report's sentence for a row parent's racing tag; empty when it is not one."""
    try:
        r = json.loads(tag)
    except (TypeError, ValueError):
        return ""
    return (f"sequential (racing): seeds {', '.join(map(str, r['start_seeds']))} first, then {r['rounds']} "
            f"round(s) adding a repeat only to undecided rows, budget {r['budget']} training runs, a row stopped "
            f"at P ≥ {r['threshold']}; the intervals and decisions below treat the number of repeats as fixed, "
            f"which a sequential design is not: read borderline decisions with care")


def _racing(rows: pd.DataFrame) -> str:
    """How the seeds were chosen, when a race chose them (`suite run --until-decided`)."""
    texts = {describe_race(tag) for tag in (rows["racing"] if "racing" in rows else []) if tag}
    return "; ".join(sorted(t for t in texts if t))


def render_markdown(rep: SuiteReport, plots: dict[str, str] | None = None, pooled: pd.DataFrame | None = None) -> str:
    t, metric = rep.table, rep.metric
    facts, warn = header_facts(rep.sel)
    n_holm = int(t["p"].notna().sum())
    out = [f"# Ablation report: {rep.experiment}", "",
           f"- experiment: `{rep.experiment}`; metric: `{metric}` "
           f"({'higher' if higher_is_better(metric) else 'lower'} is better); baseline: `{rep.baseline}`"]
    out += [f"- {k}: {v}" for k, v in facts]
    out += [f"- intervals: {CI_NAMES[rep.ci]}",
            f"- decisions: correlated Bayesian t-test (Benavoli et al. 2017, `baycomp`) of Δ vs the baseline with a "
            f"region of practical equivalence ±{rep.rope:g}; a row is **better**, **worse** or **equivalent** when "
            f"that probability is ≥ {DECISION_PROB}, else **undecided**"]
    out += ["", *[f"> {w}" for w in warn], *([""] if warn else [])]
    out += [f"**How to read this.** A *resample* is one training run: a seed's split, or under cross-validation "
            f"a seed's fold (every speaker tested once per seed). *mean* is over a row's resamples and its *95% CI* "
            f"is for that same mean, not the range of a single run (see min–max below). *Δ* is the row minus the "
            f"baseline on the same resamples (same actors held out), with its 95% CI. *Decision* says which of "
            f"better / equivalent / worse the data makes at least {DECISION_PROB:.0%} probable; p is the matching "
            f"paired t-test, Holm-adjusted over the {n_holm} row{'' if n_holm == 1 else 's'} compared with the "
            f"baseline; the decisions are per row and not adjusted for how many rows are compared, so where "
            f"they and Holm's p disagree, the p is the more cautious reading. A decision is one-sided "
            f"(P ≥ {DECISION_PROB} that Δ lies beyond the ROPE), the Δ interval two-sided: a row can be "
            f"**better** while its 95% interval still touches 0.", ""]
    ran = t[t["n"] > 0]
    lines = []
    for i, (row, r) in enumerate(ran.iterrows()):
        ok = r["n"] >= 2
        delta = ("—" if r["baseline"] else
                 f"{fmt_delta(r['delta'])} {fmt_ci(r['delta_low'], r['delta_high'])}" if math.isfinite(r["delta"])
                 else na(r["delta_reason"]))
        label = f"`{row}`" + (f" (study `{r['study']}`)" if r["study"] else "")
        mean = f"{num(r['mean'])} {fmt_ci(r['ci_low'], r['ci_high'])}" if ok else f"{num(r['mean'])} ({r['reason']})"
        lines.append([i, label, f"{int(r['n'])} ({r['design']})", mean, delta, _decision_cell(r),
                      "—" if r["baseline"] else fmt_p(r["p_holm"]), r["verdict"] or "—"])
    out += md_table(["#", "row", "n", f"mean {metric} [95% CI]", "Δ vs baseline [95% CI]", "decision",
                     "p (Holm)", "seed's claim"], lines)
    never = list(t.index[t["n"] == 0])
    if never:
        out += ["", f"No finished run yet: {', '.join(f'`{r}`' for r in never)}"
                + ("" if not rep.sel.failed.empty else "") + "."]

    pooled_mean = (pooled.groupby("row")["pooled_f1"].agg(["mean", "count"]) if pooled is not None and len(pooled)
                   else pd.DataFrame(columns=["mean", "count"]))
    details = []
    for row, r in ran.iterrows():
        pm = pooled_mean.loc[row] if row in pooled_mean.index else None
        details.append([f"`{row}`", num(r["std"]) if r["n"] >= 2 else "n/a", f"{num(r['min'])}–{num(r['max'])}",
                        int(r["failed"]), f"{r['ratio']:.3f}" if math.isfinite(r["ratio"]) else "n/a",
                        "—" if r["baseline"] or not r["decision"] else
                        f"{r['p_better']:.2f} / {r['p_equivalent']:.2f} / {r['p_worse']:.2f}",
                        "—" if r["baseline"] else num(r["p_improve"], 2),
                        f"{num(pm['mean'])} ({int(pm['count'])})" if pm is not None else "—",
                        r["claimed"] or "—", num(r["accuracy"]), num(r["best_epoch"], 1), num(r["wall_time_s"], 1)])
    out += ["", "### Details", "",
            "*n_test/n_train* is the correction's ratio; *P(b/e/w)* the Bayesian probabilities of better / "
            "equivalent / worse; *wins* the share of paired resamples where the row beats the baseline (ties ½); "
            "*pooled F1* (cross-validation only) the macro-F1 of a repeat's pooled test predictions, every clip "
            "scored once, averaged over repeats (how many in brackets)."]
    out += [""] + md_table(["row", "std", "min–max", "failed", "n_test/n_train", "P(b/e/w)", "wins",
                            "pooled F1", "claimed (single run)", "accuracy", "best epoch", "wall s/run"], details)
    fb = sorted(set(t.index[t["ci_method"] == "percentile"]))
    if fb:
        out += ["", f"Bootstrap BCa was degenerate for {', '.join(f'`{r}`' for r in fb)}: percentile interval used."]

    f = rep.sel.failed
    out += ["", "## Failed and killed runs", ""]
    if len(f):
        out += md_table(["row", "seed", "fold", "status", "reason", "finished on rerun", "run"],
                        [[f"`{r.row}`", r.seed, "—" if pd.isna(r.fold) else r.fold, r.status,
                          r.failure_reason or "not recorded", "yes" if r.rerun_finished else "no", r.run_id]
                         for r in f.itertuples()])
        out += ["", "They are counted (column *failed*: resamples without a finished rerun) and never averaged."]
    else:
        out.append("None.")
    if rep.sel.notes:
        out += ["", "## Notes on run selection", "", *[f"- {n}" for n in rep.sel.notes]]
    if plots:
        out += ["", "## Plots", ""] + [f"![{title}]({name})" for title, name in plots.items()]
    kinds = rep.sel.finished["data"].unique()
    data_kind = kinds[0] if len(kinds) == 1 else ""
    out += ["", "## What the data supports", "",
            *[f"- {s}" for s in what_the_data_supports(t, rep.checks, metric, rep.baseline, data_kind, rep.rope)]]
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


def suite_report(c, exp, metric: str = DEFAULT_METRIC, baseline: str | None = None, ci: str = "corrected",
                 rope: float = ROPE) -> SuiteReport:
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
                       table=build_table(sel, metric, baseline, ci, rope),
                       checks=check_seed_claims(sel, metric, ci=ci, rope=rope), rope=rope)


def write_plots(c, rep: SuiteReport, out: Path) -> dict[str, str]:
    """The PNGs beside the markdown; returns {title: relative file name}."""
    from harness.train.data import class_names

    stem = out.with_suffix("")
    plots = {}
    points = {row: seed_values(rep.sel.finished, row, rep.metric).to_numpy() for row in rep.table.index}
    forest = plot_forest(rep.table, points, Path(f"{stem}-forest.png"), metric=rep.metric, baseline=rep.baseline,
                         ci_label=rep.ci, experiment=rep.experiment,
                         show_claims=rep.metric == CLAIM_METRIC and not rep.table["comparable"].astype(bool).any())
    plots[f"{rep.metric}: mean and 95% CI per row"] = forest.name
    history = read_histories(c, rep.sel.finished)
    if len(history):
        curves = plot_val_curves(history, list(rep.table.index), Path(f"{stem}-val-f1.png"),
                                 f"{rep.experiment}: validation macro-F1 per epoch "
                                 f"(mean over runs, band = min–max)")
        plots["validation macro-F1 per epoch"] = curves.name
    best = best_row(rep.table, rep.metric)
    cells = rep.sel.finished[rep.sel.finished["row"] == best]
    cm = summed_confusion(cells) if best else None
    if cm is not None:
        classes = class_names(cells["mode"].iloc[0])
        if len(classes) == cm.shape[0]:
            # short lines: the figure is sized for the class count, not the title
            png = confusion_png(cm.tolist(), classes, Path(f"{stem}-confusion.png"),
                                f"{best}\n(best mean {rep.metric})\ntest confusion, sum of {len(cells)} runs")
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
    if args.rope < 0:
        raise HarnessError(f"invalid --rope {args.rope}: expected a width >= 0 (in units of the metric)")
    c = services.existing_client(args.tracking_uri)  # a mistyped store is an error, never a new empty one
    out = Path(args.out) if args.out else Path("reports") / f"{_slug(args.experiment or args.study)}.md"
    exp = find_experiment(c, args.experiment) if args.experiment else None

    rep = None
    if exp is not None:
        try:
            rep = suite_report(c, exp, args.metric, args.baseline, args.ci, args.rope)
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
    text = render_markdown(rep, plots, read_pooled(c, rep.sel.finished)) if rep else f"# Study report: {args.study}\n"
    if study:
        text += "\n" + render_study(study)
    out.write_text(text)

    log_exp = exp.experiment_id if rep else study.experiment_id
    tags = {"harness.report.metric": args.metric, "harness.report.ci": args.ci, "harness.report.rope": str(args.rope),
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
    p.add_argument("--ci", choices=CI_METHODS, default="corrected",
                   help="intervals and p: corrected (default; the corrected resampled t of Nadeau & Bengio, for "
                        "resamples whose training sets overlap), t (plain Student t), or bootstrap (BCa, fixed seed)")
    p.add_argument("--rope", type=float, default=ROPE,
                   help=f"region of practical equivalence for the decisions, in metric units (default: {ROPE})")
    p.add_argument("--out", type=Path, metavar="FILE", help="markdown file (default: reports/<experiment>.md); "
                                                           "plots are written beside it")
    p.add_argument("--tracking_uri", metavar="URI",
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    p.set_defaults(func=cmd_report)