"""Racing benchmark: training runs racing spends to decide, against a fixed design that reaches the same decisions.

`suite run --until-decided` (harness.racing) runs the file's seeds, then adds one repeat per round
only to rows whose decision against the baseline is still open (and the baseline's repeat of the
same seed), a row stopping at P >= 0.99 (`racing.RACING_PROB`). Two questions, one run:

  (a) cost: training runs racing spent / training runs of the cheapest fixed design (n seeds for
      every row) whose decisions, by the same statistics at the same threshold (`build_table`,
      the correlated Bayesian t-test with ROPE 0.01, P >= 0.99), equal racing's final decision on
      every row racing decided. Goal <= 0.6.
  (b) agreement: rows racing decided whose decision differs in a long fixed-design run (every row
      over N seeds) at the report's threshold 0.95. A row the long run leaves undecided is not a
      flip; better/worse/equivalent turned into another of the three is. Goal: none.

The suite (written into the temporary folder) has a baseline and four rows whose effects are known
from measurement (ROWS below; benchmarks/README.md): clearly better (BatchNorm), clearly worse (lr
100x too small), equivalent (label smoothing 1e-5: alters training slightly, Δ within the ROPE) and a
close call (lr 2x). SmallCNN, sentiment, class-weighted loss, sr 16000, 32 mels, batch 32, lr 1e-3,
`--epochs` epochs (default 8), actor-disjoint split 0.8/0.1 (8 actors: train 6, validation 1, test 1),
CPU (CUDA is hidden from the suite's workers).

Both designs run through `harness.suite.runner.run_suite` in one MLflow sqlite store, as two experiments:
`long` (seeds 0..N-1, every row) and `race` (seeds 0, 1, then racing rounds on seeds 2, 3, ...,
within `--budget` training runs). The same (row, seed) on CPU with the same thread count gives the
same numbers, so racing's cells repeat a prefix of the long run's (checked and printed). The fixed
design of n seeds is the long run's first n seeds (statistics recomputed on that subset), so it
costs no extra training.

Default budget: the most that keeps every racing seed inside the long run's seeds (2 x rows +
2 x (N - 2): a lone open row and the baseline take 2 runs per round), capped at the harness's own
default (3 x the first seeds' runs), and at least one full round (3 x rows); at N = 12 it is 30
(the cv design: every count x 4 folds, 120).
Defaults: N = 12, 8 epochs (90 training runs, 4.5 min on a quiet 2-core machine); --quick: N = 4,
1 epoch, budget 15 (under a minute there).

`--design cross_corpus` races the same rows on a cross-corpus suite (`test_corpus: emodb` in the
base): each seed trains one model on the 8-actor synthetic RAVDESS-layout corpus (its actor split for
validation) and scores every clip of a synthetic EmoDB-layout corpus of 10 new speakers (corpus seed
1). There the report's default interval, and so racing's, is the speaker method (the test corpus's
speakers crossed with one model per seed: `harness.speakers`, calibrated in benchmarks/calibration/),
whose floor is the test speakers' σ²_s/S; the rows' roles are what they are named for, their effects
across corpora are what the long run measures (the notes above are the split design's).

`--design cv` races them on cross-validated suites (`cv_folds: 4` in the base): each seed is a repeat of
4-fold speaker CV of the 8 actors (2 test speakers per fold, validation speakers from the other folds), a
round adds every fold of one more seed, and runs are counted per fold. Racing there uses the report's
default interval for CV suites: the speaker method on the pooled predictions (floor the 8 speakers' σ²_s/S)
for a comparison on up to `calibrated.SPEAKER_DEFAULT_MAX_REPEATS` repeats, the corrected t beyond.

Real audio when RAVDESS_ROOT is set (the rows' effects were measured on the synthetic corpus),
else the synthetic corpus (split and cv designs); the cross-corpus design is synthetic only. Everything (feature cache,
MLflow and Optuna stores, checkpoints) lives in a temporary folder deleted at the end.

    python benchmarks/racing.py [--check] [--seeds N] [--budget B] [--epochs E] [--workers W] [--quick]
                                [--design split|cross_corpus|cv]

Exit code 0 (a measurement), or with --check 1 when a goal is missed.
"""
from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):  # the repo (harness) and this folder (pipeline helpers)
    if p not in sys.path:
        sys.path.insert(0, p)

from common import Ratio, corpus_root, load_average, machine_lines, print_summary, scratch  # noqa: E402

