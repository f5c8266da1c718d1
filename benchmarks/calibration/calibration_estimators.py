"""The figures of benchmarks/calibration/calibration.py from the predictions it saved: what each estimator states per
population and contrast, and how that compares with the truth over populations. No training here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from precision import Band

RATIO_BAND = (0.85, 1.15)  # std(Δ̂) / RMS(SE) of the default estimator
COVERAGE_BAND = (0.93, 0.97)  # of its stated 95% interval
FALSE_CALLS_MAX = 0.05
BOOTSTRAP_RESAMPLES = 9999
DEFAULT = "speaker"  # the estimator --check holds to the goals (the report's default for CV suites)


@dataclass(frozen=True)
class Population:
    setting: str
    rep: int
    source: str  # the folder it was loaded from
    preds: pd.DataFrame  # row, repeat, fold, speaker, corpus, clip, true, pred
    folds: pd.DataFrame  # row, repeat, fold, f1, ratio
    classes: tuple[str, ...]
    probe: pd.DataFrame | None = None  # the same fold models on new speakers: row, repeat, fold, speaker, clip, true, pred

    @property
    def rows(self) -> list[str]:
        return sorted(set(self.folds["row"]) - {"plain"})


def load_populations(dirs: list[Path]) -> list[Population]:
    pops = []
    for d in dirs:
        for f in sorted(Path(d).glob("*-predictions.csv.gz")):
            setting, rep = f.name.split("-")[:2]
            folds = pd.read_csv(Path(d) / f"{setting}-{rep}-folds.csv")
            kinds = {"clip": str, "true": str, "pred": str, "speaker": str, "corpus": str, "gender": str}
            preds = pd.read_csv(f, dtype=kinds)
            if "gender" in preds:
                preds["gender"] = preds["gender"].fillna("")
            probe = Path(d) / f"{setting}-{rep}-probe.csv.gz"
            pops.append(Population(setting, int(rep), str(d), preds, folds,
                                   tuple(str(folds["classes"].iloc[0]).split(",")),
                                   pd.read_csv(probe, dtype=kinds) if probe.exists() else None))
    return pops


def first_repeats(pops: list[Population], counts: list[int]) -> list[Population]:
    """Each population cut to its first R repeats, for each R in `counts`: what a user who adds repeats one at a
    time has run. Their setting is named `<setting>@<R>`; a population with fewer repeats is left out."""
    import dataclasses

    out = []
    for R in counts:
        for pop in pops:
            if pop.folds["repeat"].nunique() < R:
                continue
            keep = sorted(pop.folds["repeat"].unique())[:R]
            out.append(dataclasses.replace(pop, setting=f"{pop.setting}@{R}",
                                           preds=pop.preds[pop.preds["repeat"].isin(keep)],
                                           folds=pop.folds[pop.folds["repeat"].isin(keep)],
                                           probe=None))
    return out


def width_report(stated: dict, estimator: str,
                 also: tuple[str, ...] = ("speaker", "corrected")) -> tuple[list[Band], list[str]]:
    """From `stated_all`'s figures, per setting and contrast (settings named `<setting>@<R>`, `first_repeats`): the
    estimator's median Δ half-width at each repeat count, and whether it grows when a repeat is added (a Band per
    step: the ratio of medians, at most 1); the estimators in `also` beside it, for comparison (no Band)."""
    from scipy import stats

    names = [estimator] + [n for n in also if n != estimator]
    halves: dict = {}
    for (setting, row, name), values in stated.items():
        if "@" not in setting or name not in names:
            continue
        base, R = setting.split("@")
        halves.setdefault((base, row, name), {})[int(R)] = [float(stats.t.ppf(0.975, df)) * se for _, se, df in values]
    checks, lines = [], []
    for (base, row, name), by_r in sorted(halves.items(), key=lambda kv: (kv[0][:2], names.index(kv[0][2]))):
        counts = sorted(by_r)
        med = {R: float(np.median(by_r[R])) for R in counts}
        lines.append(f"{base} {row} {name}: median Δ half-width "
                     + ", ".join(f"{R} repeats ±{med[R]:.4f}" for R in counts))
        if name == estimator:
            checks += [Band(f"{base} {row} {name}: median half-width {b} / {a} repeats", med[b] / med[a], 0.0, 1.0)
                       for a, b in zip(counts, counts[1:])]
    return checks, lines


# --- estimators: (Δ̂, SE, df) of one contrast in one population ----------------------------------

def _fold_deltas(pop: Population, row: str) -> tuple[np.ndarray, float]:
    f = pop.folds.pivot_table(index=["repeat", "fold"], columns="row", values="f1")
    ratio = float(pop.folds["ratio"].mean())
    return (f[row] - f["plain"]).to_numpy(), ratio


def est_corrected(pop: Population, row: str) -> tuple[float, float, float]:
    from harness.stats import corrected_var

    d, ratio = _fold_deltas(pop, row)
    return float(d.mean()), math.sqrt(corrected_var(d, ratio)), len(d) - 1.0


def est_plain(pop: Population, row: str) -> tuple[float, float, float]:
    d, _ = _fold_deltas(pop, row)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))), len(d) - 1.0


_PSEUDO: dict = {}  # (folder, setting, population, row) -> its Pseudo: every speaker estimator reads the same table


def _pseudo(pop: Population, row: str):
    from harness import speakers

    key = (pop.source, pop.setting, pop.rep, row)
    if key not in _PSEUDO:
        p = pop.preds
        _PSEUDO[key] = speakers.pseudo_values(p[p["row"] == row], pop.classes, reference=p[p["row"] == "plain"])
    return _PSEUDO[key]


def est_speaker_nb(pop: Population, row: str) -> tuple[float, float, float]:
    """The speaker method with the training-population term σ²_m · n_test/n_train (Nadeau & Bengio's ρ)."""
    from harness import speakers

    pv = _pseudo(pop, row)
    comps = speakers.components(pv, float(pop.folds["ratio"].mean()))
    return float(pv.theta.mean()), math.sqrt(comps.var()), comps.df()


def est_speaker(pop: Population, row: str) -> tuple[float, float, float]:
    """`--ci speaker`, as the report computes it (harness.report.table.compare): the speakers as tested,
    the fold models and the residual; no training-population term."""
    from harness import speakers

    pv = _pseudo(pop, row)
    comps = speakers.components(pv)
    return float(pv.theta.mean()), math.sqrt(comps.var()), comps.df()


# ρ of `speaker_deff`, fixed before its fresh run (registered/2026-12-07-repeats-design-effect.md): the mean of the
# four within-population correlations of the A/A null's repeats in runs 5 and 7 (+0.109, +0.132, −0.045, −0.050)
SPEAKER_DEFF_RHO = 0.04


def est_speaker_deff(pop: Population, row: str) -> tuple[float, float, float]:
    """The speaker method with the repeats credited as a cluster sample sharing its population: Kish's design
    effect 1 + (R − 1)ρ on one repeat's training noise (`speakers.Components.repeat_share`)."""
    from harness import speakers

    pv = _pseudo(pop, row)
    comps = speakers.components(pv, repeat_share=SPEAKER_DEFF_RHO)
    return float(pv.theta.mean()), math.sqrt(comps.var()), comps.df()


def est_speaker_r2(pop: Population, row: str) -> tuple[float, float, float]:
    """The speaker method priced at 2 repeats: its components from every repeat run, its variance and df those of
    a 2-repeat design (`Components.var(repeats=2)`). Averaging more repeats never raises Var(Δ̂), so from 3 repeats
    on it states at least what the 2-repeat default, calibrated there, would (registered/2026-12-07-three-repeats.md)."""
    from harness import speakers

    pv = _pseudo(pop, row)
    comps = speakers.components(pv)
    R = min(comps.n_repeats, 2)
    return float(pv.theta.mean()), math.sqrt(comps.var(repeats=R)), comps.df(repeats=R)


def est_speaker_lin(pop: Population, row: str) -> tuple[float, float, float]:
    """The speaker method as shipped until 2026-12-03: the between-cell mean square from each cell's mean of its
    speakers' pseudo-values (the same for a statistic linear in the speakers), not the cell's delete-a-cell
    pseudo-value."""
    import dataclasses

    from harness import speakers

    pv = dataclasses.replace(_pseudo(pop, row), cell_u=None)
    comps = speakers.components(pv)
    return float(pv.theta.mean()), math.sqrt(comps.var()), comps.df()


def est_speaker_cdf(pop: Population, row: str) -> tuple[float, float, float]:
    """The speaker method with the df it stated before 2026-12-02: Satterthwaite on the three components,
    each given the df of one mean square (the residual's, S·R − R·K − (S − 1), is 1 with 10 speakers in
    5 folds over 2 repeats), rather than on the mean squares the components are solved from."""
    from harness import speakers

    pv = _pseudo(pop, row)
    c = speakers.components(pv)
    S, R = c.n_speakers, c.n_repeats
    terms = [(c.speaker / S, c.df_speaker), (c.model * c.cell_sq / (S * S * R * R), c.df_model),
             (c.residual / (S * R), c.df_residual)]
    total = sum(t for t, _ in terms)
    denom = sum(t * t / d for t, d in terms if t > 0 and d > 0)
    df = max(1.0, min(total * total / denom, S * R)) if denom > 0 else max(1.0, S - 1.0)
    return float(pv.theta.mean()), math.sqrt(c.var()), float(df)


def est_speaker_strata(pop: Population, row: str) -> tuple[float, float, float]:
    """A comparator (stratified_anova.py): the fold deal's (corpus, gender) strata as a level of the ANOVA."""
    from stratified_anova import stratified

    pv = _pseudo(pop, row)
    gender = (pop.preds.groupby("speaker")["gender"].first() if "gender" in pop.preds else {})
    strata = [f"{c}|{gender.get(s, '')}" for c, s in zip(pv.corpora, pv.speakers)]
    var, df, _ = stratified(pv.u, pv.fold, strata)
    return float(pv.theta.mean()), math.sqrt(var), df


# speaker: the report's `--ci speaker`; speaker_deff: the same with Kish's design effect on the repeats; speaker_r2: the
# same priced at 2 repeats; speaker_lin: its between-cell mean square as before 2026-12-03 (cell
# means of the speakers' pseudo-values); speaker_nb: as shipped before 2026-12-02 (with the training-population
# term); speaker_cdf: the df as stated before 2026-12-02 (same SE as speaker); speaker_strata: the fold deal's
# strata as an ANOVA level (a comparator, stratified_anova.py).
ESTIMATORS = {"speaker": est_speaker, "speaker_deff": est_speaker_deff, "speaker_r2": est_speaker_r2, "speaker_lin": est_speaker_lin, "speaker_nb": est_speaker_nb,
              "speaker_cdf": est_speaker_cdf,
              "speaker_strata": est_speaker_strata, "corrected": est_corrected, "plain": est_plain}


# --- statistics over populations ------------------------------------------------------------------

def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy import stats

    z = float(stats.norm.ppf(0.5 + level / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def decision(delta: float, se: float, df: float) -> str:
    """The report's call: better / worse / equivalent (ROPE ±0.01) at P >= 0.95, else undecided."""
    from harness.report.verdict import _probs
    from harness.stats import DECISION_PROB, ROPE, decide

    if not se > 0:
        return "undecided"
    return decide(*_probs(delta, se * se, df, ROPE, True), DECISION_PROB)


@dataclass(frozen=True)
class Figures:
    n: int
    mean: float
    std: float
    rms_se: float
    ratio: float
    ratio_ci: tuple[float, float]
    covered: int
    false_calls: int  # better or worse on a null contrast; worse on a positive one
    decided: int  # better / worse / equivalent

    @property
    def coverage(self) -> float:
        return self.covered / self.n


def figures(stated: list[tuple[float, float, float]], null: bool, seed: int = 0) -> Figures:
    """`stated`: (Δ̂, SE, df) per population of one contrast; `null`: its true Δ is 0."""
    from scipy import stats

    est, se, df = (np.array(x, float) for x in zip(*stated))
    m = len(est)
    truth = np.zeros(m) if null else (est.sum() - est) / (m - 1)  # leave-one-out: never judged against itself
    half = stats.t.ppf(0.975, df) * se
    covered = int(np.sum(np.abs(est - truth) <= half))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, m, size=(BOOTSTRAP_RESAMPLES, m))
    with np.errstate(invalid="ignore", divide="ignore"):  # a contrast with no spread at all: nan, shown as such
        boot = est[idx].std(axis=1, ddof=1) / np.sqrt((se[idx] ** 2).mean(axis=1))
        ratio = est.std(ddof=1) / math.sqrt(float((se ** 2).mean()))
    calls = [decision(*s) for s in stated]
    wrong = {"better", "worse"} if null else {"worse"}
    return Figures(n=m, mean=float(est.mean()), std=float(est.std(ddof=1)), rms_se=float(math.sqrt((se ** 2).mean())),
                   ratio=float(ratio),
                   ratio_ci=(float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))),
                   covered=covered, false_calls=sum(c in wrong for c in calls),
                   decided=sum(c != "undecided" for c in calls))


