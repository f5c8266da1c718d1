"""The markdown of a suite report: its bottom line, the one-glance main table, each row's answer, the
details, failures, then the methods. Numbers in (a `SuiteReport`), text out; no MLflow."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from harness import speakers
from harness.report.evaluations import evaluation_section
from harness.report.markdown import fmt_ci, fmt_delta, fmt_p, md_table, na, num
from harness.report.runs import Selection
from harness.report.calibrated import SPEAKER_DEFAULT_MAX_REPEATS, is_cross_corpus
from harness.report.bottomline import bottom_line
from harness.report.table import ClaimCheck, what_the_data_supports
from harness.report.verdict import MORE_REPEATS, Answer
from harness.stats import DECISION_PROB, ROPE, higher_is_better


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
    clips: pd.DataFrame | None = None  # pooled test predictions of complete CV repeats (`runs.read_clips`)
    max_repeats: int | None = None  # the default speaker method serves comparisons on up to this many repeats
    evaluations: pd.DataFrame | None = None  # its rows scored on other corpora (`harness predict --data_root`)


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
    corpora = f.loc[f["corpora"] != "", "corpora"] if "corpora" in f else pd.Series(dtype=object)
    facts = [("data fingerprint", ", ".join(fps) or "not recorded"), ("data", _values_summary(f["data"])),
             *([("corpora", _values_summary(corpora))] if len(corpora) else []),
             *([("classes", _values_summary(f.loc[f["classes"] != "", "classes"].str.replace(",", ", ")))]
               if "classes" in f and (f["classes"] != "").any() else []),
             cv_design(f) or ("split", _values_summary(f["split"])),
             ("seeds", ", ".join(map(str, seeds)) or "none finished"),
             ("profile", _values_summary(sel.rows["profile"])),
             *([("seeds added", racing_text)] if (racing_text := _racing(sel.rows)) else []),
             ("git commit", _values_summary(f["git_commit"], 12)),
             ("mode", _values_summary(f["mode"])), ("model", _values_summary(f["model"])),
             ("normalisation", normalisation_text(f))]
    transductive = normalisation_note(f)
    return facts, warn + ([transductive] if transductive else [])


def normalisation_text(finished: pd.DataFrame) -> str:
    """Each row's `--normalize` (runs before the flag normalised with the training split's statistics)."""
    if "normalize" not in finished or not len(finished):
        return "train"
    by = finished.assign(normalize=finished["normalize"].replace("", "train")).groupby("normalize")["row"].unique()
    if len(by) == 1:
        return by.index[0]
    return "; ".join(f"{n}: {', '.join(f'`{r}`' for r in rows)}" for n, rows in by.items())


def normalisation_note(finished: pd.DataFrame) -> str:
    """A line for the top of the report when a row read its test side's unlabelled features."""
    if "normalize" not in finished:
        return ""
    rows = {n: sorted(set(finished.loc[finished["normalize"] == n, "row"])) for n in ("corpus", "speaker")}
    said = [f"{', '.join(f'`{r}`' for r in rs)} z-score{'s' if len(rs) == 1 else ''} each {n} by its own clips"
            for n, rs in rows.items() if rs]
    if not said:
        return ""
    return ("**Transductive normalisation:** " + "; ".join(said) + " (`--normalize`), the test speakers' "
            "included: their features, never their labels, are read before they are scored.")


def cv_design(finished: pd.DataFrame) -> tuple[str, str] | None:
    """("design", "2 × 4-fold speaker CV") when every finished cell is a fold of a cross-validation repeat."""
    if not len(finished) or finished["fold"].isna().any():
        return None
    folds = "/".join(str(int(k)) for k in sorted(finished["cv_folds"].unique()))
    protocols = sorted(set(finished["protocol"])) if "protocol" in finished else ["kfold"]
    named = "" if protocols == ["kfold"] else f" ({', '.join(protocols)})"
    return "design", f"{finished['seed'].nunique()} × {folds}-fold speaker CV{named}"


