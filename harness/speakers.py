"""The speaker as the unit: intervals for cross-validated suites from their pooled test predictions.

Pure functions, numbers in, numbers out (no MLflow, no runs).

Under speaker-grouped K-fold cross-validation every repeat (a seed) scores every clip once, each
speaker's clips by the model of the fold that held the speaker out. A repeat's statistic is the
pooled macro-F1 of its predictions (or a paired Δ of two rows, same seed, same folds, same clips),
and the estimate is its mean over the R repeats. Its variance has three sources:

- **speakers** (σ²_s): which speakers were recorded. Crossed with the repeats (every repeat scores
  the same speakers), so it does not shrink with more repeats: the floor is σ²_s / S.
- **fold models** (σ²_m): a model is shared by the speakers of its fold cell (repeat × fold);
  initialisation, batch order and the epoch chosen on validation move all of them together. Each fold
  trains from its own seed (`harness.train.run.train_seed`): folds that shared the repeat's seed
  shared their initial weights, a repeat-level variance this model does not have (measured before
  the change: 2-7x what the fold models predict, in 5 of 6 contrasts on synthetic populations).
- **residual** (σ²_e): a speaker's result in one repeat beyond the two above (speaker × model).
- **the training population**: every fold model of a corpus is trained on that corpus's speakers, so
  which speakers were recorded could also move Δ through the models, for every repeat alike. One
  corpus cannot show it. `components(p, test_train_ratio)` can charge it after Nadeau & Bengio 2003
  (models of overlapping training sets correlate by ρ = n_test/n_train: σ²_m · n_test/n_train to the
  floor); the report does not, because measured it is far too much once each fold trains from its own
  seed (below).

    Var(estimate) = σ²_s / S + σ²_m · Σ n_cell² / (S R)² + σ²_e / (S R)

The first term is the floor (more repeats cannot lower it; more speakers can), the others the training
noise. Calibration (benchmarks/calibration/calibration.py, 2 × K-fold CV, new synthetic speaker populations never
seen while this was designed, 2026-12-02; an A/A null and a true effect per population): with a seed
per fold, std(Δ̂)/RMS(SE) was 0.99 with 24 speakers and 3 classes (coverage of the 95% interval
77/80), 0.87 with 10 speakers and 7 classes (138/140) and 0.96 with two corpora pooled (53/60); with
the Nadeau–Bengio training-population term it was 0.52-0.53 (about twice too wide). The fold models'
variance is almost all initialisation and batch order, which overlapping training sets do not share.
Before the per-fold seeds the method was right on average only because that term made up for the
repeat-level variance the shared seed created, and its interval covered 66/72. A second fresh run (120
populations, df on the mean squares as below): coverage 0.900 (24 speakers), 0.938 (10), 0.938 (two
corpora), std/SE 1.07, 1.00, 1.18; the A/A null is covered, the real effect is not (std/SE 1.12-1.24). A probe
run (the same fold models also scored on new speakers) found no training-population term, and a third fresh
run covered 0.930 (24 speakers) and 0.955 (10), std/SE 1.05 and 1.02: over the last two runs 0.921 with 24
speakers, short of the 0.93 goal. With delete-a-cell values between cells (below), a fourth fresh run covered
0.935 (24 speakers, std/SE 0.97) and 0.920 (10 speakers, std/SE 1.10): a miss again. Over 4 repeats a fifth
covered 0.915 (24 speakers, std/SE 1.17, the A/A null too) and 0.960 (10). A sixth (2 repeats again, and
two corpora) covered 0.935, 0.965 and 0.955; pooled with the fourth by the rule registered before it, 0.938
and 0.938 (std/SE 0.98, 1.05): the report's default for CV comparisons (then on up to 3 repeats)
(`harness.report.calibrated`). A seventh, over 4 repeats, covered 0.914 (24 speakers). For a real effect what
4 repeats miss with 24 speakers is a part of Δ that varies over populations beyond the stated speakers' floor
and that no repeat averages away (docs/statistics.md, "What 4 repeats miss"; the probe run above did not
find it at 2 repeats, so the two runs are in tension). An eighth, 6 repeats on new repeat seeds, each population
also scored on its first 2, 3 and 4, covered 0.917, 0.903, 0.951 and 0.910 with 24 speakers (the effect 0.847-0.917)
and 0.931-0.958 with 10. `components(p, repeat_share=ρ)` credits the repeats with Kish's design effect
1 + (R − 1)ρ on their training noise (the repeats' shared part joins the floor); with ρ = 0.04 it missed its rule
there too (24 speakers 0.917 at 3 repeats, 0.924 at 6), so the report does not use it. A ninth, 3 repeats,
covered 0.945 (24 speakers) and 0.935 (10); pooled with the eighth's first 3 repeats 0.927 with 24 speakers, one
interval short of its rule, so the default serves 2 repeats since 2026-12-07; its first 2 repeats covered 0.965
and 0.950.

A cross-corpus row (`--test_corpus`: each seed trains one model on the other corpora and scores every
speaker of the test corpus) has one fold cell per repeat: the model is the repeat, crossed with the test
corpus's speakers, and the components come from the two-way table without replication (`_crossed`):
Var = σ²_s/S + σ²_m/R + σ²_e/(SR), the population being new speakers of the test corpus, scored by models
of the training corpora as recorded. With one repeat σ²_m cannot be measured and no interval is stated.
Calibrated on 80 new synthetic test corpora with 4 seeds (benchmarks/calibration/calibration.py --setting cross_corpus,
2026-12-02): coverage 152/160 = 0.950, std(Δ̂)/SE 0.89; the report's default for cross-corpus suites.

Speakers of several corpora (a pooled comparison) are nested in their corpora: the population is new
speakers of the same corpora, so the pseudo-values are centred on their corpus's mean per repeat before
the speakers' spread is taken (a stratified sample; S − C degrees of freedom).

The statistic is not a mean over clips, so each speaker's share of it is its jackknife pseudo-value
within its repeat, u = S·θ − (S − 1)·θ(−speaker) (Quenouille–Tukey; the leave-one-speaker-out
statistic from the confusion matrices). Between fold cells a cell is valued by its own delete-a-group
pseudo-value, h·θ − (h − 1)·θ(−cell) with h = S/n_cell (Kott 2001; Busing, Meijer & van der Leeden 1999
for unequal groups): a fold model moves all its speakers at once, and with macro-F1 a large model effect
is not the sum of what its speakers' pseudo-values linearise. On the third fresh run and the probe run of
2026-12-03 (development data for this change), a real effect with 24 speakers: the repeats' pooled Δ spread
1.12-1.17 × what the cells' means of u predicted and 1.01-1.05 × what these values predict (the A/A null:
1.01 and 0.96; scored as accuracy, a linear statistic: 0.87-0.97). For a statistic linear in the speakers
(accuracy with as many clips per speaker) the two values are the same. The components are ANOVA
(method-of-moments) estimates on the pseudo-values of a speaker × repeat table with fold cells nested in
repeats (Searle, Casella & McCulloch 1992, ch. 4): the within-cell mean square (σ²_s + σ²_e), the between-cell mean square
(n₀σ²_m + σ²_s + σ²_e) and the spread of the speakers' means over repeats (σ²_s + (σ²_e + (1 − c̄)σ²_m)/R,
c̄ the share of repeats in which two speakers sit in one fold). A negative σ²_m is set to 0; a negative
σ²_s is set to 0 with σ²_e taken from the speakers' means alone, so that the stated variance stays what
the mean squares give: v/S plus the covariance of speakers who shared fold models. The interval is
Student t with Satterthwaite's (1946) degrees of freedom taken on the three mean squares the variance
is a function of. Measured on constructed tables (10 or 24 speakers, 2 repeats) this df matches the
spread of the stated variance (2·E[V̂]²/Var(V̂)); the df it replaced, Satterthwaite on the components
each given one mean square's df, gave the residual 1 df with 10 speakers in 5 folds (median df 2-5
where the truth was 9-12, intervals too wide) and too many with 24. The idea follows Bisani & Ney
2004 (the speaker as the resampling unit), Miller 2024 (clustered standard errors, paired
differences) and Bouthillier et al. 2021 (training noise apart from data sampling, every source
randomised). Unlike the Nadeau & Bengio 2003 correction of the whole spread, s²·(1/J + n_test/n_train),
it separates what more repeats remove from what only more speakers can.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from harness.metrics import f1_per_class

LEVEL = 0.95
METHOD = "speaker"
METHOD_NAME = "speaker × repeat variance components of the pooled test predictions"


def macro_f1(confusion: np.ndarray) -> float:
    """Macro-F1 of a confusion matrix (rows true, columns predicted); a class with no true and no
    predicted clip scores 0, as sklearn's f1_score(average="macro", zero_division=0) over the labels."""
    return float(f1_per_class(confusion).mean())