def stated_all(pops: list[Population]) -> dict:
    """{(setting, contrast, estimator): [(Δ̂, SE, df) per population]}"""
    out: dict = {}
    for pop in pops:
        for row in pop.rows:
            for name, fn in ESTIMATORS.items():
                out.setdefault((pop.setting, row, name), []).append(fn(pop, row))
    return out


def report(pops: list[Population], settings: list[str], default: str = DEFAULT,
           stated: dict | None = None) -> tuple[list[Band], list[str]]:
    """The table per setting, contrast and estimator; `stated`: `stated_all(pops)`, when the caller has it."""
    stated = stated_all(pops) if stated is None else stated
    checks, notes = [], []
    print(f"\n{'setting':<11} {'contrast':<8} {'estimator':<10} {'n':>4} {'mean Δ̂':>8} {'std Δ̂':>7} {'RMS SE':>7} "
          f"{'std/SE':>6} {'95% (bootstrap)':>16} {'coverage':>8} {'95% (Wilson)':>14} {'false':>6} {'decided':>7}")
    for setting in settings:
        pooled: dict = {}
        for (s, row, name), values in sorted(stated.items()):
            if s != setting or len(values) < 3:
                continue
            f = figures(values, null=row == "aa")
            lo, hi = wilson(f.covered, f.n)
            print(f"{s:<11} {row:<8} {name:<10} {f.n:>4} {f.mean:>+8.4f} {f.std:>7.4f} {f.rms_se:>7.4f} {f.ratio:>6.3f} "
                  f" [{f.ratio_ci[0]:.3f}, {f.ratio_ci[1]:.3f}] {f.coverage:>8.3f}  [{lo:.3f}, {hi:.3f}] "
                  f"{f.false_calls / f.n:>6.1%} {f.decided / f.n:>7.1%}")
            pooled.setdefault(name, []).append(f)
        for name, fs in pooled.items():
            n, cov = sum(f.n for f in fs), sum(f.covered for f in fs)
            ratio = math.sqrt(np.mean([(f.std / f.rms_se) ** 2 if f.rms_se > 0 else math.nan for f in fs]))
            false = sum(f.false_calls for f in fs)
            lo, hi = wilson(cov, n)
            notes.append(f"{setting} {name}: coverage {cov}/{n} = {cov / n:.3f} (Wilson [{lo:.3f}, {hi:.3f}]), "
                         f"std/SE (RMS over contrasts) {ratio:.3f}, false calls {false}/{n}")
            if name == default:
                checks += [Band(f"{setting} {name}: coverage (all contrasts)", cov / n, *COVERAGE_BAND),
                           Band(f"{setting} {name}: std(Δ̂)/RMS(SE) (RMS over contrasts)", ratio, *RATIO_BAND),
                           Band(f"{setting} {name}: false better/worse calls", false / n, 0.0, FALSE_CALLS_MAX)]
    return checks, notes


