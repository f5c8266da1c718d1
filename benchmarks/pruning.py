"""Does the pruner pay? The same study run twice, with and without its pruner.

The study file's profile (default: studies/focal_specaug_lr.yaml, quick) runs through
`harness.study.search.run_study` twice in this one process, with the same sampler seed and the
same number of trials, each into fresh temporary Optuna and MLflow sqlite stores: once
with the file's pruner, once with none. The feature cache is warm before either clock
starts. Reported: epochs trained (every trial's reported epochs), the best validation
macro-F1 and the wall time of each.

Ratio (epochs trained with the pruner) / (without), goal <= 0.6.

    python benchmarks/pruning.py [--check] [--n-trials 12] [--profile quick] [--file F]
    python benchmarks/pruning.py --quick     # 3 trials of SmallCNN, 2 epochs: a smoke run

The two runs see the same first trials only until the first prune: after it the TPE
sampler conditions on different histories, so the best values are two searches, not a pair.
Exit code 0 (a measurement), or with --check 1 when the goal is missed.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):  # the repo (harness) and this folder (pipeline helpers)
    if p not in sys.path:
        sys.path.insert(0, p)

from common import Ratio, load_average, machine_lines, print_summary  # noqa: E402

GOAL = 0.6


def timed_study(spec, n_trials: int, store: Path) -> dict:
    """One run_study into fresh stores under `store`: epochs trained, best value, states, wall seconds."""
    import optuna

    from harness.study.search import run_study

    store.mkdir(parents=True)
    storage = f"sqlite:///{store / 'optuna.db'}"
    cwd = os.getcwd()
    os.chdir(store)  # MLflow puts a sqlite store's artifacts under ./mlruns: keep them here
    try:
        t0 = time.perf_counter()
        out = run_study(spec, n_trials=n_trials, storage=storage, tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
        wall = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
    trials = optuna.load_study(study_name=spec.name, storage=storage).trials
    return {"epochs": sum(len(t.intermediate_values) for t in trials), "best": out.best_value, "wall": wall,
            "states": out.states}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when the goal is missed")
    p.add_argument("--file", default=str(HERE.parent / "studies" / "focal_specaug_lr.yaml"), help="study file")
    p.add_argument("--profile", default="quick", help="profile of the file (default: quick)")
    p.add_argument("--n-trials", type=int, default=12, dest="n_trials", help="trials per run (default 12)")
    p.add_argument("--data_root", default=None, help="RAVDESS root (default: the synthetic corpus)")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 trials of SmallCNN for 2 epochs per run")
    args = p.parse_args(argv)
    if args.quick:
        args.n_trials = 3
    # Absolute, so both runs (each in its own folder) share one warm feature cache.
    os.environ["HARNESS_CACHE"] = str(Path(os.environ.get("HARNESS_CACHE", ".cache")).expanduser().resolve())

    from harness.study.search import load_spec
    from harness.train.run import prepare

    print("\n".join(machine_lines()))
    spec = load_spec(args.file, args.profile, args.data_root)
    if args.quick:  # the same study code path, on the cheapest model
        spec = dataclasses.replace(spec, base=spec.base.replace(model="smallcnn", epochs=2))
    cfg = spec.base
    print(f"data    : {args.data_root or 'synthetic corpus (harness.synth, 8 actors)'}")
    print(f"study   : {spec.name}, {args.n_trials} trials per run, sampler {spec.sampler}; {cfg.model}, "
          f"{cfg.n_mels} mels, batch {cfg.batch_size}, {cfg.epochs} epochs")
    prepare(cfg)  # corpus and log-mel cache ready before any clock starts

    results = {}
    with tempfile.TemporaryDirectory(prefix="harness-bench-pruning-") as tmp:
        for label, pruner in (("pruned", spec.pruner), ("unpruned", ("none", {}))):
            print(f"\n--- {label}: pruner {pruner[0]} {pruner[1]}, load avg {load_average()}", flush=True)
            results[label] = timed_study(dataclasses.replace(spec, pruner=pruner), args.n_trials, Path(tmp) / label)

    print(f"\n{'':<10} {'epochs':>7} {'best val F1':>12} {'wall s':>8}  trials")
    for label, r in results.items():
        print(f"{label:<10} {r['epochs']:>7} {r['best']:>12.4f} {r['wall']:>8.1f}  {r['states']}")
    ratio = results["pruned"]["epochs"] / results["unpruned"]["epochs"]
    print_summary([Ratio("epochs trained, pruned / unpruned", ratio, GOAL)],
                  [f"wall time pruned / unpruned {results['pruned']['wall'] / results['unpruned']['wall']:.2f}; "
                   f"best val macro-F1 {results['pruned']['best']:.4f} pruned, "
                   f"{results['unpruned']['best']:.4f} unpruned"])
    return 1 if args.check and ratio > GOAL else 0


if __name__ == "__main__":
    sys.exit(main())
