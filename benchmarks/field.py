"""Field strength (issue 39): harness's classic rows against the plainest references, on the shared clips.

(a) parity: eGeMAPS + `--model logreg` in harness against scikit-learn run directly (StandardScaler, the
    same C grid chosen on the same validation speakers, LogisticRegression) on the same speaker folds of
    RAVDESS: pooled macro-F1 per CV repeat, goal |harness - scikit-learn| <= 0.005.
(b) the three normalisations (train, corpus, speaker), by 4-fold speaker CV on RAVDESS
    (experiments/field.yaml, profile cv) and RAVDESS -> TurEV-DB (experiments/field_cross_corpus.yaml), in
    reports made by harness itself (reports/field.md, reports/field_cross_corpus.md with --write-reports).
(c) the cross-corpus default (`--normalize auto` = speaker) clearly above chance: test macro-F1 at least
    1.2 x chance (1 / classes) and its accuracy above chance by a binomial test, p < 0.001.
(d) cell times: a logreg cell against a cell of harness's linear head and a SmallCNN cell (the seed's
    model, 25 epochs at 128 mels, one split cell); the fitting alone of logreg's C grid on 88 features and
    about 1,000 clips (goal <= 0.3 s); a cached leave-one-speaker-out `harness train` of logreg on RAVDESS's
    8 actors, whole process (nkululeko's linear SVM on EmoDB, 10 speakers: about 10 s on this VM).

    RAVDESS_ROOT=... TUREV_ROOT=... python benchmarks/field.py [--check] [--write-reports]
    python benchmarks/field.py --quick     # smoke run on small synthetic corpora: every part, tiny sizes

Without RAVDESS_ROOT / TUREV_ROOT it reads the shared clips beside the repository (../shared/data/...),
else synthetic corpora. Exit code 0 (a measurement), or with --check 1 when a goal is missed.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from common import Ratio, machine_lines, print_summary, scratch  # noqa: E402

PARITY_GOAL = 0.005
CHANCE_FACTOR_GOAL = 1.2
FIT_GOAL_S = 0.3
LOSO_GOAL_S = 10.0
SHARED = REPO.parent / "shared" / "data"


def corpora(quick: bool, tmp: Path) -> tuple[Path, Path, str]:
    """(RAVDESS root, TurEV-DB root, what they are): real clips unless --quick or absent."""
    rav = os.environ.get("RAVDESS_ROOT") or str(SHARED / "ravdess-speech-actors-01-08")
    tur = os.environ.get("TUREV_ROOT") or str(SHARED / "turev-db-subset")
    if not quick and Path(rav).is_dir() and Path(tur).is_dir():
        return Path(rav), Path(tur), f"real clips: RAVDESS {rav}, TurEV-DB {tur}"
    from harness.train.synth import generate_corpus

    a = generate_corpus(tmp / "synth-ravdess", n_actors=4, seed=1)
    b = generate_corpus(tmp / "synth-turev", n_actors=2, seed=2, layout="turev")
    return a, b, "synthetic corpora (harness.synth: 4 actors in RAVDESS's layout, 2 in TurEV-DB's)"


def parity(root: Path, seeds: list[int], mode: str, labels: str) -> tuple[float, list[str]]:
    """(a): max over repeats of |harness's pooled macro-F1 - scikit-learn's|, and the lines to print."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import StandardScaler

    from harness.config import RunConfig
    from harness.train import classic
    from harness.train import run as training

    lines, gaps = [], []
    ours_all, theirs_all = [], []
    for seed in seeds:
        ours, theirs, truth = [], [], []
        for fold in range(4):
            cfg = RunConfig(data_root=str(root), features="egemaps", model="logreg", cv_folds=4, fold=fold, seed=seed,
                            mode=mode, labels=labels, device="cpu")
            data = training.prepare(cfg)
            fitted = training.fit(cfg, data)
            ours += training.score_test(fitted.model, data, fitted.norm, training.resolve_device("cpu"))["pred"].tolist()
            x, y = data.features.numpy().astype(np.float64), data.labels.numpy()
            tr, va, te = data.split.train, data.split.val, data.split.test
            scale = StandardScaler().fit(x[tr])
            best = (-1.0, None)
            for c in classic.C_GRID:  # the same grid, chosen on the same validation speakers
                m = LogisticRegression(C=c, max_iter=5000).fit(scale.transform(x[tr]), y[tr])
                f1 = f1_score(y[va], m.predict(scale.transform(x[va])), average="macro")
                if f1 > best[0] + 1e-12:
                    best = (f1, m)
            theirs += best[1].predict(scale.transform(x[te])).tolist()
            truth += y[te].tolist()
        a, b = f1_score(truth, ours, average="macro"), f1_score(truth, theirs, average="macro")
        ours_all.append(a)
        theirs_all.append(b)
        gaps.append(abs(a - b))
        lines.append(f"    repeat seed {seed}: harness {a:.4f}, scikit-learn {b:.4f} (|diff| {abs(a - b):.4f})")
    head = (f"(a) eGeMAPS + logreg, 4-fold speaker CV x {len(seeds)} ({mode}), pooled macro-F1: harness "
            f"{np.mean(ours_all):.4f}, scikit-learn directly {np.mean(theirs_all):.4f}")
    print("\n".join([head] + lines), flush=True)
    return max(gaps), [head] + lines


