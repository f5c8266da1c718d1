"""A comparator for benchmarks/calibration/calibration.py, not the report's method: the speaker method's nested ANOVA
with the fold deal's strata as a level of their own.

`harness.train.splits.cv_folds` deals each (corpus, gender) stratum round-robin, so every fold cell of 24
RAVDESS-layout speakers in 4 folds holds 3 men and 3 women. A fold model that is better for women than for
men then moves its cell's women together and its men together. The report's ANOVA (`harness.speakers`)
counts that as within-cell (speaker-level) variance. Here it is a component of its own, σ²_i, the stratum
within the cell (Searle, Casella & McCulloch 1992, ch. 4: the three-stage nested classification,
unbalanced), and the speakers are taken within strata (a stratified sample, Cochran 1977 ch. 5):

    MS_within stratum of a cell  E = σ²_w
    MS_strata within cells       E = σ²_w + k₁σ²_i
    MS_between cells             E = σ²_w + k₂σ²_i + n₀σ²_m
    v (speakers' means)          E = σ²_s + (σ²_e + (1 − c̄)σ²_m + (1 − c̄_h)σ²_i)/R,  σ²_w = σ²_s + σ²_e

    Var = σ²_s/S + (σ²_m Σn_cell² + σ²_i Σn_stratum-of-cell²)/(SR)² + σ²_e/(SR)

Where a cell's stratum holds one speaker (EmoDB's 10 in 5 folds: a man and a woman each), σ²_i cannot be
told from the residual and counts as much in the variance: one within-cell level, as in the report.
The df are Satterthwaite's on the four mean squares (gradient form, as `harness.speakers.Components.df`).

    python benchmarks/calibration/stratified_anova.py [--tables 3000] [--seed 0]   # numpy, 30-50 s on a 2-core VM

prints std(Δ̂)/RMS(SE) of both ANOVAs on constructed tables (3 designs × 4 mixes of the components, folds
dealt like `cv_folds`): informational, no goal.
"""
from __future__ import annotations

import numpy as np


def _mean_squares(u: np.ndarray, fold: np.ndarray, strata: np.ndarray) -> dict:
    S, R = u.shape
    levels = np.unique(strata)
    u = u.copy()
    for h in levels:  # the strata's own means per repeat are not speaker variance
        u[strata == h] -= u[strata == h].mean(axis=0)
    ss = dict(w=0.0, s=0.0, b=0.0)
    df = dict(w=0.0, s=0.0, b=0.0)
    cell_sq = sub_sq = n0_num = k1_num = k2_num = 0.0
    for j in range(R):
        col, f = u[:, j], fold[:, j]
        cells = np.unique(f)
        sizes = np.array([(f == k).sum() for k in cells], float)
        means = np.array([col[f == k].mean() for k in cells])
        sub_n, within = [], 0.0
        for i, k in enumerate(cells):
            for h in levels:
                x = col[(f == k) & (strata == h)]
                if len(x):
                    ss["w"] += ((x - x.mean()) ** 2).sum()
                    ss["s"] += len(x) * (x.mean() - means[i]) ** 2
                    sub_n.append(len(x))
                    within += len(x) ** 2 / sizes[i]
        sub_n = np.array(sub_n, float)
        df["w"] += S - len(sub_n)
        df["s"] += len(sub_n) - len(cells) - (len(levels) - 1)  # the strata's means were taken out
        ss["b"] += float((sizes * (means - col.mean()) ** 2).sum())
        df["b"] += len(cells) - 1
        cell_sq += (sizes ** 2).sum()
        sub_sq += (sub_n ** 2).sum()
        n0_num += S - (sizes ** 2).sum() / S
        k1_num += S - within
        k2_num += within - (sub_n ** 2).sum() / S
    if df["w"] < 1:  # one speaker per stratum of a cell: one within-cell level
        ss["w"], df["w"], ss["s"], df["s"] = ss["w"] + ss["s"], df["w"] + df["s"], 0.0, 0.0
    same = fold[:, None, :] == fold[None, :, :]
    pairs = S * (S - 1)
    return dict(
        v=float(((u.mean(axis=1) - u.mean()) ** 2).sum() / (S - len(levels))), df_v=float(S - len(levels)),
        w=ss["w"] / df["w"], df_w=df["w"], b=ss["b"] / df["b"], df_b=df["b"],
        s=ss["s"] / df["s"] if df["s"] > 0 else 0.0, df_s=max(df["s"], 0.0),
        n0=n0_num / df["b"], k1=k1_num / (df["s"] + R * (len(levels) - 1)) if df["s"] > 0 else 0.0,
        k2=k2_num / df["b"], c_bar=float((same.mean(axis=2).sum() - S) / pairs),
        c_sub=float(((same & (strata[:, None, None] == strata[None, :, None])).mean(axis=2).sum() - S) / pairs),
        cell_sq=cell_sq, sub_sq=sub_sq, S=S, R=R)