CI_NAMES = {
    speakers.METHOD: "on the speaker (`--ci speaker`): each row's mean is its "
                     "repeats' pooled test macro-F1 (every clip scored once per repeat) averaged over repeats; its "
                     "variance is split into speakers (σ²_s/S: does not shrink with repeats), fold models and a "
                     "residual (shrink with repeats), estimated by ANOVA on each speaker's jackknife pseudo-value "
                     "per repeat, each fold cell valued between cells by its delete-a-cell pseudo-value; Student t "
                     "with Satterthwaite's df (`harness.speakers`). Measured on new synthetic speaker populations "
                     "(`benchmarks/calibration/calibration.py`, 2 × K-fold, two fresh runs, 2026-12-03, each by a rule registered "
                     "before it): its 95% intervals covered 375/400 = 0.938 with 24 speakers (std(Δ̂)/SE 0.98, false "
                     "better/worse calls 10/400), 375/400 = 0.938 with 10 (1.05, 11/400) and 191/200 = 0.955 on two "
                     "corpora pooled (0.99, 6/200). The default serves it to cross-validated comparisons on up to "
                     f"{SPEAKER_DEFAULT_MAX_REPEATS} repeats (pooled with two later runs, 700/744 = 0.941 with 24 speakers, "
                     "701/744 = 0.942 with 10): at 3 repeats, in two fresh runs, it covered 319/344 = 0.927 with 24 "
                     "speakers (0.933 with 10), and over 4 repeats 331/362 = 0.914 (std(Δ̂)/SE 1.16), misses, so there "
                     "the default is the corrected t",
    "corrected": "corrected resampled t (Nadeau & Bengio 2003; Bouckaert & Frank 2004): the variance of the mean "
                 "is s² · (1/J + n_test/n_train), because resamples that share most of their training data are "
                 "correlated and a plain t interval over them is too narrow, more so the more resamples are added. "
                 "Measured on new synthetic speaker populations (`benchmarks/calibration/calibration.py`): safe but about "
                 "twice as wide as the truth needs (std(Δ̂)/SE 0.47-0.58 under 2 × K-fold speaker CV, 0.38-0.45 under 4 ×, 0.42 on "
                 "cross-corpus suites of 4 seeds)",
    "t": "plain Student t over resamples, as if they were independent (too narrow when training sets overlap; "
         "the default is the corrected t, or the speaker method where it is calibrated)",
    "bootstrap": "bootstrap BCa over resamples, as if they were independent (percentile where BCa is degenerate)",
}
CROSS_CORPUS_SPEAKER = (
    "on the test corpus's speakers (`--ci speaker`, cross-corpus): each seed's model scores every clip of the "
    "test corpus; a row's mean is its seeds' pooled test macro-F1 averaged, its variance split into the test "
    "speakers (σ²_s/S: does not shrink with seeds), the models (σ²_m/R) and a residual, from the two-way speaker × "
    "seed table of jackknife pseudo-values; Student t with Satterthwaite's df (`harness.speakers`). Measured on 80 "
    "new synthetic test corpora (`benchmarks/calibration/calibration.py --setting cross_corpus`, 4 seeds, 2026-12-02): coverage "
    "152/160 = 0.950, std(Δ̂)/SE 0.89, false better/worse calls 4/160; the population is new speakers of the test "
    "corpus, scored by models of the training corpora as recorded")


def ci_name(ci: str, cross_corpus: bool) -> str:
    """The header's words for the interval method (the speaker method's differ by design)."""
    return CROSS_CORPUS_SPEAKER if ci == speakers.METHOD and cross_corpus else CI_NAMES[ci]


def fallback_rows(rep: SuiteReport) -> list[str]:
    """Under the speaker method, the rows whose mean or Δ the corrected t gives instead."""
    t = rep.table[rep.table["n"] > 0]
    if rep.ci != speakers.METHOD:
        return []
    no_delta = t["baseline"].astype(bool) | ~t["delta"].astype(float).map(math.isfinite)
    served = (t["ci_method"] == speakers.METHOD) & (no_delta | (t["delta_method"] == speakers.METHOD))
    return list(t.index[~served])


def _fallback_lines(rep: SuiteReport) -> list[str]:
    """The header's line naming the rows the corrected t serves under the speaker method, and why."""
    rows = fallback_rows(rep)
    if not rows:
        return []
    why = (f"resting on more than {rep.max_repeats} repeats, where the speaker method's calibration missed, "
           f"or on no complete repeat (its own, or shared with the baseline)" if rep.max_repeats
           else "resting on no complete repeat (its own, or shared with the baseline)")
    return [f"- intervals of {', '.join(f'`{r}`' for r in rows)} (their mean or their Δ, {why}): "
            f"{CI_NAMES['corrected']}"]


def ci_label(rep: SuiteReport) -> str:
    """The method's short name for plots and notes: "speaker", or "speaker; corrected for 2 rows"."""
    rows = fallback_rows(rep)
    return f"{rep.ci}; corrected for {len(rows)} row{'' if len(rows) == 1 else 's'}" if rows else rep.ci


