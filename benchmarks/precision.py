"""Does speaker-grouped cross-validation buy precision? Measured, not assumed.

Two rows, paired on the same splits: SmallCNN plain ("plain") and SmallCNN with
`class_weight_loss` ("cw"); the effect is Δ = cw − plain in test macro-F1. Two designs
spend the same number R of training runs per row, with the same set sizes (8 actors:
test 2, validation 1, train 5):

  A  random : R actor-disjoint random splits (split "actor", train_ratio 0.625,
              val_ratio 0.125), one seed each.
  B  cv     : R/K repeats of K-fold speaker-grouped CV, K = 4 (cv_folds 4, val_ratio
              0.125, folds 0..3; the harness deals the actors into gender-balanced folds
              per seed and draws the validation actor from the other folds).

Each whole design is replicated M times with seeds no other replication or design uses.
Per replication: the Δ estimate (mean of the R paired differences d), the plain SE
s/√R and the Nadeau–Bengio corrected SE √(corrected_var(d, n_test/n_train))
(`harness.stats.corrected_var`, n_test/n_train the clip ratio of the runs: 2/5).

Figures (all from this one run):
  (a) precision: std across replications of the Δ estimate, cv / random; goal <= 0.7.
  (b) calibration: empirical std of Δ across replications / RMS of the SE the report would
      state, corrected and plain, for both designs; goal: corrected, cv design, in
      [0.7, 1.4] (1 = the stated SE is right; above 1 it is too small, below too large).
  Beside them: each design's mean Δ (the effect size), percentile bootstrap intervals
  over resampled replications and the exact F interval of the std ratio (how noisy a
  figure from M replications is), and the correlation term each design implies.

Each training run is `harness.train.run.fit` + `score_test` (no MLflow) on CPU with ONE
torch thread per worker process (the numbers depend on the thread count, so it is fixed);
`--workers` processes (default: min(2, usable cores)) share the runs. Same flags and seed
-> the same numbers, whatever the worker count or the machine's load.

Defaults M = 12, R = 8, 4 epochs: 384 training runs, about 20 minutes on a shared 2-core machine
(one run took 3.5-6.6 s on one thread there); --quick is a smoke run of about a minute.

Real audio when RAVDESS_ROOT is set (actors 01-08), else the synthetic corpus. Features
are cached in a temporary HARNESS_CACHE deleted at the end.

    RAVDESS_ROOT=/path/to/ravdess python benchmarks/precision.py [--check] [--replications M]
        [--runs R] [--epochs E] [--workers W] [--seed S] [--quick]

Exit code 0 (a measurement), or with --check 1 when a goal is missed.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):  # the repo (harness) and this folder (pipeline helpers)
    if p not in sys.path:
        sys.path.insert(0, p)

from common import Ratio, corpus_root, load_average, machine_lines, print_summary, scratch  # noqa: E402

K = 4  # folds of design B
TRAIN_RATIO_A, VAL_RATIO = 0.625, 0.125  # 8 actors: train 5, val 1, test 2 in both designs
PRECISION_GOAL = 0.7  # std(Δ) cv / std(Δ) random
CALIBRATION_BAND = (0.7, 1.4)  # std(Δ) / RMS(corrected SE), cv design
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
DESIGNS = ("random", "cv")

DEFAULTS = {"replications": 12, "runs": 8, "epochs": 4}
QUICK = {"replications": 3, "runs": 4, "epochs": 1}


@dataclass(frozen=True)
class Band:
    """A figure whose goal is an interval (the Ratio of pipeline.py has one-sided goals)."""
    name: str
    value: float
    low: float
    high: float

    @property
    def ok(self) -> bool:
        return self.low <= self.value <= self.high

    def line(self) -> str:
        return (f"  {self.name:<46} {self.value:>8.4f}   goal in [{self.low:g}, {self.high:g}] "
                f"{'PASS' if self.ok else 'MISS'}")


@dataclass(frozen=True)
class Task:
    """One split (a seed, and a fold for cv) on which both rows train."""
    design: str  # random | cv
    rep: int  # replication 0..M-1
    index: int  # run 0..R-1 within the replication
    seed: int
    fold: int | None

    @property
    def key(self) -> tuple[str, int, int]:
        return self.design, self.rep, self.index


def seeds_of(design: str, rep: int, runs: int, base: int) -> list[int]:
    """Seeds of one replication of one design, used by nobody else: random uses the even
    numbers base + 2i (R per replication), cv the odd ones base + 2i + 1 (R/K per replication)."""
    per = runs if design == "random" else runs // K
    odd = 0 if design == "random" else 1
    return [base + 2 * (rep * per + j) + odd for j in range(per)]


def plan(replications: int, runs: int, base: int) -> list[Task]:
    tasks = []
    for m in range(replications):
        for design in DESIGNS:
            seeds = seeds_of(design, m, runs, base)
            if design == "random":
                tasks += [Task(design, m, i, s, None) for i, s in enumerate(seeds)]
            else:
                tasks += [Task(design, m, j * K + f, s, f) for j, s in enumerate(seeds) for f in range(K)]
    return tasks


# --- one split, both rows (runs in a worker process) --------------------------------------

_BASE = None  # the plain row's config, set in each worker


def _init_worker(base_cfg) -> None:
    global _BASE
    import torch

    torch.set_num_threads(1)  # fixed: the numbers depend on it; 2 threads stall on a loaded 2-core machine
    _BASE = base_cfg


def run_task(task: Task) -> dict:
    from harness.train.run import fit, prepare, resolve_device, score_test

    if task.design == "random":
        cfg = _BASE.replace(split="actor", train_ratio=TRAIN_RATIO_A, val_ratio=VAL_RATIO, seed=task.seed)
    else:
        cfg = _BASE.replace(split="actor", cv_folds=K, fold=task.fold, val_ratio=VAL_RATIO, seed=task.seed)
    t0 = time.perf_counter()
    data = prepare(cfg)  # warm cache: a stat per file and one np.load
    device = resolve_device("cpu")
    f1 = {}
    for row, cw in (("plain", False), ("cw", True)):
        res = fit(cfg.replace(class_weight_loss=cw), data, device=device)
        f1[row] = score_test(res.model, data, res.norm, device)["f1_macro"]
    s = data.split
    return {"key": task.key, "design": task.design, "rep": task.rep, "index": task.index, "plain": f1["plain"], "cw": f1["cw"], "n_train": len(s.train), "n_val": len(s.val),
            "n_test": len(s.test), "sizes": (len(s.train_speakers), len(s.val_speakers), len(s.test_speakers)),
            "test_actors": s.test_speakers, "seconds": time.perf_counter() - t0}


# --- statistics ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Replication:
    design: str
    rep: int
    d: tuple[float, ...]  # the R paired differences cw − plain
    ratio: float  # n_test / n_train (clips), mean over the runs

    @property
    def delta(self) -> float:
        return float(sum(self.d) / len(self.d))

    @property
    def se_plain(self) -> float:
        import numpy as np

        return float(np.std(self.d, ddof=1) / math.sqrt(len(self.d)))

    @property
    def se_corrected(self) -> float:
        from harness.stats import corrected_var

        return math.sqrt(corrected_var(self.d, self.ratio))

    @property
    def var_runs(self) -> float:
        import numpy as np

        return float(np.var(self.d, ddof=1))


def design_figures(reps: list[Replication]):
    """Per design: std of Δ̂ across replications, RMS of each SE, the calibrations, mean Δ."""
    import numpy as np

    delta = np.array([r.delta for r in reps])
    se_c = np.array([r.se_corrected for r in reps])
    se_p = np.array([r.se_plain for r in reps])
    std = float(delta.std(ddof=1))
    rms_c, rms_p = float(np.sqrt(np.mean(se_c ** 2))), float(np.sqrt(np.mean(se_p ** 2)))
    mean_s2 = float(np.mean([r.var_runs for r in reps]))
    j = len(reps[0].d)
    # Equicorrelated runs: Var(Δ̂) = E[s²] (1/J + c) with c = ρ/(1−ρ); Nadeau–Bengio set c = n_test/n_train.
    implied_c = std ** 2 / mean_s2 - 1.0 / j if mean_s2 > 0 else math.nan
    return {"std": std, "mean": float(delta.mean()), "rms_c": rms_c, "rms_p": rms_p,
            "cal_c": std / rms_c if rms_c > 0 else math.nan, "cal_p": std / rms_p if rms_p > 0 else math.nan,
            "mean_s": math.sqrt(mean_s2), "implied_c": implied_c, "ratio": float(np.mean([r.ratio for r in reps]))}


def bootstrap(reps: dict[str, list[Replication]]) -> dict[str, tuple[float, float]]:
    """95% percentile intervals over replications resampled with replacement (each design on its
    own: the designs' replications are independent)."""
    import numpy as np

    rng = np.random.default_rng(BOOTSTRAP_SEED)
    m = len(reps["random"])
    arrays = {d: (np.array([r.delta for r in reps[d]]), np.array([r.se_corrected for r in reps[d]]),
                  np.array([r.se_plain for r in reps[d]])) for d in DESIGNS}
    draws = {d: rng.integers(0, m, size=(BOOTSTRAP_RESAMPLES, m)) for d in DESIGNS}
    # A resample of one replication drawn M times has no spread: no figure, dropped (rare unless M is tiny).
    keep = np.logical_and.reduce([(draws[d] != draws[d][:, :1]).any(axis=1) for d in DESIGNS])
    draws = {d: v[keep] for d, v in draws.items()}
    std = {d: arrays[d][0][draws[d]].std(axis=1, ddof=1) for d in DESIGNS}
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        out["std_ratio"] = std["cv"] / std["random"]
        for d in DESIGNS:
            out[f"cal_c_{d}"] = std[d] / np.sqrt((arrays[d][1][draws[d]] ** 2).mean(axis=1))
            out[f"cal_p_{d}"] = std[d] / np.sqrt((arrays[d][2][draws[d]] ** 2).mean(axis=1))
    return {k: tuple(float(q) for q in np.nanpercentile(v[np.isfinite(v)], [2.5, 97.5])) if np.isfinite(v).any()
            else (math.nan, math.nan) for k, v in out.items()}


def f_interval(std_ratio: float, m: int, level: float = 0.95) -> tuple[float, float]:
    """Exact interval of σ_cv / σ_random for normal Δ̂ from M replications each (F test of two variances)."""
    from scipy import stats

    lo_q, hi_q = stats.f.ppf([(1 + level) / 2, (1 - level) / 2], m - 1, m - 1)
    return std_ratio / math.sqrt(lo_q), std_ratio / math.sqrt(hi_q)


# --- main -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: {QUICK['replications']} replications of {QUICK['runs']} runs, "
                        f"{QUICK['epochs']} epoch (explicit flags win)")
    p.add_argument("--replications", type=int, default=None,
                   help=f"M, replications of each design (default {DEFAULTS['replications']})")
    p.add_argument("--runs", type=int, default=None,
                   help=f"R, training runs per row per replication, a multiple of {K} (default {DEFAULTS['runs']})")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs per training run (default {DEFAULTS['epochs']})")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes, 1 torch thread each (default: min(2, usable cores))")
    p.add_argument("--seed", type=int, default=0, help="base of every seed used (default 0)")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else DEFAULTS
    for k, v in preset.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.runs < K or args.runs % K:
        p.error(f"--runs must be a positive multiple of {K} (R/K repeats of {K}-fold CV), got {args.runs}")
    if args.replications < 2:
        p.error(f"--replications must be >= 2 (a std across replications), got {args.replications}")
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    args.workers = args.workers or min(2, usable)
    if args.workers < 1:
        p.error(f"--workers must be >= 1, got {args.workers}")
    with scratch("harness-bench-precision-") as tmp:  # spawned workers inherit HARNESS_CACHE
        return run(args, tmp)


