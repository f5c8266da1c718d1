"""Can any interval computed inside one corpus cover a real effect on new speaker populations, under
speaker-grouped K-fold CV? Measured on constructed tables, where every variance component is known.

Why this exists: on fresh synthetic populations (docs/statistics.md, calibration) the speaker method covers
the A/A null (true Δ exactly 0) but under-covers a real effect, std(Δ̂)/SE 1.12-1.24. A real effect depends
on which speakers trained the fold models. This script says how large that term would have to be, why the
repeats of a CV design cannot see it, and what estimating it from inside one corpus would cost. Whether it is
what trained models miss is calibration.py's `ravdess24_probe` setting: on 100 populations (2026-12-03) it
found no such term and the CV design's fold-model part 14% low, so this is a hypothesis it did not confirm.

The model (additive; each speaker plays two roles). A population is S speakers. Speaker j moves a
contrast's Δ by s_j when it is tested (σ²_s) and by b_j / n_train in every model it helps train (σ²_b).
A fold model adds its own noise m (initialisation, batch order: σ²_m) and each speaker × model a residual
e (σ²_e). A fold cell's training set is the complement of its test fold, so its training part is
(B − B_fold) / n_train, with B = Σ b_j: within one repeat the folds' training parts average to exactly
B / S, the same number in every repeat (exactly with equal folds and speakers weighted equally; the report
pools clips, so there it holds about). So:

  Var(Δ̂) = σ²_s/S + σ²_b/S + σ²_m/(R·K) + σ²_e/(S·R)

and σ²_b/S (the *population term*) does not shrink with repeats, like the speakers' floor, but no repeat,
fold or speaker of the corpus shows it: its only trace is the spread of (B − B_fold)/n_train across a
repeat's cells, whose expected variance across the K cells is K/(K−1)² · σ²_b/S (0.44× the term for K = 4),
inside the cells' σ²_m.

Part A simulates the report's estimators on such tables (`harness.speakers.components`, the report's
`--ci speaker`; the same with Nadeau & Bengio's σ²_m · n_test/n_train; `harness.stats.corrected_var` on the
fold-level Δ, the report's default) at variance mixes anchored to the calibration runs (stated variance
79-95% training noise at 2 repeats; the population term 0, 20% or 35% of Var(Δ̂), from std/SE 1.12-1.24).
Part B says, analytically, how many fold models a design would need to see the population term with
4 effective degrees of freedom (the term's variance component; for 2-fold CV, the whole Var(Δ̂) it is part of): repeats that re-use one partition (the term persists across seeds in each
cell), and repeated 2-fold CV (Dietterich 1998; Alpaydın 1999), where the two halves' training sets are
disjoint and the term appears at full size in each repeat.

    python benchmarks/calibration/population_term.py [--draws N] [--seed S]

No training, a few seconds; exit 0 (a measurement: there is no goal to check).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness import speakers  # noqa: E402
from harness.stats import corrected_var  # noqa: E402

S, K, R = 24, 4, 2
N_TEST, N_TRAIN = S // K, S - S // K


def draw(rng: np.random.Generator, sd_s: float, sd_b: float, sd_m: float, sd_e: float,
         repeats: int = R) -> tuple[speakers.Pseudo, float]:
    """One population's speaker × repeat table of a contrast's pseudo-values, folds dealt anew per repeat,
    and its population term B/S (the Δ of models trained on these speakers, on new speakers)."""
    s, b = rng.normal(0, sd_s, S), rng.normal(0, sd_b, S)
    fold, u = np.zeros((S, repeats), int), np.zeros((S, repeats))
    for r in range(repeats):
        fold[rng.permutation(S), r] = np.arange(S) % K
        train = np.array([(b.sum() - b[fold[:, r] == k].sum()) / N_TRAIN for k in range(K)])
        u[:, r] = s + (train + rng.normal(0, sd_m, K))[fold[:, r]] + rng.normal(0, sd_e, S)
    return speakers.Pseudo(theta=u.mean(axis=0), u=u, fold=fold, speakers=tuple(range(S)),
                           repeats=tuple(range(repeats))), float(b.sum() / S)


def stated(p: speakers.Pseudo) -> dict[str, tuple[float, float]]:
    """(SE, df) per estimator."""
    out = {}
    for name, ratio in (("speaker", 0.0), ("speaker_nb", N_TEST / N_TRAIN)):
        c = speakers.components(p, ratio)
        out[name] = (math.sqrt(c.var()), c.df())
    cells = np.array([p.u[p.fold[:, r] == k, r].mean() for r in range(p.u.shape[1]) for k in range(K)])
    out["corrected"] = (math.sqrt(corrected_var(cells, N_TEST / N_TRAIN)), len(cells) - 1.0)
    return out


def mix(share_model: float, share_pop: float, total: float = 1e-3) -> tuple[float, float, float, float]:
    """sds giving Var(Δ̂) = `total`, of which the population term is `share_pop` and, of the rest (what the
    speaker method states), the fold models `share_model`, the speakers and the residual splitting the remainder."""
    visible = total * (1 - share_pop)
    model, other = visible * share_model, visible * (1 - share_model)
    sd_m = math.sqrt(model * R * K)
    sd_s = math.sqrt(other / 2 * S)
    sd_e = math.sqrt(other / 2 * S * R)
    sd_b = math.sqrt(total * share_pop * S)
    return sd_s, sd_b, sd_m, sd_e


def part_a(draws: int, seed: int) -> None:
    from scipy import stats

    print(f"Part A: {S} speakers, {K}-fold speaker CV, {R} repeats; {draws} constructed populations per mix; "
          "true Δ = 0 in every table")
    print(f"{'fold models':>11} {'population':>10} | {'estimator':<10} {'std/SE':>6} {'coverage':>8}  "
          f"{'1/sqrt(1-share)':>15} {'coverage of B/S':>15}")
    for share_model in (0.79, 0.95):
        for share_pop in (0.0, 0.20, 0.35):
            rng = np.random.default_rng(seed)
            sds = mix(share_model, share_pop)
            est, cond, got = [], [], {}
            for _ in range(draws):
                p, pop = draw(rng, *sds)
                est.append(p.theta.mean())
                cond.append(pop)
                for name, (se, df) in stated(p).items():
                    got.setdefault(name, []).append((se, df))
            est, cond = np.array(est), np.array(cond)
            for name, v in got.items():
                se, df = np.array(v).T
                ratio = est.std(ddof=1) / math.sqrt(np.mean(se ** 2))
                cover = np.mean(np.abs(est) <= stats.t.ppf(0.975, df) * se)  # of the population mean, 0
                half = stats.t.ppf(0.975, df) * se
                extra = (f"{1 / math.sqrt(1 - share_pop):>15.2f} {np.mean(np.abs(est - cond) <= half):>15.3f}"
                         if name == "speaker" else "")
                print(f"{share_model:>11.0%} {share_pop:>10.0%} | {name:<10} {ratio:>6.2f} {cover:>8.3f}  {extra}")
    print("(fold models: their share of what the speaker method states; population: the population term's share "
          "of Var(Δ̂); coverage of B/S: of the Δ for models trained on this population's speakers, tested on new "
          "ones. std/SE 1 and coverage 0.95 are right.)\n")


def df_component(c: float, w: float, df_between: int, df_within: int, reps: int) -> float:
    """Effective df, 2·c²/Var(ĉ), of the one-way ANOVA estimate ĉ = (MS_between − MS_within)/reps of a
    group variance c against a within-group variance w, groups of `reps` (Searle, Casella & McCulloch 1992)."""
    var = 2 / reps ** 2 * ((w + reps * c) ** 2 / df_between + w ** 2 / df_within)
    return 2 * c * c / var


def df_two_fold(c: float, m: float, repeats: int) -> float:
    """Effective df of v = mean(D_r²) − (1 − 1/R)·var(Δ̄_r), the moment estimate of Var(Δ̂) in R repeats of
    2-fold CV: D_r = half the difference of a repeat's two fold Δ (E D² = c + m), Δ̄_r their mean (its spread
    across repeats is m: the speakers' and the population's parts are the same in every repeat); c the parts
    that do not shrink with repeats (speakers, population), m one repeat's model noise."""
    target = c + m / repeats
    var = 2 * (c + m) ** 2 / repeats + 2 * ((1 - 1 / repeats) * m) ** 2 / (repeats - 1)
    return 2 * target ** 2 / var