def _decision_cell(r) -> str:
    if r["baseline"]:
        return "baseline"
    if not r["decision"]:
        return na(r["delta_reason"])
    a = r["answer"]
    if r["decision"] == "undecided" and a is not None and not a.ev.var > 0:
        return "undecided (identical differences: no spread to judge from)"
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


def _ruled_out_cell(r) -> str:
    a = r["answer"]
    return a.ruled_out().removeprefix("rules out ").removesuffix(" (95% CI)") if a is not None and a.ev.var > 0 else "—"


def main_table(t: pd.DataFrame, metric: str, claims: bool = True) -> list[str]:
    """The one-glance table (markdown lines): row, n, mean [CI], Δ [CI], decision, what Δ's CI rules out,
    Holm's p and the seed's claim; the report's and the MLflow experiment's description."""
    lines = []
    for i, (row, r) in enumerate(t[t["n"] > 0].iterrows()):
        ok = math.isfinite(r["ci_low"])
        delta = ("—" if r["baseline"] else
                 f"{fmt_delta(r['delta'])} {fmt_ci(r['delta_low'], r['delta_high'])}" if math.isfinite(r["delta"])
                 else na(r["delta_reason"]))
        label = f"`{row}`" + (f" (study `{r['study']}`)" if r["study"] else "")
        mean = f"{num(r['mean'])} {fmt_ci(r['ci_low'], r['ci_high'])}" if ok else f"{num(r['mean'])} ({r['reason']})"
        line = [i, label, f"{int(r['n'])} ({r['design']})", mean, delta, _decision_cell(r),
                "—" if r["baseline"] else _ruled_out_cell(r), "—" if r["baseline"] else fmt_p(r["p_holm"])]
        lines.append(line + ([r["verdict"] or "—"] if claims else []))
    return md_table(["#", "row", "n", f"mean {metric} [95% CI]", "Δ vs baseline [95% CI]", "decision",
                     "rules out (Δ)", "p (Holm)", *(["seed's claim"] if claims else [])], lines)


def _resolution_table(t: pd.DataFrame) -> list[str]:
    """Each comparison's technical detail: resolution, where Δ's variance comes from, what more repeats and
    more speakers would give (the answers above say only what would decide it)."""
    lines = []
    for row, r in t[(t["n"] > 0) & ~t["baseline"].astype(bool)].iterrows():
        a = r["answer"]
        if not isinstance(a, Answer) or not a.ev.var > 0:
            continue
        calls, equivalent = a.resolution()
        lines.append([f"`{row}`", r["delta_method"] or "—", calls, equivalent, a.split(), a.more_repeats(),
                      a.floor()])
    if not lines:
        return []
    return ["", "### What would sharpen each answer", "",
            f"*calls at |Δ| ≥*: the smallest Δ this design can call better or worse; *equivalent at ROPE*: the "
            f"smallest ROPE at which today's Δ could be called equivalent; *variance*: where Δ's variance comes "
            f"from (the first part more repeats cannot lower); *+{MORE_REPEATS} repeats*: Δ's half-width with "
            f"{MORE_REPEATS} more repeats, as the report would state it; *speakers' limit*: the half-width the "
            f"speakers alone allow, whatever the repeats.", "",
            *md_table(["row", "Δ method", "calls at |Δ| ≥", "equivalent at ROPE", "variance",
                       f"+{MORE_REPEATS} repeats: Δ ±", "speakers' limit: Δ ±"], lines)]