def _confusions(true: np.ndarray, pred: np.ndarray, group: np.ndarray, n_groups: int, n_classes: int) -> np.ndarray:
    """One confusion matrix per group: shape (n_groups, C, C)."""
    m = np.zeros((n_groups, n_classes, n_classes))
    np.add.at(m, (group, true, pred), 1)
    return m


@dataclass(frozen=True)
class Pseudo:
    """A speaker × repeat table of one statistic: the repeats' pooled values and each speaker's pseudo-value."""
    theta: np.ndarray  # (R,) the pooled statistic of each repeat
    u: np.ndarray  # (S, R) pseudo-values: mean over speakers ≈ theta
    fold: np.ndarray  # (S, R) the fold (cell within the repeat) that scored the speaker
    speakers: tuple  # the S speakers, in the table's order
    repeats: tuple  # the R repeats
    # (S, R) each speaker's fold cell's delete-a-cell pseudo-value (`pseudo_values`); None: the cell's mean
    # of u, which is what it equals for a statistic linear in the speakers. Derived from u's table: a table
    # whose u is replaced must have its cell_u rebuilt or set to None.
    cell_u: np.ndarray | None = None

    @property
    def corpora(self) -> tuple:
        """Each speaker's corpus ('corpus:id' names; one corpus where the names have no prefix)."""
        from harness.corpora.base import corpus_of

        return tuple(corpus_of(s) for s in self.speakers)