def part_b() -> None:
    print(f"Part B: what estimating the population term from inside one corpus would cost ({S} speakers)")
    trace = K / (K - 1) ** 2
    print(f"  its trace, the expected variance across a repeat's fold cells: {trace:.2f} × the term (K = {K}); "
          "the cells' own noise is σ²_m")
    print(f"{'population':>10} {'trace/σ²_m':>10} | {'re-used partitions: models for df 4':>36} | "
          f"{'2-fold CV: models for df 4 (df at 10 repeats)':>46}")
    for share_model in (0.79, 0.95):
        for share_pop in (0.20, 0.35):
            total = 1e-3
            visible = total * (1 - share_pop)
            sigma_m = visible * share_model * R * K  # σ²_m of one fold model
            pop = total * share_pop
            x = trace * pop / sigma_m
            # re-used partitions: the cells of P partitions × K folds as groups (K − 1 df each partition: its
            # cells' training parts sum to a constant), Rs seeds each; the cheapest P·K·Rs
            best = min((P * K * rs for P in range(1, 400) for rs in range(2, 200)
                        if df_component(trace * pop, sigma_m, P * (K - 1), P * K * (rs - 1), rs) >= 4),
                       default=None)
            # 2-fold: two models per repeat, each trained on S/2 speakers and tested on the other S/2; the
            # speakers' floor and the population term persist (c), one repeat's model noise is σ²_m/2
            other = visible * (1 - share_model) / 2  # the speakers' floor; the residual is as large, at R repeats
            c = pop + other
            m = sigma_m / 2 + other * R  # one repeat's model noise and residual
            two = next((2 * r for r in range(2, 100000) if df_two_fold(c, m, r) >= 4), None)
            print(f"{share_pop:>10.0%} {x:>10.3f} | {best if best else '> 300,000':>36} | "
                  f"{two:>30} ({df_two_fold(c, m, 10):.1f})")
    print(f"  (against the design's {R * K} fold models per row. Lower bounds: re-used partitions leave out that a "
          "cell's test speakers persist with it too and the residual's share of a cell; 2-fold CV treats its repeats "
          "as independent, though they share one population's speakers)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=2000, help="constructed populations per mix (default 2000)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    part_a(args.draws, args.seed)
    part_b()
    return 0


if __name__ == "__main__":
    sys.exit(main())