COST_GOAL = 0.6  # racing runs / fixed-design runs reaching the same decisions
FLIP_GOAL = 0  # rows racing decided that the long run decides otherwise

DEFAULTS = {"seeds": 12, "epochs": 8}
QUICK = {"seeds": 4, "epochs": 1}

BASE = {"mode": "sentiment", "model": "smallcnn", "split": "actor", "train_ratio": 0.8, "val_ratio": 0.1,
        "sr": 16000, "n_mels": 32, "batch_size": 32, "lr": 0.001, "class_weight_loss": True}


@dataclass(frozen=True)
class Row:
    name: str
    config: dict
    role: str  # what the row is there to be
    measured: str  # its effect as measured when the rows were chosen (README)


# Effects measured when the rows were chosen: 12 seeds (0-11) per row, this setup at 8 epochs, synthetic
# corpus, `fit` + `score_test` on 1 thread; Δ = row − baseline in test macro-F1, sd = std of the 12 paired Δ.
ROWS = (
    Row("baseline", {}, "the reference", "class weights, lr 1e-3: mean 0.557"),
    Row("better", {"use_bn": True}, "clearly better", "BatchNorm: Δ +0.315, sd 0.106, all 12 seeds > 0"),
    Row("worse", {"lr": 1e-5}, "clearly worse", "lr 100x too small: Δ −0.301, sd 0.120, all 12 seeds < 0"),
    Row("equivalent", {"label_smoothing": 1e-5}, "equivalent",
        "label smoothing 1e-5: Δ +0.004, sd 0.007, 8 of 12 seeds bit-identical, largest |Δ| 0.021"),
    Row("close", {"lr": 2e-3}, "a close call", "lr 2x: Δ +0.072, sd 0.107, 9 of 12 seeds > 0"),
)
BASELINE = ROWS[0].name
SHORT = {"better": "B", "worse": "W", "equivalent": "E", "undecided": ".", "undecidable": "x", "": "-"}
OPEN = ("undecided", "undecidable")  # racing left these rows without a decision (undecidable: given up as futile)


DESIGNS = ("split", "cross_corpus", "cv")
CV_FOLDS = 4  # the cv design: 4-fold speaker CV of the 8 actors (2 test speakers per fold)
TEST_CORPUS = ("emodb", 10, 1)  # the cross-corpus design's test corpus: layout, speakers, corpus seed