def pseudo_values(clips: pd.DataFrame, classes: Sequence[str], reference: pd.DataFrame | None = None) -> Pseudo:
    """`clips`: one line per scored clip, columns repeat, fold, speaker, clip, true, pred (every repeat
    scores every speaker once). With `reference` (same columns, the baseline's predictions), the
    statistic is the paired Δ of pooled macro-F1 (row − reference), matched on repeat and clip."""
    cls = {c: i for i, c in enumerate(classes)}
    if reference is not None:
        keys = ["repeat", "clip"]
        ref = reference[keys + ["pred"]].rename(columns={"pred": "pred_ref"})
        clips = clips.merge(ref, on=keys, how="inner")
    repeats = tuple(sorted(clips["repeat"].unique()))
    speakers = tuple(sorted(clips["speaker"].unique()))
    s_idx = {s: i for i, s in enumerate(speakers)}
    S, R, C = len(speakers), len(repeats), len(classes)
    theta, u, cell_u = np.zeros(R), np.full((S, R), np.nan), np.full((S, R), np.nan)
    fold = np.full((S, R), -1)
    for j, r in enumerate(repeats):
        g = clips[clips["repeat"] == r]
        sp = g["speaker"].map(s_idx).to_numpy()
        true = g["true"].map(cls).to_numpy()
        per = _confusions(true, g["pred"].map(cls).to_numpy(), sp, S, C)
        per_ref = (_confusions(true, g["pred_ref"].map(cls).to_numpy(), sp, S, C)
                   if reference is not None else None)

        def stat(drop) -> float:
            m = per.sum(0) - (per[drop].sum(0) if drop is not None else 0)
            if per_ref is None:
                return macro_f1(m)
            return macro_f1(m) - macro_f1(per_ref.sum(0) - (per_ref[drop].sum(0) if drop is not None else 0))

        theta[j] = stat(None)
        present = np.unique(sp)
        n = len(present)
        for s in present:
            u[s, j] = n * theta[j] - (n - 1) * stat([s])
        f = g.groupby(sp)["fold"].first()
        fold[f.index.to_numpy(), j] = f.to_numpy()
        # The fold model's unit is its cell: a delete-a-group jackknife over the repeat's cells (h = n/n_c for
        # unequal groups, Busing, Meijer & van der Leeden 1999) keeps the part of a cell's model effect on the
        # pooled macro-F1 that one speaker's pseudo-value linearises away. For a statistic linear in the speakers
        # it is the cell's mean of u.
        for k in np.unique(f.to_numpy()):
            members = f.index.to_numpy()[f.to_numpy() == k]
            if len(members) == n:  # one cell (a cross-corpus row): nothing to delete
                cell_u[members, j] = u[members, j].mean()
                continue
            h = n / len(members)
            cell_u[members, j] = h * theta[j] - (h - 1) * stat(list(members))
    if np.isnan(u).any():
        missing = [speakers[i] for i in np.flatnonzero(np.isnan(u).any(axis=1))]
        raise ValueError(f"every repeat must score every speaker; missing in some repeat: {missing}")
    return Pseudo(theta=theta, u=u, fold=fold, speakers=speakers, repeats=repeats, cell_u=cell_u)