# --- the probe: the same fold models on the corpus's own speakers and on new ones -------------------------

def probe_stated(pop: Population, row: str) -> dict[str, float]:
    """The CV estimate and the same fold models' Δ on the probe's new speakers (each model one repeat of a
    crossed design), with what the speaker method states for each: whole, and without the models' part.
    Their difference shares the models' noise and the training population, not the test speakers, so its
    variance is the two non-model parts alone."""
    from harness import speakers

    pv = _pseudo(pop, row)
    c = speakers.components(pv)
    q = pop.probe.assign(repeat=pop.probe["repeat"] * 100 + pop.probe["fold"], fold=0)
    pq = speakers.pseudo_values(q[q["row"] == row], pop.classes, reference=q[q["row"] == "plain"])
    cq = speakers.components(pq)
    S, R, N, M = c.n_speakers, c.n_repeats, cq.n_speakers, cq.n_repeats
    return {"cv": float(pv.theta.mean()), "cv_var": c.var(), "cv_rest": c.speaker / S + c.residual / (S * R),
            "new": float(pq.theta.mean()), "new_var": cq.var(), "new_rest": cq.speaker / N + cq.residual / (N * M),
            "cv_model": c.var() - c.speaker / S - c.residual / (S * R), "new_model": cq.model / M}


