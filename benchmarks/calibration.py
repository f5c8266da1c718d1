"""Are the report's intervals calibrated for new speakers? Measured where the truth is known.

Each replication draws a new population of speakers: a synthetic corpus in the RAVDESS layout
with a corpus seed no other replication uses (each speaker's base pitch, formants, rate,
loudness, tilt and expressiveness are drawn anew). On it runs the design the report judges:
two rows, SmallCNN plain ("plain") and SmallCNN with `class_weight_loss` ("cw"), by
speaker-grouped K-fold cross-validation (K = 4) over R = 2 repeats (seeds), paired on seed and
fold; Δ = cw − plain in test macro-F1. Three estimators each state Δ̂ with a standard error
and a 95% interval:

  speaker    `harness.speakers` (the report's default for CV suites): Δ of the repeats' pooled
             macro-F1 (every clip scored once per repeat), the variance split into speakers,
             fold models and a residual from each speaker's jackknife pseudo-value per repeat;
             Student t with Satterthwaite's df.
  corrected  Nadeau–Bengio corrected resampled t over the R·K fold-level differences
             (s² · (1/J + n_test/n_train), t with J − 1 df): the report's default before.
  plain      the plain t over the same fold-level differences, as if independent.

The population Δ of an estimator is the mean of its Δ̂ over all replications (each replication is
judged against the mean of the others, so it never covers itself). Figures, per estimator:
std(Δ̂) / RMS(stated SE) with a percentile-bootstrap interval over replications (1 = the stated
SE is right; > 1 too small), and the coverage of the stated 95% interval with its Wilson 95%
interval. Goal for the default (speaker): std/SE in [0.8, 1.25] and coverage in [0.92, 0.98].

Cheap on purpose, and said so: 32 mels with hop 1024 / n_fft 2048 (32 × 33 frames at 16 kHz),
batch 32, lr 0.002, `--epochs` (default 3) epochs, one torch thread per worker process. The
estimators need a realistic variance structure (speakers that differ, fold models that differ,
paired rows), not a strong classifier; a replication takes about 1-2 CPU-minutes.

Each replication is one task in a worker process: synthesise the corpus (24 actors, 1440 clips),
compute its features, train the 2 rows × R repeats × K folds, score, delete the corpus. The same
flags give the same numbers whatever the worker count or the machine's load.

    python benchmarks/calibration.py [--replications M] [--actors N] [--epochs E] [--workers W]
        [--seed S] [--quick] [--check]

Exit code 0 (a measurement), or with --check 1 when a goal is missed.
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):  # the repo (harness) and this folder (pipeline helpers)
    if p not in sys.path:
        sys.path.insert(0, p)

from pipeline import load_average, machine_lines, print_summary, scratch  # noqa: E402
from precision import Band  # noqa: E402

K = 4
REPEATS = 2
RATIO_BAND = (0.8, 1.25)  # std(Δ̂) / RMS(SE) of the default estimator
COVERAGE_BAND = (0.92, 0.98)  # of its stated 95% interval
ESTIMATORS = ("speaker", "corrected", "plain")
BOOTSTRAP_RESAMPLES = 9999
DEFAULTS = {"replications": 36, "actors": 24, "epochs": 3}
QUICK = {"replications": 4, "actors": 12, "epochs": 1}


# --- one replication (runs in a worker process) -------------------------------------------

_ARGS: dict = {}


def _init_worker(args: dict) -> None:
    import torch

    torch.set_num_threads(1)  # fixed: the numbers depend on it
    _ARGS.update(args)


def run_replication(rep: int) -> dict:
    """A new speaker population, the CV design on it, and what each estimator states."""
    import os

    import numpy as np
    import pandas as pd

    from harness.config import RunConfig
    from harness.corpora.base import SENTIMENTS
    from harness.train.run import fit, prepare, resolve_device, score_test
    from harness.train.synth import generate_corpus

    a = _ARGS
    t0 = time.perf_counter()
    root = Path(a["tmp"]) / f"corpus-{rep}"
    cache = Path(a["tmp"]) / f"cache-{rep}"
    os.environ["HARNESS_CACHE"] = str(cache)  # read at each prepare(): this population's features alone
    generate_corpus(root, n_actors=a["actors"], seed=a["seed"] + rep)
    base = RunConfig(data_root=str(root), mode="sentiment", model="smallcnn", n_mels=32, n_fft=2048,
                     hop_length=1024, epochs=a["epochs"], batch_size=32, lr=0.002, device="cpu", cv_folds=K)
    device = resolve_device("cpu")
    classes = SENTIMENTS
    clips, folds = {"plain": [], "cw": []}, []
    ratio = []
    for r in range(REPEATS):
        seed = 1000 * rep + r  # the repeat's seed: fold assignment, initialisation, batch order
        for f in range(K):
            cfg = base.replace(seed=seed, fold=f)
            data = prepare(cfg)
            test = [data.corpus.clips[i] for i in data.split.test]
            ratio.append(len(data.split.test) / len(data.split.train))
            f1 = {}
            for row, cw in (("plain", False), ("cw", True)):
                res = fit(cfg.replace(class_weight_loss=cw), data, device=device)
                out = score_test(res.model, data, res.norm, device)
                f1[row] = out["f1_macro"]
                clips[row].append(pd.DataFrame({"repeat": r, "fold": f, "speaker": [c.actor for c in test],
                                                "clip": [c.relpath for c in test],
                                                "true": [classes[int(t)] for t in data.labels[data.split.test]],
                                                "pred": [classes[int(p)] for p in out["pred"]]}))
            folds.append(f1["cw"] - f1["plain"])
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)  # this population's features: never read again
    preds = pd.concat([pd.concat(clips[row], ignore_index=True).assign(row=row) for row in clips], ignore_index=True)
    if a.get("save"):
        preds.to_csv(Path(a["save"]) / f"rep-{rep:03d}-predictions.csv.gz", index=False)
        pd.DataFrame({"delta": folds, "ratio": ratio}).to_csv(Path(a["save"]) / f"rep-{rep:03d}-folds.csv", index=False)
    return estimate(rep, preds, np.asarray(folds), float(np.mean(ratio)), time.perf_counter() - t0)


def estimate(rep: int, preds, d, rr: float, seconds: float) -> dict:
    """What each estimator states for one replication: (Δ̂, SE, df)."""

    from harness import speakers
    from harness.stats import corrected_var
    from harness.corpora.base import SENTIMENTS

    classes = SENTIMENTS
    mine, ref = preds[preds["row"] == "cw"], preds[preds["row"] == "plain"]
    pv = speakers.pseudo_values(mine, classes, reference=ref)
    comps = speakers.components(pv, rr)
    j = len(d)
    return {"rep": rep, "seconds": seconds,
            "speaker": (float(pv.theta.mean()), math.sqrt(comps.var()), comps.df()),
            "corrected": (float(d.mean()), math.sqrt(corrected_var(d, rr)), j - 1.0),
            "plain": (float(d.mean()), float(d.std(ddof=1) / math.sqrt(j)), j - 1.0),
            "share": comps.speaker_share, "floor": math.sqrt(comps.parts()[0]), "ratio": rr,
            # the repeats' spread against what the folds and speakers predict for it (1: no repeat-level effect)
            "repeat_spread": (float(pv.theta.var(ddof=1)), comps.parts()[1] * comps.n_repeats),
            "components": (comps.speaker, comps.model, comps.residual)}


# --- statistics over replications -----------------------------------------------------------

def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy import stats

    z = float(stats.norm.ppf(0.5 + level / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@dataclass(frozen=True)
class Figures:
    mean: float
    std: float
    rms_se: float
    ratio: float
    ratio_ci: tuple[float, float]
    covered: int
    n: int

    @property
    def coverage(self) -> float:
        return self.covered / self.n


def figures(results: list[dict], name: str) -> Figures:
    import numpy as np
    from scipy import stats

    est = np.array([r[name][0] for r in results])
    se = np.array([r[name][1] for r in results])
    df = np.array([r[name][2] for r in results])
    m = len(est)
    loo = (est.sum() - est) / (m - 1)  # the population Δ each replication is judged against
    half = stats.t.ppf(0.975, df) * se
    covered = int(np.sum(np.abs(est - loo) <= half))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, m, size=(BOOTSTRAP_RESAMPLES, m))
    boot = est[idx].std(axis=1, ddof=1) / np.sqrt((se[idx] ** 2).mean(axis=1))
    ratio = float(est.std(ddof=1) / math.sqrt(float((se ** 2).mean())))
    return Figures(mean=float(est.mean()), std=float(est.std(ddof=1)), rms_se=float(math.sqrt((se ** 2).mean())),
                   ratio=ratio, ratio_ci=(float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))),
                   covered=covered, n=m)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replications", type=int, help=f"speaker populations (default {DEFAULTS['replications']})")
    ap.add_argument("--actors", type=int, help=f"speakers per population (default {DEFAULTS['actors']})")
    ap.add_argument("--epochs", type=int, help=f"epochs per training run (default {DEFAULTS['epochs']})")
    ap.add_argument("--workers", type=int, default=2, help="worker processes, 1 torch thread each (default 2)")
    ap.add_argument("--seed", type=int, default=5000, help="corpus seed of the first population (default 5000)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    ap.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    ap.add_argument("--save", type=Path, metavar="DIR", help="keep each replication's test predictions in DIR")
    ap.add_argument("--load", type=Path, metavar="DIR", help="no training: the figures from predictions --save kept")
    args = ap.parse_args(argv)
    for k, v in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.replications < 3 or args.actors < 2 * K or args.epochs < 1 or args.workers < 1:
        ap.error(f"need --replications >= 3, --actors >= {2 * K}, --epochs >= 1, --workers >= 1")
    with scratch("harness-calibration-") as tmp:
        return run(args, tmp)


def run(args: argparse.Namespace, tmp: Path) -> int:
    import multiprocessing as mp

    import numpy as np

    t_start = time.perf_counter()
    print("\n".join(machine_lines()))
    print(f"design  : {args.replications} speaker populations (corpus seeds {args.seed}..{args.seed + args.replications - 1})"
          f" x {args.actors} synthetic actors; rows plain vs class_weight_loss (SmallCNN, 32 mels x 33 frames, "
          f"batch 32, lr 0.002, {args.epochs} epoch(s)); {REPEATS} x {K}-fold speaker CV; "
          f"{args.replications * REPEATS * K * 2} training runs", flush=True)
    print(f"workers : {args.workers} process(es) x 1 torch thread\n")
    print(f"{'rep':>4} {'Δ speaker':>10} {'SE':>7} {'df':>5} {'Δ folds':>8} {'SE corr':>8} {'SE plain':>8} "
          f"{'speakers':>8} {'s':>6}")
    shared = {"tmp": str(tmp), "actors": args.actors, "epochs": args.epochs, "seed": args.seed,
              "save": str(args.save) if args.save else ""}
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    results = []

    def show(r: dict) -> None:
        results.append(r)
        s, c, p = r["speaker"], r["corrected"], r["plain"]
        print(f"{r['rep']:>4} {s[0]:>+10.4f} {s[1]:>7.4f} {s[2]:>5.1f} {c[0]:>+8.4f} {c[1]:>8.4f} {p[1]:>8.4f} "
              f"{r['share']:>8.0%} {r['seconds']:>6.0f}   load {load_average()}", flush=True)

    reps = list(range(args.replications))
    if args.load:
        import pandas as pd

        for f in sorted(args.load.glob("rep-*-predictions.csv.gz")):
            rep = int(f.name.split("-")[1])
            folds = pd.read_csv(args.load / f"rep-{rep:03d}-folds.csv")
            show(estimate(rep, pd.read_csv(f, dtype={"clip": str, "true": str, "pred": str, "speaker": str}),
                          folds["delta"].to_numpy(), float(folds["ratio"].mean()), math.nan))
    elif args.workers == 1:
        _init_worker(shared)
        for r in map(run_replication, reps):
            show(r)
    else:
        with mp.get_context("spawn").Pool(args.workers, initializer=_init_worker, initargs=(shared,)) as pool:
            for r in pool.imap_unordered(run_replication, reps):
                show(r)
    results.sort(key=lambda r: r["rep"])

    fig = {name: figures(results, name) for name in ESTIMATORS}
    print(f"\n{'estimator':<10} {'mean Δ̂':>8} {'std Δ̂':>8} {'RMS SE':>8} {'std/SE':>7} {'95% (bootstrap)':>17} "
          f"{'coverage':>9} {'95% (Wilson)':>15}")
    for name, f in fig.items():
        lo, hi = wilson(f.covered, f.n)
        print(f"{name:<10} {f.mean:>+8.4f} {f.std:>8.4f} {f.rms_se:>8.4f} {f.ratio:>7.3f} "
              f"  [{f.ratio_ci[0]:.3f}, {f.ratio_ci[1]:.3f}] {f.coverage:>9.3f}   [{lo:.3f}, {hi:.3f}]")
    comps = np.array([r["components"] for r in results])
    sd = np.sqrt(comps.mean(axis=0))
    print(f"\nspeaker estimator: mean components (as sd) speakers {sd[0]:.4f}, fold models {sd[1]:.4f}, residual "
          f"{sd[2]:.4f}; speakers' share of Var(Δ̂) {np.mean([r['share'] for r in results]):.0%} on average; "
          f"the floor (speakers alone) ±{1.96 * np.mean([r['floor'] for r in results]):.4f}")
    spread = np.array([r["repeat_spread"] for r in results])
    print(f"repeats: spread of the repeats' Δ / what fold models and speakers predict for it: "
          f"{spread[:, 0].mean() / spread[:, 1].mean():.2f} (1 = nothing shared by a repeat's folds beyond them)")
    print(f"corrected: n_test/n_train {np.mean([r['ratio'] for r in results]):.3f}")

    d = fig["speaker"]
    total = time.perf_counter() - t_start
    checks = [Band("speaker: std(Δ̂) / RMS(SE)", d.ratio, *RATIO_BAND),
              Band("speaker: coverage of the 95% interval", d.coverage, *COVERAGE_BAND)]
    notes = [f"{n}: std/SE {f.ratio:.3f} [{f.ratio_ci[0]:.3f}, {f.ratio_ci[1]:.3f}], coverage {f.coverage:.3f} "
             f"({f.covered}/{f.n}, Wilson [{wilson(f.covered, f.n)[0]:.3f}, {wilson(f.covered, f.n)[1]:.3f}])"
             for n, f in fig.items()]
    notes += [f"{len(results)} populations loaded from {args.load} (no training here)" if args.load else
              f"{args.replications} populations x {args.actors} actors, {args.epochs} epoch(s); one replication "
              f"(median) {float(np.median([r['seconds'] for r in results])):.0f} s on 1 thread; "
              f"{args.workers} worker(s); wall {total:.0f} s"]
    print_summary(checks, notes)
    return 1 if args.check and not all(c.ok for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