@dataclass(frozen=True)
class Components:
    """Variance components of one statistic and the design they were measured on."""
    speaker: float  # σ²_s
    model: float  # σ²_m
    residual: float  # σ²_e
    n_speakers: int  # S
    n_repeats: int  # R
    cell_sq: float  # Σ n_cell² over all (repeat, fold) cells of the design
    separable: bool  # False with one repeat: speakers and residual cannot be told apart (all charged to speakers)
    test_train_ratio: float  # n_test / n_train of one fold: the training population's share of σ²_m
    df_speaker: float
    df_model: float
    df_residual: float
    mean_squares: "MeanSquares"  # what the components were solved from: their df give the interval's df
    # ρ: the share of one repeat's training noise that the repeats have in common because they share the
    # population (Kish's design effect 1 + (R − 1)ρ); 0: the repeats are credited as independent
    repeat_share: float = 0.0


    def parts(self, repeats: float | None = None) -> tuple[float, float]:
        """(floor, training part) of the estimate's variance with `repeats` repeats (default: as run): the part no
        repeat lowers (the speakers; with `repeat_share` ρ, the share ρ of one repeat's training noise that the
        repeats have in common) and the part that shrinks as 1/repeats."""
        S, R = self.n_speakers, self.n_repeats
        r = R if repeats is None else repeats
        per_repeat = self.model * self.cell_sq / (S * S * R) + self.residual / S  # one repeat's training noise
        rho = self.repeat_share
        floor = self.speaker / S + self.model * self.test_train_ratio + rho * per_repeat
        return floor, (1 - rho) * per_repeat / r

    def var(self, repeats: float | None = None) -> float:
        return float(sum(self.parts(repeats)))

    def df(self, repeats: float | None = None) -> float:
        """Satterthwaite's degrees of freedom of `var`, taken on the mean squares it is a function of
        (Satterthwaite 1946): var = Σ g_i·MS_i with g_i = ∂var/∂MS_i (exact: var is piecewise linear in
        them, a component clipped at 0 drops out) and Var(MS_i) = 2·MS_i²/df_i, so
        df = var² / Σ (g_i·MS_i)²/df_i; the gradient form of lmerTest (Kuznetsova et al. 2017)."""
        ms = self.mean_squares
        total = self.var(repeats)
        denom = 0.0
        for i, (value, dof) in enumerate(zip(ms.values, ms.dfs)):
            if value <= 0 or dof <= 0:
                continue
            h = 1e-6 * value
            up, down = (_solve(ms.replaced(i, value + d), self) for d in (h, -h))
            grad = (up.var(repeats) - down.var(repeats)) / (2 * h)
            denom += (grad * value) ** 2 / dof
        if denom <= 0 or total <= 0:
            return float(max(1, self.n_speakers - 1))
        return float(max(1.0, min(total * total / denom, self.n_speakers * self.n_repeats)))

    @property
    def speaker_share(self) -> float:
        """The speakers' share of the estimate's variance, as run."""
        s, t = self.parts()
        return s / (s + t) if s + t > 0 else math.nan