def run(args: argparse.Namespace, tmp: Path) -> int:
    import multiprocessing as mp

    import numpy as np

    from harness.config import RunConfig
    from harness.train.run import prepare

    t_start = time.perf_counter()
    print("\n".join(machine_lines()))
    root, data_label = corpus_root(tmp / "synth-cache")
    print(f"data    : {data_label}")
    base = RunConfig(data_root=str(root), mode="sentiment", model="smallcnn", n_mels=32, epochs=args.epochs,
                     batch_size=32, device="cpu")
    corpus = prepare(base).corpus  # features computed once here, before any worker starts
    n_act = len(corpus.speakers)
    m, r = args.replications, args.runs
    tasks = plan(m, r, args.seed)
    print(f"setup   : {base.model}, {base.mode}, {base.n_mels} mels, batch {base.batch_size}, {base.epochs} epochs, "
          f"lr {base.lr}, cpu; rows plain vs class_weight_loss, Δ = cw − plain (test macro-F1)")
    print(f"design  : {n_act} actors; M = {m} replications x R = {r} runs per row per design; random = {r} "
          f"actor splits (train_ratio {TRAIN_RATIO_A}, val_ratio {VAL_RATIO}), cv = {r // K} x {K}-fold "
          f"(val_ratio {VAL_RATIO}); {len(tasks)} splits x 2 rows = {2 * len(tasks)} training runs")
    print(f"seeds   : random {args.seed}, {args.seed + 2}, ... {seeds_of('random', m - 1, r, args.seed)[-1]} (even); "
          f"cv {args.seed + 1}, {args.seed + 3}, ... {seeds_of('cv', m - 1, r, args.seed)[-1]} (odd)")
    print(f"workers : {args.workers} process(es) x 1 torch thread", flush=True)

    results: dict[tuple[str, int, int], dict] = {}
    t_train = time.perf_counter()
    per_rep = 2 * r  # tasks of one replication (both designs)
    reps: dict[str, list[Replication]] = {d: [] for d in DESIGNS}
    print(f"\n{'rep':>4}  {'design':<7} {'Δ':>8} {'SE plain':>9} {'SE corr':>8}  {'d (cw − plain) per run':<s}")

    def close_replication(k: int) -> None:
        for design in DESIGNS:
            rows = sorted((v for v in results.values() if v["rep"] == k and v["design"] == design),
                          key=lambda v: v["index"])
            d = tuple(v["cw"] - v["plain"] for v in rows)
            ratio = float(np.mean([v["n_test"] / v["n_train"] for v in rows]))
            rep = Replication(design, k, d, ratio)
            reps[design].append(rep)
            print(f"{k:>4}  {design:<7} {rep.delta:>+8.4f} {rep.se_plain:>9.4f} {rep.se_corrected:>8.4f}  "
                  f"[{' '.join(f'{x:+.2f}' for x in d)}]", flush=True)
        done = (k + 1) * per_rep
        el = time.perf_counter() - t_train
        print(f"      {done}/{len(tasks)} splits, {el:.0f} s, about {el / done * (len(tasks) - done):.0f} s left, "
              f"load {load_average()}", flush=True)

    def collect(stream) -> None:
        nxt = 0
        for res in stream:
            results[res["key"]] = res
            while nxt < m and all(t.key in results for t in tasks[nxt * per_rep:(nxt + 1) * per_rep]):
                close_replication(nxt)
                nxt += 1

    if args.workers == 1:
        _init_worker(base)
        collect(map(run_task, tasks))
    else:
        with mp.get_context("spawn").Pool(args.workers, initializer=_init_worker, initargs=(base,)) as pool:
            collect(pool.imap(run_task, tasks, chunksize=1))
    train_s = time.perf_counter() - t_train

    all_res = list(results.values())
    sizes = {d: sorted({v["sizes"] for v in all_res if v["design"] == d}) for d in DESIGNS}
    clips = {d: sorted({(v["n_train"], v["n_val"], v["n_test"]) for v in all_res if v["design"] == d})
             for d in DESIGNS}
    fig = {d: design_figures(reps[d]) for d in DESIGNS}
    boot = bootstrap(reps)
    std_ratio = fig["cv"]["std"] / fig["random"]["std"] if fig["random"]["std"] > 0 else math.nan
    f_lo, f_hi = f_interval(std_ratio, m) if math.isfinite(std_ratio) else (math.nan, math.nan)
    run_s = [v["seconds"] / 2 for v in all_res]
    same_gender = sum(1 for v in all_res if v["design"] == "random"
                       and len({int(a[-2:]) % 2 for a in v["test_actors"]}) == 1)
    n_random = sum(1 for v in all_res if v["design"] == "random")

    print(f"\nsets (actors train/val/test): random {sizes['random']}, cv {sizes['cv']}; "
          f"clips (train, val, test): random {clips['random']}, cv {clips['cv']}")
    if sizes["random"] != sizes["cv"]:
        print("  NOTE: the two designs' set sizes differ on this corpus: the comparison is not like for like")
    print(f"random splits whose 2 test actors share a gender: {same_gender}/{n_random} "
          f"(cv folds: always one man, one woman on 8 actors)")
    print(f"\n{'design':<7} {'mean Δ':>8} {'std Δ̂':>8} {'RMS SE corr':>12} {'RMS SE plain':>13} "
          f"{'std/SE corr':>12} {'std/SE plain':>13} {'RMS s':>7} {'implied c':>10}")
    for d in DESIGNS:
        f = fig[d]
        print(f"{d:<7} {f['mean']:>+8.4f} {f['std']:>8.4f} {f['rms_c']:>12.4f} {f['rms_p']:>13.4f} "
              f"{f['cal_c']:>12.3f} {f['cal_p']:>13.3f} {f['mean_s']:>7.4f} {f['implied_c']:>+10.3f}")
    print(f"  std Δ̂: std over the {m} replications of the mean of R = {r} paired differences; RMS s: the runs' "
          f"std within a replication;\n  implied c: Var(Δ̂) / E[s²] − 1/R, the term Nadeau–Bengio set to "
          f"n_test/n_train = {fig['cv']['ratio']:.3f} (0 = independent runs, < 0 = runs that cancel)")
    print(f"\n95% intervals, percentile bootstrap over replications ({BOOTSTRAP_RESAMPLES} resamples, seed "
          f"{BOOTSTRAP_SEED}):")
    print(f"  std ratio cv / random     {std_ratio:.3f}  [{boot['std_ratio'][0]:.3f}, {boot['std_ratio'][1]:.3f}]"
          f"  (exact F interval for normal Δ̂: [{f_lo:.3f}, {f_hi:.3f}])")
    for d in DESIGNS:
        for kind, key in (("corrected", "cal_c"), ("plain", "cal_p")):
            lo, hi = boot[f"{key}_{d}"]
            print(f"  {d:<6} std / RMS SE {kind:<9} {fig[d][key]:.3f}  [{lo:.3f}, {hi:.3f}]")

    total = time.perf_counter() - t_start
    ratios = [Ratio("(a) std of Δ̂, cv / random", std_ratio, PRECISION_GOAL),
              Band("(b) cv: std(Δ̂) / RMS corrected SE", fig["cv"]["cal_c"], *CALIBRATION_BAND)]
    notes = [f"(b) cv: std(Δ̂) / RMS plain SE {fig['cv']['cal_p']:.3f}; random: corrected {fig['random']['cal_c']:.3f}, "
             f"plain {fig['random']['cal_p']:.3f} (no goal)",
             f"mean Δ (cw − plain): random {fig['random']['mean']:+.4f}, cv {fig['cv']['mean']:+.4f}; "
             f"std ratio 95% bootstrap [{boot['std_ratio'][0]:.3f}, {boot['std_ratio'][1]:.3f}], "
             f"F [{f_lo:.3f}, {f_hi:.3f}]",
             f"M = {m} replications x R = {r} runs x 2 rows x 2 designs = {4 * m * r} training runs of {args.epochs} "
             f"epoch(s); one run (median) {float(np.median(run_s)):.2f} s on 1 thread",
             f"data: {data_label}; {args.workers} worker(s); wall {total:.0f} s (training {train_s:.0f} s)"]
    print_summary(ratios, notes)
    return 1 if args.check and not all(x.ok for x in ratios) else 0


if __name__ == "__main__":
    sys.exit(main())