def write_suite(path: Path, epochs: int, design: str = "split", corpora: tuple[str, str] = ("", "")) -> Path:
    import yaml

    extra = {"cross_corpus": {"test_corpus": TEST_CORPUS[0]}, "cv": {"cv_folds": CV_FOLDS}}.get(design, {})
    base = {**BASE, "epochs": epochs, **extra}
    doc = {"name": "racing", "description": f"benchmarks/racing.py: rows with known effects, {design} design",
           "seeds": [0, 1], "base": base,
           "rows": [{"name": r.name, "config": r.config, "note": f"{r.role}; {r.measured}".strip("; ")}
                    for r in ROWS]}
    if design == "cross_corpus":  # a cross-corpus row is validated with its corpora (it needs one to train on)
        train, test = corpora
        doc["data"] = [{"corpus": "ravdess", "root": train}, {"corpus": TEST_CORPUS[0], "root": test}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Filter(io.TextIOBase):
    """run_suite's stdout: racing and summary lines pass, cell lines become a progress count."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label, self.total, self.buf, self.cells, self.t0 = label, total, "", 0, time.perf_counter()
        self.lines: list[str] = []

    def write(self, s: str) -> int:
        self.buf += s
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            self.lines.append(line)
            self.handle(line)
        return len(s)

    def handle(self, line: str) -> None:
        word = line.strip().split(" ", 1)[0]
        if word in ("done", "failed", "skipped"):
            self.cells += 1
            if word == "failed":
                sys.__stdout__.write(f"  [{self.label}] {line.strip()}\n")
            if self.cells % 10 == 0:
                of = f"/{self.total}" if self.total else ""
                sys.__stdout__.write(f"  [{self.label}] {self.cells}{of} cells, {time.perf_counter() - self.t0:.0f} s, "
                                     f"load {load_average()}\n")
        elif line.startswith(("racing", "summary", "  FAILED")):
            sys.__stdout__.write(f"  [{self.label}] {line}\n")
        sys.__stdout__.flush()


def decisions_at(sel, n: int | None, threshold: float, clips=None):
    """build_table on the first n seeds of the selection (all when None), with the report's default interval
    for the design, as racing uses it (`clips`: the pooled test predictions the speaker method reads);
    (table, row -> decision at threshold)."""
    from harness.report.runs import Selection
    from harness.report.calibrated import default_interval
    from harness.report.table import build_table
    from harness.stats import ROPE, decide

    fin = sel.finished if n is None else sel.finished[sel.finished["seed"] < n]
    if clips is not None and n is not None:
        clips = clips[clips["repeat"] < n]
    sub = Selection(rows=sel.rows, finished=fin, failed=sel.failed.iloc[0:0], notes=[])
    ci, cap = default_interval(sub, clips, "test_f1_macro")
    table = build_table(sub, "test_f1_macro", BASELINE, ci, ROPE, clips=clips, max_repeats=cap)
    out = {}
    for row, t in table.iterrows():
        if row != BASELINE:
            out[row] = decide(t["p_better"], t["p_equivalent"], t["p_worse"], threshold) if t["decision"] else ""
    return table, out


def paired(sel, row: str) -> list[float]:
    """The long run's paired differences row − baseline in test macro-F1, in seed order (a CV seed: the mean
    of its folds' differences)."""
    import pandas as pd

    from harness.report.runs import seed_values

    base, v = (seed_values(sel.finished, r, "test_f1_macro") for r in (BASELINE, row))
    keys = v.index.intersection(base.index)
    d = pd.Series([float(v[k] - base[k]) for k in keys], index=[int(str(k).split("/")[0]) for k in keys])
    return [float(x) for x in d.groupby(level=0).mean().sort_index()]


def limit_probs(ev, rope: float) -> tuple[float, float, float]:
    """(P better, P equivalent, P worse) that the report's answer tends to as the seeds grow, if Δ and its
    variance split (`verdict.Evidence`) stay the long run's: the variance falls to its floor, which more
    seeds cannot lower (the corrected t: s² n_test/n_train; the speaker method: the test speakers'
    σ²_s/S), and the Student posterior becomes normal."""
    from scipy import stats

    m, scale = float(ev.delta), math.sqrt(max(float(ev.floor_var), 0.0))
    if scale == 0:
        return (float(m > rope), float(abs(m) <= rope), float(m < -rope))
    better = float(stats.norm.sf((rope - m) / scale))
    worse = float(stats.norm.cdf((-rope - m) / scale))
    return better, 1.0 - better - worse, worse


def cross_corpus_roots(cache: Path) -> tuple[tuple[str, str], str]:
    """The cross-corpus design's data: the embedded synthetic corpus to train on and a synthetic EmoDB-layout
    corpus of new speakers to test on (generated once into the cache); with a label for the header."""
    from harness.train.data import synthetic_root
    from harness.train.synth import generate_corpus

    layout, speakers, seed = TEST_CORPUS
    train = synthetic_root(cache)
    test = generate_corpus(cache / "synth" / f"racing-test-{layout}-{speakers}-seed{seed}", n_actors=speakers,
                           seed=seed, layout=layout)
    return ((str(train), str(test)), f"synthetic corpora: train on {train.name} (8 actors), test on every clip of "
                               f"{layout} layout, {speakers} speakers, corpus seed {seed}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: {QUICK['seeds']} seeds in the long run, {QUICK['epochs']} epoch "
                        f"(explicit flags win)")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"N, seeds of the long fixed-design run, every row (default {DEFAULTS['seeds']})")
    p.add_argument("--budget", type=int, default=None,
                   help="racing's budget in training runs (default: the most that keeps racing inside the long "
                        "run's seeds, capped at the harness default of 3 x the first seeds' runs)")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs per training run (default {DEFAULTS['epochs']})")
    p.add_argument("--design", choices=DESIGNS, default="split",
                   help="split: one actor split per seed (default); cross_corpus: one model per seed scored on "
                        "every clip of a synthetic EmoDB-layout test corpus; cv: a seed is a repeat of "
                        f"{CV_FOLDS}-fold speaker CV (racing uses the report's default interval for each design)")
    p.add_argument("--workers", type=int, default=None,
                   help="suite worker processes (default: min(2, usable cores)); the same for both designs, "
                        "so that a (row, seed) gives the same numbers in both")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else DEFAULTS
    for k, v in preset.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    rows = len(ROWS)
    if args.seeds < 2:
        p.error(f"--seeds must be >= 2 (the racing start seeds 0, 1 are part of the long run), got {args.seeds}")
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    k = CV_FOLDS if args.design == "cv" else 1  # training runs per (row, seed)
    inside = k * (2 * rows + 2 * (args.seeds - 2))
    if args.budget is None:  # and at least one full round after the first seeds
        args.budget = max(min(3 * 2 * rows * k, inside), 3 * rows * k)
    if args.budget < 2 * rows * k:
        p.error(f"--budget must be >= {2 * rows * k} (the first seeds: {rows} rows x 2 seeds x {k} run(s)), "
                f"got {args.budget}")
    args.per_seed = k
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    args.workers = args.workers or min(2, usable)
    if args.workers < 1:
        p.error(f"--workers must be >= 1, got {args.workers}")
    args.inside = inside
    # CPU only: a (row, seed) must give the same numbers in both designs (suite files cannot set the device;
    # with CUDA hidden, `auto` is the CPU). Spawned suite workers inherit the environment.
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    with scratch("harness-bench-racing-") as tmp:
        return run(args, tmp)