def methods(rep: SuiteReport) -> list[str]:
    """The Methods section: what was measured, the interval and decision methods, how to read the tables."""
    t, metric = rep.table, rep.metric
    facts, _ = header_facts(rep.sel)
    n_holm = int(t["p"].notna().sum())
    out = ["## Methods", "",
           f"- experiment: `{rep.experiment}`; metric: `{metric}` "
           f"({'higher' if higher_is_better(metric) else 'lower'} is better); baseline: `{rep.baseline}`"]
    out += [f"- {k}: {v}" for k, v in facts]
    out += [f"- intervals: {ci_name(rep.ci, is_cross_corpus(rep.sel))}", *_fallback_lines(rep),
            f"- decisions: correlated Bayesian t-test (Benavoli et al. 2017, `baycomp`) of Δ vs the baseline with a "
            f"region of practical equivalence ±{rep.rope:g}; a row is **better**, **worse** or **equivalent** when "
            f"that probability is ≥ {DECISION_PROB}, else **undecided**", ""]
    speaker = rep.ci == speakers.METHOD
    unit = ("*mean* is a row's pooled test macro-F1 (every clip scored once per repeat) averaged over its "
            "repeats; its *95% CI* treats the speakers as a sample (they do not average out with more repeats) "
            "and the training runs as another (they do). *Δ* is the row minus the baseline on the same clips of "
            "the same repeats" + ("; for the rows the intervals line lists, the corrected t's over resamples"
                                  if fallback_rows(rep) else "") if speaker else
            "*mean* is over a row's resamples and its *95% CI* is for that same mean, not the range of a single "
            "run (see min–max in the details). *Δ* is the row minus the baseline on the same resamples (same "
            "actors held out)")
    out += [f"**How to read this.** A *resample* is one training run: a seed's split, or under cross-validation "
            f"a seed's fold (every speaker tested once per seed). {unit}, with its 95% CI. *Decision* says which of "
            f"better / equivalent / worse the data makes at least {DECISION_PROB:.0%} probable; *rules out* what "
            f"Δ's 95% CI excludes. p is the matching "
            f"paired t-test, Holm-adjusted over the {n_holm} row{'' if n_holm == 1 else 's'} compared with the "
            f"baseline; the decisions are per row and not adjusted for how many rows are compared, so where "
            f"they and Holm's p disagree, the p is the more cautious reading. A decision is one-sided "
            f"(P ≥ {DECISION_PROB} that Δ lies beyond the ROPE), the Δ interval two-sided: a row can be "
            f"**better** while its 95% interval still touches 0. What would sharpen each answer (resolution, "
            f"where the variance comes from, more repeats, more speakers) is in its table under the details."]
    return out


def render_markdown(rep: SuiteReport, plots: dict[str, str] | None = None, pooled: pd.DataFrame | None = None) -> str:
    """The report: its bottom line, the main table, each row's answer, the details, then the methods."""
    t, metric = rep.table, rep.metric
    _, warn = header_facts(rep.sel)
    out = [f"# Ablation report: {rep.experiment}", "", bottom_line(t, rep.baseline, metric, rep.rope), ""]
    out += [*[f"> {w}" for w in warn], *([""] if warn else [])]
    out += main_table(t, metric)
    never = list(t.index[t["n"] == 0])
    if never:
        out += ["", f"No finished run yet: {', '.join(f'`{r}`' for r in never)}."]
    kinds = rep.sel.finished["data"].unique()
    data_kind = kinds[0] if len(kinds) == 1 else ""
    out += ["", "## What the data supports", "",
            *[f"- {s}" for s in what_the_data_supports(t, rep.checks, metric, rep.baseline, data_kind, rep.rope)]]

    pooled_mean = (pooled.groupby("row")["pooled_f1"].agg(["mean", "count"]) if pooled is not None and len(pooled)
                   else pd.DataFrame(columns=["mean", "count"]))
    details = []
    for row, r in t[t["n"] > 0].iterrows():
        pm = pooled_mean.loc[row] if row in pooled_mean.index else None
        details.append([f"`{row}`", num(r["std"]) if r["n"] >= 2 else "n/a", f"{num(r['min'])}–{num(r['max'])}",
                        int(r["failed"]), f"{r['ratio']:.3f}" if math.isfinite(r["ratio"]) else "n/a",
                        "—" if r["baseline"] or not r["decision"] else
                        f"{r['p_better']:.2f} / {r['p_equivalent']:.2f} / {r['p_worse']:.2f}",
                        "—" if r["baseline"] else num(r["p_improve"], 2),
                        f"{num(pm['mean'])} ({int(pm['count'])})" if pm is not None else "—",
                        r["claimed"] or "—", num(r["accuracy"]), num(r["best_epoch"], 1), num(r["wall_time_s"], 1)])
    out += ["", "## Details", "",
            "*n_test/n_train* is the correction's ratio; *P(b/e/w)* the Bayesian probabilities of better / "
            "equivalent / worse; *wins* the share of paired resamples where the row beats the baseline (ties ½); "
            "*pooled F1* (cross-validation only) the macro-F1 of a repeat's pooled test predictions, every clip "
            "scored once, averaged over repeats (how many in brackets)."]
    out += [""] + md_table(["row", "std", "min–max", "failed", "n_test/n_train", "P(b/e/w)", "wins",
                            "pooled F1", "claimed (single run)", "accuracy", "best epoch", "wall s/run"], details)
    out += _resolution_table(t)
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
    if rep.evaluations is not None and len(rep.evaluations):
        out += ["", *evaluation_section(rep.evaluations)]
    if rep.sel.notes:
        out += ["", "## Notes on run selection", "", *[f"- {n}" for n in rep.sel.notes]]
    if plots:
        out += ["", "## Plots", ""] + [f"![{title}]({name})" for title, name in plots.items()]
    out += ["", *methods(rep)]
    return "\n".join(out) + "\n"