def _solve(m: dict) -> dict:
    inter = max(0.0, (m["s"] - m["w"]) / m["k1"]) if m["df_s"] > 0 and m["k1"] > 0 else 0.0
    model = max(0.0, (m["b"] - m["w"] - m["k2"] * inter) / m["n0"])
    shared = (1 - m["c_bar"]) * model + (1 - m["c_sub"]) * inter
    R = m["R"]
    speaker = (R * m["v"] - m["w"] - shared) / (R - 1)
    residual = max(0.0, m["w"] - speaker) if speaker >= 0 else max(0.0, R * m["v"] - shared)
    speaker = max(0.0, speaker)
    S = m["S"]
    var = (speaker / S + (model * m["cell_sq"] + inter * m["sub_sq"]) / (S * R) ** 2 + residual / (S * R))
    return dict(speaker=speaker, model=model, stratum_model=inter, residual=residual, var=var)


def stratified(u: np.ndarray, fold: np.ndarray, strata) -> tuple[float, float, dict]:
    """(variance, Satterthwaite df, components) of the mean of a speaker × repeat table of pseudo-values
    (`harness.speakers.Pseudo.u`, `.fold`, R ≥ 2, K-fold cells), each speaker's stratum given."""
    m = _mean_squares(u, fold, np.asarray(strata))
    got = _solve(m)
    denom = 0.0
    for key in ("v", "w", "b", "s"):
        value, dof = m[key], m[f"df_{key}"]
        if value <= 0 or dof <= 0:
            continue
        h = 1e-6 * value
        up, down = (_solve({**m, key: value + d})["var"] for d in (h, -h))
        denom += ((up - down) / (2 * h) * value) ** 2 / dof
    S, R = m["S"], m["R"]
    df = max(1.0, min(got["var"] ** 2 / denom, S * R)) if denom > 0 and got["var"] > 0 else max(1.0, S - 1.0)
    return got["var"], float(df), got


# --- constructed tables: both ANOVAs against the spread they should state ------------------------------------

DESIGNS = ((12, 12, 4), (5, 5, 5), (6, 5, 4))  # men, women, folds: 24 in 4 (3 + 3 a cell), 10 in 5 (1 + 1), 11 in 4
MIXES = ((0.04, 0.06, 0.0, 0.08), (0.04, 0.06, 0.06, 0.08), (0.04, 0.03, 0.08, 0.06), (0.0, 0.06, 0.06, 0.08))


def _table(rng, men: int, women: int, k: int, sd_s: float, sd_m: float, sd_i: float, sd_e: float, gap: float = 0.03):
    """A speaker × repeat table (2 repeats) of u = a_speaker + gap·man + m_cell + i_(cell, gender) + e, each
    repeat's folds dealt by the harness's own deal (`cv_folds`, gender-balanced)."""
    from harness.train.splits import cv_folds

    male = np.array([True] * men + [False] * women)
    names = [f"c:{i:02d}" for i in range(len(male))]
    gender = {n: "m" if m else "f" for n, m in zip(names, male)}
    S = len(male)
    a = rng.normal(0, sd_s, S) + gap * male
    fold, u = np.zeros((S, 2), int), np.zeros((S, 2))
    for r in range(2):
        cell = {n: j for j, f in enumerate(cv_folds(names, k, int(rng.integers(2**31)), gender)) for n in f}
        fold[:, r] = [cell[n] for n in names]
        m, i = rng.normal(0, sd_m, k), rng.normal(0, sd_i, (k, 2))
        u[:, r] = a + m[fold[:, r]] + i[fold[:, r], male.astype(int)] + rng.normal(0, sd_e, S)
    return u, fold, np.where(male, "c|m", "c|f")


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from harness import speakers

    ap = argparse.ArgumentParser(description="the report's ANOVA and the stratified one on constructed tables")
    ap.add_argument("--tables", type=int, default=3000, help="tables per design and mix (default 3000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"{'men, women, folds':<18} {'sd speaker, model, model x gender, residual':<44} "
          f"{'std/SE report':>13} {'std/SE strata':>13}")
    for design in DESIGNS:
        for mix in MIXES:
            est, report, strata = [], [], []
            for _ in range(args.tables):
                u, fold, groups = _table(rng, *design, *mix)
                p = speakers.Pseudo(theta=u.mean(axis=0), u=u, fold=fold, speakers=tuple(range(len(u))),
                                    repeats=(0, 1))
                est.append(u.mean())
                report.append(speakers.components(p).var())
                strata.append(stratified(u, fold, groups)[0])
            sd = float(np.std(est))
            print(f"{str(design):<18} {str(mix):<44} {sd / np.sqrt(np.mean(report)):>13.3f} "
                  f"{sd / np.sqrt(np.mean(strata)):>13.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