def _boot(x: np.ndarray, fn, seed: int = 0) -> tuple[float, float]:
    idx = np.random.default_rng(seed).integers(0, len(x), size=(BOOTSTRAP_RESAMPLES, len(x)))
    vals = np.array([fn(x[i]) for i in idx])
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def probe_report(pops: list[Population]) -> list[str]:
    """Per contrast: (1) std(Δ̂_cv − Δ̂_new) / RMS of the stated non-model parts (1: the speaker method's
    speakers and residual are right on trained models); (2) each estimate's std/SE and its shortfall,
    Var(Δ̂) − mean stated variance (the population term, if that is what is missing: the same in both)."""
    pops = [p for p in pops if p.probe is not None]
    if len(pops) < 3:
        return []
    lines = [f"probe ({len(pops)} populations): the same fold models on the corpus's speakers (cv) and on new ones (new)"]
    for row in sorted({r for p in pops for r in p.rows}):
        v = [probe_stated(p, row) for p in pops]
        x = np.array([[d["cv"], d["cv_var"], d["cv_rest"], d["new"], d["new_var"], d["new_rest"], d["cv_model"],
                       d["new_model"]] for d in v])

        def diff_ratio(a):
            return (a[:, 0] - a[:, 3]).std(ddof=1) / math.sqrt((a[:, 2] + a[:, 5]).mean())

        def ratio(a, i):
            return a[:, i].std(ddof=1) / math.sqrt(a[:, i + 1].mean())

        def short(a, i):
            return a[:, i].var(ddof=1) - a[:, i + 1].mean()

        lo, hi = _boot(x, diff_ratio)
        lines.append(f"  {row}: cv − new: mean {np.mean(x[:, 0] - x[:, 3]):+.4f}, std/SE (non-model parts) "
                     f"{diff_ratio(x):.3f} [{lo:.3f}, {hi:.3f}]")
        for name, i in (("cv", 0), ("new", 3)):
            lo, hi = _boot(x, lambda a: ratio(a, i))
            slo, shi = _boot(x, lambda a: short(a, i))
            lines.append(f"  {row}: {name:<3} mean {x[:, i].mean():+.4f}, std/SE {ratio(x, i):.3f} [{lo:.3f}, {hi:.3f}], "
                         f"Var(Δ̂) − mean stated {short(x, i):+.2e} [{slo:+.2e}, {shi:+.2e}] "
                         f"({short(x, i) / x[:, i].var(ddof=1):+.0%} of Var(Δ̂))")
        dlo, dhi = _boot(x, lambda a: short(a, 0) - short(a, 3))
        lines.append(f"  {row}: shortfall cv − new {short(x, 0) - short(x, 3):+.2e} [{dlo:+.2e}, {dhi:+.2e}]")

        # What the two estimates share is the 8 models' noise and the training population: their covariance
        # over populations less the models' part the crossed design states is the population term.
        def term(a):
            return np.cov(a[:, 0], a[:, 3])[0, 1] - a[:, 7].mean()

        def model_gap(a):
            return (a[:, 6] - a[:, 7]).mean()

        tlo, thi = _boot(x, term)
        glo, ghi = _boot(x, model_gap)
        lines.append(f"  {row}: population term, Cov(cv, new) − the new design's models' part: {term(x):+.2e} "
                     f"[{tlo:+.2e}, {thi:+.2e}] ({term(x) / x[:, 0].var(ddof=1):+.0%} of Var(Δ̂_cv))")
        lines.append(f"  {row}: the same 8 models' part as the CV design states it − as the new design does: "
                     f"{model_gap(x):+.2e} [{glo:+.2e}, {ghi:+.2e}] ({model_gap(x) / x[:, 7].mean():+.0%})")
    return lines