def components(p: Pseudo, test_train_ratio: float = 0.0, repeat_share: float = 0.0) -> Components:
    """ANOVA estimates of σ²_s, σ²_m, σ²_e from a speaker × repeat table of pseudo-values (module docstring);
    `test_train_ratio` (n_test / n_train of one fold; 0 leaves the training population out); `repeat_share`
    (ρ, `Components.repeat_share`; cross-validated designs only, a crossed one ignores it)."""
    u, fold = p.u, p.fold
    S, R = u.shape
    corpora = np.array(p.corpora)
    strata = np.unique(corpora)
    shift = np.zeros_like(u)
    if len(strata) > 1:
        # Speakers nested in corpora: a pooled comparison's population is new speakers of the same corpora,
        # so the corpora's own means (per repeat) are not speaker variance (a stratified sample).
        for c in strata:
            shift[corpora == c] = u[corpora == c].mean(axis=0)
        u = u - shift
    ss_w = df_w = ss_b = df_b = 0.0
    cell_sq, n0_num = 0.0, 0.0
    for j in range(R):
        col, f = u[:, j], fold[:, j]
        keys = np.unique(f)
        cells = [col[f == k] for k in keys]
        sizes = np.array([len(c) for c in cells], float)
        # A cell's value between cells: its delete-a-cell pseudo-value (less its speakers' corpus means), or
        # the mean of its speakers' pseudo-values where the table has none (the two agree for linear statistics).
        means = (np.array([c.mean() for c in cells]) if p.cell_u is None else
                 np.array([(p.cell_u[f == k, j] - shift[f == k, j]).mean() for k in keys]))
        ss_w += sum(((c - c.mean()) ** 2).sum() for c in cells)
        df_w += sizes.sum() - len(cells)
        ss_b += float((sizes * (means - (sizes * means).sum() / sizes.sum()) ** 2).sum())
        df_b += len(cells) - 1
        cell_sq += (sizes ** 2).sum()
        n0_num += sizes.sum() - (sizes ** 2).sum() / sizes.sum()
    ms_w = ss_w / df_w if df_w > 0 else 0.0
    ms_b = ss_b / df_b if df_b > 0 else 0.0
    n0 = n0_num / df_b if df_b > 0 else 1.0
    df_v = S - len(strata)
    if df_b == 0:
        return _crossed(p, u, cell_sq, df_v, test_train_ratio)
    if R >= 2:
        # The speakers' means over repeats, their spread within corpora (S − C df: each corpus's mean is
        # taken out above), and the share of repeats in which two speakers share a fold cell.
        v = _spread(u.mean(axis=1), df_v)
        same = (fold[:, None, :] == fold[None, :, :]).mean(axis=2)
        c_bar = float((same.sum() - S) / (S * (S - 1)))
    else:
        v, c_bar = 0.0, 0.0
    ms = MeanSquares(values=(v, ms_w, ms_b), dfs=(float(df_v if R >= 2 else 0), float(df_w), float(df_b)),
                     n0=n0, c_bar=c_bar)
    base = Components(speaker=0.0, model=0.0, residual=0.0, n_speakers=S, n_repeats=R, cell_sq=cell_sq,
                      separable=R >= 2, test_train_ratio=float(test_train_ratio),
                      df_speaker=float(df_v), df_model=float(max(df_b, 1)),
                      df_residual=float(max(df_w - (S - 1), 1)), mean_squares=ms,
                      repeat_share=float(repeat_share))
    return _solve(ms, base)


def _spread(x: np.ndarray, df: float) -> float:
    """Σ(x − x̄)² / df (0 without df)."""
    return float(((x - x.mean()) ** 2).sum() / df) if df > 0 else 0.0