def run(args: argparse.Namespace, tmp: Path) -> int:
    import pandas as pd

    from harness import tracking
    from harness.report.runs import has_repeats, read_clips, read_suite, select_cells
    from harness.stats import DECISION_PROB, ROPE
    from harness.suite import racing
    from harness.suite.file import load_suite
    from harness.suite.runner import run_suite
    from harness.train.data import scan_data

    t_start = time.perf_counter()
    print("\n".join(machine_lines()))
    if args.design == "cross_corpus":
        corpora, data_label = cross_corpus_roots(Path(os.environ["HARNESS_CACHE"]))
        root = ",".join(corpora)
    else:
        (root, data_label), corpora = corpus_root(Path(os.environ["HARNESS_CACHE"])), ("", "")
    print(f"data    : {data_label}")
    suite = load_suite(write_suite(tmp / "racing.yaml", args.epochs, args.design, corpora))
    n, rows, folds = args.seeds, len(ROWS), args.per_seed
    cfg0 = suite.rows[0].config
    print(f"setup   : {cfg0.model}, {cfg0.mode}, class weights {cfg0.class_weight_loss}, sr {cfg0.sr}, {cfg0.n_mels} mels, "
          f"batch {cfg0.batch_size}, {cfg0.epochs} epochs, lr {cfg0.lr}, split {cfg0.split} "
          f"{cfg0.train_ratio}/{cfg0.val_ratio}" + (f", every clip of {cfg0.test_corpus} scored"
                                                     if cfg0.test_corpus else "")
          + (f", {cfg0.cv_folds}-fold speaker CV per seed (val_ratio from the other folds)" if cfg0.cv_folds else "")
          + f", cpu; {args.workers} suite worker(s)")
    print("rows    : " + "; ".join(f"{r.name} = {r.role}" + (f" ({', '.join(f'{k} {v}' for k, v in r.config.items())})"
                                                                  if r.config else "") for r in ROWS))
    print(f"designs : long = {rows} rows x {n} seeds{f' x {folds} folds' if folds > 1 else ''} = {rows * n * folds} training runs; "
          f"racing = seeds 0, 1 then rounds, "
          f"budget {args.budget} training runs, a row stops at P >= {racing.RACING_PROB}; report threshold "
          f"{DECISION_PROB}, ROPE ±{ROPE}")
    if args.budget > args.inside:
        print(f"  NOTE: budget {args.budget} > {args.inside}: racing may run seeds beyond the long run's {n}; "
              f"those cells have no long-run twin")

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    storage = f"sqlite:///{tmp / 'optuna.db'}"
    common = dict(workers=args.workers, data_root=str(root), tracking_uri=uri, storage=storage,
                  out_dir=str(tmp / "artifacts"), progress=False)

    print(f"\nlong fixed design: seeds 0..{n - 1}", flush=True)
    t0 = time.perf_counter()
    out = Filter("long", rows * n * folds)
    with redirect_stdout(out):
        long_sum = run_suite(suite, seeds=list(range(n)), experiment="long", **common)
    long_s = time.perf_counter() - t0
    print(f"\nracing: seeds 0, 1, then rounds, budget {args.budget}", flush=True)
    t0 = time.perf_counter()
    out = Filter("race", None)
    with redirect_stdout(out):
        race_sum = run_suite(suite, seeds=[0, 1], experiment="race", until_decided=True, budget=args.budget,
                             **common)
    race_s = time.perf_counter() - t0

    # --- the numbers back from MLflow ------------------------------------------------------------
    c = tracking.client(uri)
    fingerprint = scan_data(cfg0.replace(data_root=str(root))).fingerprint
    ids = {e: c.get_experiment_by_name(e).experiment_id for e in ("long", "race")}
    sel = {e: select_cells(*read_suite(c, ids[e])) for e in ids}
    st = racing.standing(c, ids["race"], suite.rows, BASELINE, fingerprint)
    race_dec = {r: d for r, d in st.decisions.items() if r != BASELINE}
    race_runs = st.spent
    repeats = {r.name: len({seed for name, seed, _ in st.finished if name == r.name}) for r in ROWS}
    race_seeds = sorted({s for _, s, _ in st.finished})

    # racing's cells against the long run's same (row, seed)
    f1 = {e: {(r, int(s), -1 if pd.isna(f) else int(f)): v
              for r, s, f, v in zip(sel[e].finished["row"], sel[e].finished["seed"], sel[e].finished["fold"],
                                    sel[e].finished["metrics.test_f1_macro"])} for e in ids}
    twins = [k for k in f1["race"] if k in f1["long"]]
    same = sum(1 for k in twins if f1["race"][k] == f1["long"][k])
    max_diff = max((abs(f1["race"][k] - f1["long"][k]) for k in twins), default=math.nan)

    # the long run: full (report threshold) and every prefix of n seeds (racing's threshold)
    clips = read_clips(c, sel["long"].finished) if has_repeats(sel["long"].finished) else None
    full, full_dec = decisions_at(sel["long"], None, DECISION_PROB, clips)
    by_n = {k: decisions_at(sel["long"], k, racing.RACING_PROB, clips)[1] for k in range(2, n + 1)}
    method = full["ci_method"].dropna().iloc[0] if full["ci_method"].notna().any() else "?"
    decided = [r for r, d in race_dec.items() if d not in OPEN]
    match = {k: all(by_n[k].get(r) == race_dec[r] for r in decided) for k in by_n}
    n_fixed = next((k for k in sorted(match) if match[k]), None)
    fixed_runs = (n_fixed or n) * rows * folds
    cost = race_runs / fixed_runs
    flips = [r for r in decided if full_dec.get(r) not in ("undecided", "", race_dec[r])]

    # --- report --------------------------------------------------------------------------------------
    print(f"\nlong run: {long_sum.done} training runs in {long_s:.0f} s ({long_sum.failed} failed); racing: "
          f"{race_sum.done} training runs in {race_s:.0f} s ({race_sum.failed} failed), seeds {race_seeds}")
    print(f"racing's cells vs the long run's same cell (row, seed, fold): {same}/{len(twins)} identical "
          f"(max |Δ F1| {max_diff:.2g})" + (f"; {len(f1['race']) - len(twins)} without a twin" if len(twins) < len(f1["race"]) else ""))

    print(f"\n{'row':<11} {'is':<15} {'racing':>7} {'racing':<10} | {'long run, ' + str(n) + ' seeds: mean':>24} "
          f"{'Δ [95% CI]':>24} {'P(better/equiv/worse)':>22} {'decision':<10} {'flip':<4}")
    print(f"{'':<11} {'':<15} {'repeats':>7} {'decision':<10} |")
    for r in ROWS:
        t = full.loc[r.name]
        if r.name == BASELINE:
            print(f"{r.name:<11} {r.role:<15} {repeats[r.name]:>7} {'-':<10} | {t['mean']:>24.3f}")
            continue
        flip = "FLIP" if r.name in flips else ""
        print(f"{r.name:<11} {r.role:<15} {repeats[r.name]:>7} {race_dec[r.name]:<10} | {t['mean']:>24.3f} "
              f"{t['delta']:>+8.3f} [{t['delta_low']:+.3f}, {t['delta_high']:+.3f}] "
              f"{t['p_better']:>8.3f}/{t['p_equivalent']:.3f}/{t['p_worse']:.3f} {full_dec[r.name]:<10} {flip:<4}")

    print(f"\nfixed design of n seeds (the long run's first n), decisions at P >= {racing.RACING_PROB} "
          f"(B better, W worse, E equivalent, . undecided); '=' where every row racing decided has racing's decision:")
    names = [r.name for r in ROWS if r.name != BASELINE]
    print(f"  {'n':>3} {'runs':>5}  " + " ".join(f"{x[:10]:>10}" for x in names) + "   same as racing")
    for j in sorted(by_n):
        print(f"  {j:>3} {j * rows * folds:>5}  " + " ".join(f"{SHORT[by_n[j][x]]:>10}" for x in names)
              + f"   {'=' if match[j] else ''}")
    print("  racing      " + " ".join(f"{SHORT[race_dec[x]]:>10}" for x in names)
          + f"   ({race_runs} runs; repeats " + ", ".join(f"{x} {repeats[x]}" for x in names)
          + f", baseline {repeats[BASELINE]})")

    # racing's runs until its last decision: rounds add seeds in order, so that is every cell below that seed
    last = max((repeats[r] for r in decided), default=2)
    to_last = sum(1 for _, seed, _ in st.finished if seed < last)
    print("\nthe long run's paired Δ per seed (row − baseline), '|' after racing's last repeat of the row:")
    limits = {}
    for x in names:
        d = paired(sel["long"], x)
        cells = [f"{v:+.3f}" for v in d]
        cells.insert(min(repeats[x], len(cells)), "|")
        print(f"  {x:<11} {' '.join(cells)}")
        if race_dec[x] in OPEN and full.loc[x, "answer"] is not None:  # None: the long run states no interval
            limits[x] = limit_probs(full.loc[x, "answer"].ev, ROPE)
    if limits:
        floors = "; ".join(f"{x}: SE -> {math.sqrt(max(ev.floor_var, 0.0)):.3f} ({ev.floor_what})"
                           for x, ev in ((x, full.loc[x, "answer"].ev) for x in limits))
        print(f"rows racing left open: P(better/equiv/worse) as the seeds grow without end, if Δ and its variance "
              f"split stay the long run's\n(the variance falls to its floor, {floors}):")
    for x, (b, e, w) in limits.items():
        verdict = ("never decided at P >= 0.99, whatever the budget" if max(b, e, w) < racing.RACING_PROB
                   else "decidable with enough seeds")
        print(f"  {x:<11} {b:.3f}/{e:.3f}/{w:.3f}: {verdict}")
    if decided:
        print(f"racing had decided every row it decided after {to_last} runs (seed {last - 1}); "
              f"the other {race_runs - to_last} went to rows it left undecided")

    if not decided:
        fixed_note = "racing decided no row: any fixed design 'agrees'; the cost figure is racing's runs / 2 seeds"
    elif n_fixed is None:
        fixed_note = (f"no fixed design of <= {n} seeds reaches racing's decisions: {n} x {rows} x {folds} = {fixed_runs} is a "
                      f"lower bound of its cost, so the ratio is an upper bound")
    else:
        fixed_note = (f"the smallest fixed design reaching racing's decisions: n = {n_fixed} seeds x {rows} rows"
                      + (f" x {folds} folds" if folds > 1 else "") + f" = {fixed_runs}")
    total = time.perf_counter() - t_start
    ratios = [Ratio("(a) training runs, racing / fixed design", cost, COST_GOAL),
              Ratio("(b) flips: racing's decisions vs long run", len(flips), FLIP_GOAL)]
    notes = [f"(a) racing {race_runs} runs (budget {args.budget}); {fixed_note}",
             f"(a) racing's runs until its last decision: {to_last} ({to_last / fixed_runs:.2f} of the fixed design); "
             f"after it, {race_runs - to_last} runs on rows it left undecided"
             + "".join(f"; {x}: P -> {max(v):.3f} with unlimited seeds" for x, v in limits.items()),
             f"(a) racing decided {len(decided)} of {len(race_dec)} rows: "
             + ", ".join(f"{r} {race_dec[r]} after {repeats[r]}" for r in race_dec),
             f"(b) long run ({n} seeds, P >= {DECISION_PROB}, interval {method}): " + ", ".join(f"{r} {full_dec[r]}" for r in full_dec)
             + (f"; flipped: {', '.join(flips)}" if flips else ""),
             f"racing's cells identical to the long run's twins: {same}/{len(twins)}",
             f"data: {data_label}; {args.epochs} epoch(s); {args.workers} worker(s); wall {total:.0f} s "
             f"(long run {long_s:.0f} s for {long_sum.done} runs, racing {race_s:.0f} s for {race_sum.done})"]
    print_summary(ratios, notes)
    return 1 if args.check and not all(x.ok for x in ratios) else 0


if __name__ == "__main__":
    sys.exit(main())