def suite(file: str, profile: str | None, data_root: str | None, rows: list[str] | None, seeds: list[int] | None,
          tmp: Path, out: Path, name: str, overrides: dict | None = None):
    """Run a suite file and harness's report on it; returns (report table, seconds per cell by row, lines)."""
    import mlflow

    from harness.cli import main as harness_main
    from harness.report.render import suite_report
    from harness.suite.file import load_suite
    from harness.suite.runner import run_suite

    uri = f"sqlite:///{tmp / f'{name}.db'}"
    s = load_suite(REPO / "experiments" / file, profile=profile)
    if overrides:
        import dataclasses

        s = dataclasses.replace(s, rows=tuple(dataclasses.replace(r, config=r.config.replace(**overrides))
                                              for r in s.rows))
    t0 = time.perf_counter()
    run_suite(s, seeds=seeds, rows=rows, data_root=data_root, tracking_uri=uri, storage=f"sqlite:///{tmp / f'{name}-q.db'}",
              experiment=name, out_dir=str(tmp / f"{name}-art"), progress=False)
    wall = time.perf_counter() - t0
    report = out / f"{name}.md"
    harness_main(["report", "--experiment", name, "--tracking_uri", uri, "--out", str(report)])
    c = mlflow.tracking.MlflowClient(uri)
    exp = c.get_experiment_by_name(name)
    table = suite_report(c, exp).table
    runs = c.search_runs([exp.experiment_id], "tags.`harness.kind` = 'cell'", max_results=5000)
    secs: dict[str, list[float]] = {}
    for r in runs:
        secs.setdefault(r.data.tags["harness.row"], []).append(r.data.metrics.get("wall_time_s", float("nan")))
    lines = [f"(b) {file}{f' --profile {profile}' if profile else ''}: {len(runs)} cells in {wall:.0f} s; "
             f"report {report}"]
    for row, t in table.iterrows():
        name_ = t["row"] if "row" in t else row
        lines.append(f"    {name_:<16} {t['mean']:.3f} [{t['ci_low']:.3f}, {t['ci_high']:.3f}]"
                     + ("" if t.get("baseline") else f"  Δ {t['delta']:+.3f} [{t['delta_low']:+.3f}, "
                                                      f"{t['delta_high']:+.3f}] {t.get('decision', '')}"))
    print("\n".join(lines), flush=True)
    return table, {k: sorted(v)[len(v) // 2] for k, v in secs.items()}, lines


def row_mean(table, row: str) -> float:
    t = table[table["row"] == row] if "row" in table.columns else table.loc[[row]]
    return float(t["mean"].iloc[0])


def above_chance(tmp: Path, name: str, row: str) -> tuple[float, float, int, list[str]]:
    """(c): the row's test macro-F1 over chance (1 / classes), and a binomial test of its accuracy."""
    import mlflow
    from scipy.stats import binomtest

    c = mlflow.tracking.MlflowClient(f"sqlite:///{tmp / f'{name}.db'}")
    exp = c.get_experiment_by_name(name)
    runs = [r for r in c.search_runs([exp.experiment_id], "tags.`harness.kind` = 'cell'", max_results=5000)
            if r.data.tags["harness.row"] == row]
    k = len(runs[0].data.tags["harness.classes"].split(","))
    f1 = sum(r.data.metrics["test_f1_macro"] for r in runs) / len(runs)
    n = int(sum(r.data.metrics["n_test_clips"] for r in runs))
    hits = int(round(sum(r.data.metrics["test_accuracy"] * r.data.metrics["n_test_clips"] for r in runs)))
    p = binomtest(hits, n, 1 / k, alternative="greater").pvalue
    line = (f"(c) cross-corpus default ({row}): test macro-F1 {f1:.3f} against chance {1 / k:.3f} ({k} classes), "
            f"{f1 * k:.2f} x chance; accuracy {hits / n:.3f} over {n} test predictions ({len(runs)} seeds), "
            f"binomial p {p:.1e}")
    print(line, flush=True)
    return f1 * k, p, len(runs), [line]


def fit_seconds(rav: Path, tur: Path) -> tuple[float, list[str]]:
    """(d): logreg's C grid fitted on the eGeMAPS vectors of both corpora (~1,000 clips, 88 features)."""
    import numpy as np

    from harness.config import RunConfig
    from harness.train import classic, heads
    from harness.train import run as training

    cfg = RunConfig(data_root=f"{rav},{tur}", features="egemaps", model="logreg", mode="emotion", device="cpu")
    data = training.prepare(cfg)
    idx = np.arange(len(data.labels))
    x = heads.model_inputs(data.features, idx, heads.input_norm(data.features, idx), training.resolve_device("cpu"))
    y = data.labels.numpy()
    shape = heads.head_shape(data.features)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        classic.fit("logreg", "linear", None, False, 0, len(data.classes), shape, x, y, x[:200], y[:200])
        times.append(time.perf_counter() - t0)
    t = sorted(times)[1]
    line = (f"(d) logreg's C grid ({len(classic.C_GRID)} fits) on {len(idx)} clips x {x.shape[1]} features: "
            f"{t:.2f} s (median of 3)")
    print(line, flush=True)
    return t, [line]


def loso_seconds(root: Path, tmp: Path, warm: bool = True) -> tuple[float, list[str]]:
    """(d): a cached leave-one-speaker-out run of logreg, as a user runs it: one `harness train` process
    (`warm`: run once before, so that the features are cached and the store exists, as a user's second run)."""
    cmd = [sys.executable, "-m", "harness", "train", "--data_root", str(root), "--features", "egemaps", "--model",
           "logreg", "--mode", "emotion", "--protocol", "leave_one_speaker_out", "--tracking_uri",
           f"sqlite:///{tmp / 'loso.db'}", "--out", str(tmp / "loso-art")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if warm:
        subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=tmp)  # features cached, store created
    t0 = time.perf_counter()
    p = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=tmp)
    t = time.perf_counter() - t0
    last = [x for x in p.stdout.splitlines() if x.startswith("repeat")][-1]
    line = f"(d) cached leave-one-speaker-out `harness train` (logreg, emotion): {t:.1f} s whole process; {last[:90]}"
    print(line, flush=True)
    return t, [line]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    p.add_argument("--quick", action="store_true", help="smoke run on small synthetic corpora")
    p.add_argument("--write-reports", action="store_true", dest="write_reports",
                   help="(b): write reports/field.md and reports/field_cross_corpus.md in the repo")
    args = p.parse_args(argv)
    with scratch("harness-bench-field-") as tmp:
        return run(args, tmp)


def run(args: argparse.Namespace, tmp: Path) -> int:
    print("\n".join(machine_lines()))
    rav, tur, label = corpora(args.quick, tmp)
    print(f"corpora : {label}", flush=True)
    out = REPO / "reports" if args.write_reports else tmp
    seeds = [0] if args.quick else [0, 1, 2]
    quick_labels = "angry,calm,happy,sad" if args.quick else ""
    notes: list[str] = []
    gap, lines = parity(rav, seeds, "emotion" if args.quick else "sentiment", quick_labels)
    notes += lines
    small = {"labels": quick_labels, "mode": "emotion"} if args.quick else None
    rows = ["logreg", "logreg-speaker", "linear"] if args.quick else ["logreg", "logreg-corpus", "logreg-speaker",
                                                                        "linear"]
    single, secs, lines = suite("field.yaml", "cv", str(rav), rows, seeds, tmp, out, "field", small)
    notes += lines
    cross, _, lines = suite("field_cross_corpus.yaml", None, f"{rav},{tur}",
                            ["logreg", "logreg-train"] + ([] if args.quick else ["logreg-corpus"]),
                            seeds if not args.quick else [0, 1], tmp, out, "field_cross_corpus")
    notes += lines
    factor, p_value, _, lines = above_chance(tmp, "field_cross_corpus", "logreg")
    notes += lines
    # One SmallCNN cell (the split design: 6 of the 8 actors train) prices the seed's model; four CV cells
    # cost 20 min at load 10 and say nothing more about a cell's time.
    cnn, _, lines = suite("field.yaml", None, str(rav), ["linear"], [0], tmp, tmp, "field-cnn",
                          {"features": "logmel", "model": "smallcnn", "epochs": 2 if args.quick else 25,
                           "n_mels": 32 if args.quick else 128, **(small or {})})
    cnn_s = sorted(v for v in _cell_secs(tmp, "field-cnn"))
    notes.append(f"(d) seconds per cell (median): logreg {secs['logreg']:.2f}, linear head {secs['linear']:.2f}, "
                 f"SmallCNN {cnn_s[len(cnn_s) // 2]:.1f} ({'2' if args.quick else '25'} epochs, one split cell)")
    print(notes[-1], flush=True)
    fit_s, lines = fit_seconds(rav, tur)
    notes += lines
    loso_s, lines = loso_seconds(rav, tmp, warm=not args.quick)
    notes += lines
    ratios = [Ratio("(a) |harness - scikit-learn| pooled macro-F1", gap, PARITY_GOAL),
              Ratio("(c) cross-corpus default macro-F1 / chance", factor, CHANCE_FACTOR_GOAL, higher_is_better=True),
              Ratio("(c) its accuracy's binomial p against chance", p_value, 1e-3),
              Ratio("(d) logreg C-grid fit on ~1,000 x 88 (s)", fit_s, FIT_GOAL_S),
              Ratio("(d) cached LOSO logreg run (s)", loso_s, LOSO_GOAL_S),
              Ratio("(d) logreg cell / SmallCNN cell", secs["logreg"] / cnn_s[len(cnn_s) // 2], 0.1)]
    notes.append("single corpus, pooled macro-F1: " + ", ".join(f"{r} {row_mean(single, r):.3f}" for r in rows))
    notes.append("cross-corpus, test macro-F1: " + ", ".join(f"{r} {row_mean(cross, r):.3f}" for r in cross.index))
    del cnn
    print_summary(ratios, notes)
    return 1 if args.check and not all(r.ok for r in ratios) else 0


def _cell_secs(tmp: Path, name: str) -> list[float]:
    import mlflow

    c = mlflow.tracking.MlflowClient(f"sqlite:///{tmp / f'{name}.db'}")
    exp = c.get_experiment_by_name(name)
    return [r.data.metrics["wall_time_s"] for r in
            c.search_runs([exp.experiment_id], "tags.`harness.kind` = 'cell'", max_results=100)]


if __name__ == "__main__":
    sys.exit(main())