def _crossed(p: Pseudo, u: np.ndarray, cell_sq: float, df_v: int, test_train_ratio: float) -> Components:
    """One model per repeat (a cross-corpus row: each seed trains one model on the other corpora and scores
    every speaker of the test corpus): speakers crossed with repeats, no replication (Searle, Casella &
    McCulloch 1992, §4.6). The speakers' means (v: E = σ²_s + σ²_e/R), the speaker × repeat interaction
    (E = σ²_e) and the repeats' means, the models (E = S·σ²_m + σ²_e), with Var = σ²_s/S + σ²_m/R + σ²_e/(SR).
    With one repeat the models' variance cannot be measured: the variance is NaN, not a floor."""
    S, R = u.shape
    df_e = float(df_v * (R - 1))
    base = Components(speaker=0.0, model=0.0, residual=0.0, n_speakers=S, n_repeats=R, cell_sq=cell_sq,
                      separable=R >= 2, test_train_ratio=float(test_train_ratio), df_speaker=float(df_v),
                      df_model=float(R - 1), df_residual=max(df_e, 1.0), mean_squares=None)
    if R < 2:
        nan = math.nan
        ms = MeanSquares(values=(nan, nan, nan), dfs=(0.0, 0.0, 0.0), n0=float(S), c_bar=1.0, crossed=True)
        return dataclasses.replace(base, speaker=nan, model=nan, residual=nan, mean_squares=ms)
    means = u.mean(axis=1)
    v = _spread(means, df_v)
    # The repeats' means from the uncentred table: centring on each corpus's mean per repeat (several test
    # corpora) would take the models' effect out with it.
    ms_r = S * _spread(p.u.mean(axis=0), R - 1)
    inter = u - means[:, None] - u.mean(axis=0)[None, :] + u.mean()
    ms_e = float((inter ** 2).sum() / df_e) if df_e > 0 else 0.0
    ms = MeanSquares(values=(v, ms_e, ms_r), dfs=(float(df_v), df_e, float(R - 1)), n0=float(S), c_bar=1.0,
                     crossed=True)
    return _solve(ms, base)


@dataclass(frozen=True)
class MeanSquares:
    """The three mean squares of the speaker × repeat table and their df: the speakers' means over repeats
    (v; E = σ²_s + (σ²_e + (1 − c̄)σ²_m)/R), within fold cells (E = σ²_s + σ²_e) and between fold cells
    (E = n₀σ²_m + σ²_s + σ²_e). Crossed (one model per repeat, `_crossed`): v, the speaker × repeat
    interaction (E = σ²_e) and between repeats (E = S·σ²_m + σ²_e)."""
    values: tuple[float, float, float]  # v, MS_within (crossed: MS_interaction), MS_between (crossed: MS_repeats)
    dfs: tuple[float, float, float]
    n0: float
    c_bar: float
    crossed: bool = False

    def replaced(self, i: int, value: float) -> "MeanSquares":
        values = list(self.values)
        values[i] = value
        return dataclasses.replace(self, values=tuple(values))


def _solve(ms: MeanSquares, design: Components) -> Components:
    """The method-of-moments components from the mean squares, each negative estimate set to 0."""
    v, ms_w, ms_b = ms.values
    R = design.n_repeats
    model = max(0.0, (ms_b - ms_w) / ms.n0)
    if ms.crossed:
        # σ²_e from the interaction; a negative σ²_s is 0 with σ²_e from the speakers' means (R·v = σ²_e),
        # as in the nested design: the stated variance stays what the mean squares give.
        speaker = v - ms_w / R
        speaker, residual = (speaker, ms_w) if speaker >= 0 else (0.0, R * v)
        return dataclasses.replace(design, speaker=speaker, model=model, residual=residual, mean_squares=ms)
    if R >= 2:
        speaker = (R * v - ms_w - (1 - ms.c_bar) * model) / (R - 1)
        if speaker >= 0:
            residual = max(0.0, ms_w - speaker)
        else:
            # The speakers' means agree more than the within-cell noise predicts: σ²_s is 0 and the residual
            # comes from the means' own moment equation (R·v = σ²_e + (1 − c̄)σ²_m), so the stated variance
            # stays v/S plus the shared fold models' covariance. Charging the whole within-cell mean square to
            # the residual instead would add variance exactly when the speakers happened to agree.
            speaker, residual = 0.0, max(0.0, R * v - (1 - ms.c_bar) * model)
    else:
        speaker, residual = ms_w, 0.0
    return dataclasses.replace(design, speaker=speaker, model=model, residual=residual, mean_squares=ms)


@dataclass(frozen=True)
class Interval:
    estimate: float  # mean over repeats of the pooled statistic
    low: float
    high: float
    se: float
    df: float
    comps: Components


def interval(p: Pseudo, test_train_ratio: float = 0.0, level: float = LEVEL,
             bounds: tuple[float, float] | None = None) -> Interval:
    """The estimate (mean of the repeats' pooled statistics) with its Student-t interval."""
    from scipy import stats

    comps = components(p, test_train_ratio)
    se, df = math.sqrt(comps.var()), comps.df()
    est = float(p.theta.mean())
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    low, high = est - half, est + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Interval(estimate=est, low=low, high=high, se=se, df=df, comps=comps)
