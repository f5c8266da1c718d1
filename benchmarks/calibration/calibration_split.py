"""What a population's repeats share, from the predictions benchmarks/calibration/calibration.py saved (no training here).

Within one population the repeats of a row are independent draws (new seeds, a new fold deal), so for any
contrast Var(Δ̂) over populations splits without a model into
- the repeats' own spread, mean(s²_r)/R: what more repeats average away (the fold models, the residual);
- the rest, Var(Δ̂) − mean(s²_r)/R: the variance of the population's own Δ over populations, which no
  number of repeats lowers (the speakers as tested, and as trainers of the fold models).
`split_report` sets these beside what the speaker method states for them (its training-runs part and its
speakers' floor), per setting and contrast; `null_report` asks the A/A null (true Δ = 0 in every population)
whether its repeats correlate. Both with percentile-bootstrap intervals over populations.
"""
from __future__ import annotations

import numpy as np

from calibration_estimators import Population, _boot, _pseudo, est_speaker


def _table(pops: list[Population], row: str) -> np.ndarray | None:
    """Per population: its repeats' pooled Δ (R columns), then the stated floor and training-runs parts."""
    from harness import speakers

    out = []
    for p in pops:
        pv = _pseudo(p, row)
        floor, train = speakers.components(pv).parts()
        out.append([*np.asarray(pv.theta, float), floor, train])
    if len(out) < 3 or len({len(r) for r in out}) > 1 or len(out[0]) < 4:
        return None
    return np.array(out)


def split_report(pops: list[Population]) -> list[str]:
    lines = []
    for setting in sorted({p.setting for p in pops}):
        mine = [p for p in pops if p.setting == setting]
        for row in sorted(set.intersection(*(set(p.rows) for p in mine))) if mine else []:
            x = _table(mine, row)
            if x is None:
                continue
            R = x.shape[1] - 2

            def noise(a):
                return a[:, :R].var(axis=1, ddof=1).mean() / R

            def between(a):
                return a[:, :R].mean(axis=1).var(ddof=1) - noise(a)

            def missing(a):  # the population's own variance that the stated floor leaves out
                return between(a) - a[:, R].mean()

            def train_ratio(a):
                return a[:, R + 1].mean() / noise(a)

            (b0, b1), (m0, m1), (t0, t1) = _boot(x, between), _boot(x, missing), _boot(x, train_ratio)
            lines.append(
                f"{setting} {row} ({len(mine)} populations, {R} repeats): Var(Δ̂) {x[:, :R].mean(axis=1).var(ddof=1):.2e}"
                f" = repeats' spread {noise(x):.2e} + the population's own {between(x):+.2e} [{b0:+.2e}, {b1:+.2e}];"
                f" stated: training runs {x[:, R + 1].mean():.2e} ({train_ratio(x):.2f}x the repeats' spread"
                f" [{t0:.2f}, {t1:.2f}]), speakers' floor {x[:, R].mean():.2e}, leaving {missing(x):+.2e}"
                f" [{m0:+.2e}, {m1:+.2e}] of the population's own unstated; Var(Δ̂) − all stated"
                f" {x[:, :R].mean(axis=1).var(ddof=1) - x[:, R:].sum(axis=1).mean():+.2e} (what coverage reads)")
    return lines


def null_report(pops: list[Population]) -> list[str]:
    """Per setting with an aa row and at least 2 repeats. The aa and plain rows are one recipe with independent
    seeds, so E[Δ_r | population] = 0 for every repeat r. The repeats' pooled Δ are therefore uncorrelated, and
    s²_r/R (their spread within the population) is an unbiased, model-free estimate of Var(Δ̂).
    Var(Δ̂)/mean(SE²) splits into two factors:
    - Var(Δ̂)/mean(s²_r/R): 1 unless the repeats correlate, which the design rules out;
    - mean(s²_r/R)/mean(SE²): 1 when the speaker method's variance is right.
    Both come with percentile-bootstrap intervals over populations."""
    lines = []
    for setting in sorted({p.setting for p in pops}):
        mine = [p for p in pops if p.setting == setting and "aa" in p.rows]
        theta = [_pseudo(p, "aa").theta for p in mine]
        if len(mine) < 3 or min(len(t) for t in theta) < 2 or len({len(t) for t in theta}) > 1:
            continue
        t = np.array(theta)
        R = t.shape[1]
        se2 = np.array([est_speaker(p, "aa")[1] ** 2 for p in mine])
        x = np.column_stack([t, se2])

        def repeats(a):
            return a[:, :R].mean(axis=1).var(ddof=1) / (a[:, :R].var(axis=1, ddof=1).mean() / R)

        def stated(a):
            return (a[:, :R].var(axis=1, ddof=1).mean() / R) / a[:, R].mean()

        corr = np.mean([np.corrcoef(t[:, i], t[:, j])[0, 1] for i in range(R) for j in range(i + 1, R)])
        (a, b), (c, d) = _boot(x, repeats), _boot(x, stated)
        lines.append(f"{setting} aa ({len(mine)} populations, {R} repeats): Var(Δ̂)/mean(s²_r/R) {repeats(x):.3f} "
                     f"[{a:.3f}, {b:.3f}] (1: the repeats are independent, as designed; mean correlation of two "
                     f"repeats {corr:+.3f}); mean(s²_r/R)/mean(SE²) {stated(x):.3f} [{c:.3f}, {d:.3f}] "
                     f"(1: the speaker SE is right)")
    return lines


