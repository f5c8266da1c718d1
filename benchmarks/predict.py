"""Prediction speed: clips per second of `harness predict` with a SmallCNN row (log-mel) and an eGeMAPS row
(openSMILE functionals, MLP head), each row 2 seed models (probabilities averaged).

A throwaway suite of the two rows is trained on a small synthetic corpus (harness.synth, 4 actors), then
one actor's clips (60; 20 with --quick) are predicted:

* **first call**: a fresh `python -m harness predict --experiment E --row R FOLDER` process, features not
  cached: what a user's one-off command costs, interpreter start, imports, checkpoint download and model
  loading included (clips / wall seconds);
* **warm**: in one process whose models are loaded, `scoring.predict_corpus` on the same clips with no
  feature cache (what a served model does per request): the median of 3 calls after a warm-up.

Goals (--check), for a 2-core VM: warm SmallCNN >= 20 clips/s, warm
eGeMAPS >= 10 clips/s, first call >= 2 clips/s for both (a folder of 60 clips answered within 30 s).

    python benchmarks/predict.py [--check] [--quick]

Exit code 0 (a measurement), or with --check 1 when a goal is missed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from common import Ratio, machine_lines, print_summary, scratch  # noqa: E402

EXPERIMENT = "bench-predict"
GOALS = {"warm smallcnn": 20.0, "warm egemaps": 10.0, "first smallcnn": 2.0, "first egemaps": 2.0}
ROWS = {"smallcnn": {"model": "smallcnn", "n_mels": 64, "epochs": 2},
        "egemaps": {"features": "egemaps", "model": "mlp", "epochs": 5}}


def train(tmp: Path, root: Path, uri: str, quick: bool) -> None:
    import yaml

    from harness.suite.file import load_suite
    from harness.suite.runner import run_suite

    doc = {"name": EXPERIMENT, "seeds": [0, 1],
           "base": {"mode": "emotion", "batch_size": 32, "train_ratio": 0.5, "val_ratio": 0.25,
                    **({"epochs": 1} if quick else {})},
           "rows": [{"name": n, "config": {**cfg, **({"epochs": 1} if quick else {})}} for n, cfg in ROWS.items()]}
    path = tmp / "suite.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    summary = run_suite(load_suite(path), data_root=str(root), tracking_uri=uri, experiment=EXPERIMENT,
                        out_dir=str(tmp / "artifacts"), progress=False)
    if summary.failed:
        raise SystemExit(f"training the benchmark's rows failed: {summary.failures}")


def first_call(row: str, folder: Path, uri: str, tmp: Path) -> float:
    """Wall seconds of a fresh `harness predict` process, with a cache of its own (features not cached)."""
    env = {**os.environ, "HARNESS_CACHE": str(tmp / f"first-{row}"), "PYTHONPATH": str(HERE.parent)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "harness", "predict", "--experiment", EXPERIMENT, "--row", row,
                          str(folder), "--out", str(tmp / f"{row}.csv"), "--tracking_uri", uri, "--device", "cpu"],
                         env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"harness predict failed: {out.stderr[-1000:]}")
    return wall


def warm(row: str, folder: Path, uri: str, tmp: Path, calls: int = 3) -> float:
    """Median seconds of predicting the folder with loaded models, no feature cache."""
    import torch

    from harness import tracking
    from harness.predict import inputs, scoring, sources

    c = tracking.client(uri, must_exist=True)
    source = sources.from_row(c, EXPERIMENT, row)
    ens = scoring.load(sources.download(c, source, tmp / f"ckpt-{row}"), source.run_ids, torch.device("cpu"))
    corpus = inputs.collect(folder).corpus
    scoring.predict_corpus(ens, corpus, None, torch.device("cpu"))  # warm-up: kernels, resamplers, opensmile
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        scoring.predict_corpus(ens, corpus, None, torch.device("cpu"))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    p.add_argument("--quick", action="store_true", help="1 epoch, 20 clips predicted")
    args = p.parse_args(argv)
    print("\n".join(machine_lines()))
    with scratch("harness-bench-predict-") as tmp:
        from harness.train.synth import generate_corpus

        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        root = generate_corpus(tmp / "corpus", n_actors=4, seed=0)
        t0 = time.perf_counter()
        train(tmp, root, uri, args.quick)
        print(f"trained 2 rows x 2 seeds in {time.perf_counter() - t0:.0f} s")
        folder = tmp / "clips"
        folder.mkdir()
        for f in sorted((root / "Actor_04").glob("*.wav"))[:20 if args.quick else 60]:
            shutil.copy(f, folder / f.name)
        n = len(list(folder.glob("*.wav")))
        ratios = []
        for row in ROWS:
            first = first_call(row, folder, uri, tmp)
            hot = warm(row, folder, uri, tmp)
            print(f"{row:<9} {n} clips: first call {first:6.2f} s ({n / first:6.1f} clips/s), warm {hot:6.3f} s "
                  f"({n / hot:7.1f} clips/s)")
            ratios += [Ratio(f"first call {row} (clips/s)", n / first, GOALS[f"first {row}"], True),
                       Ratio(f"warm {row} (clips/s)", n / hot, GOALS[f"warm {row}"], True)]
    print_summary(ratios, [f"{n} clips of 3 s at 16 kHz, 2 models per row, CPU"])
    return 1 if args.check and not all(r.ok for r in ratios) else 0


if __name__ == "__main__":
    sys.exit(main())
