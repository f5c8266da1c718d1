"""Per-cell overhead: what a suite cell costs outside training, and how that grows with the experiment.

A suite of 1 row x N seeds (SmallCNN, 32 mels x 65 frames, 1 epoch, batch 64: training is short on
purpose, so that what is measured is what is left) runs through `harness.suite.runner.run_suite` with one
in-process worker, twice per round, on each backend: local sqlite files, and PostgreSQL (a server of its
own, started with scripts/services.sh into a /tmp folder and stopped at the end; MLflow's store and the
Optuna work queue are two of its databases, opened directly, without a tracking server):

* **empty**: fresh stores;
* **full**: a copy of stores that already hold F (default 2,000) finished cell runs of other rows of
  the same experiment on the same data (tags, the 29 config params and 12 final metrics each, as a
  suite writes them) and the F completed trials of their work queue: what a few suites with
  cross-validation and racing leave in one experiment (benchmarks/overhead_stores.py).

Rounds alternate empty, full, empty, full, ... so that load from other processes hits both alike.

Each cell's **overhead** is the drain's wall time (claiming, the look-up of the cell's runs,
MLflow run creation, params, per-epoch metrics, test scoring, predictions and checkpoint artifacts,
queue bookkeeping) minus the time inside `harness.train.run.fit` spent training (`fit`'s per-epoch
MLflow logging callback is counted as overhead, not training), divided by the cells. A cell draws no
figure (the report draws the confusion matrices, one per row): the run stops if one does. What a suite
pays once (preflight, scanning the data, the once-per-suite read of the finished cells, parent runs and
their summaries) is printed beside it as the suite's fixed cost.

Figures per backend (medians over rounds):
(a) overhead per cell on the empty store, goal <= 0.3 s;
(b) overhead per cell, full store / empty store, goal <= 1.2.
A breakdown of (a) and of the full store's cell (look-up, queue, MLflow run outside training) says
where the time goes.

    python benchmarks/overhead.py [--check] [--backend sqlite|postgres|both] [--cells 8] [--filler 2000] [--rounds 4]
    python benchmarks/overhead.py --quick      # smoke run: 4 cells, 1 round (the filler stays 2,000)

Exit code 0 (a measurement), or with --check 1 when a goal is missed on any backend measured.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):  # the repo (harness) and this folder (pipeline helpers)
    if p not in sys.path:
        sys.path.insert(0, p)

from overhead_stores import EXPERIMENT, PostgresStores, Stores, fill  # noqa: E402
from common import Ratio, corpus_root, machine_lines, print_summary, scratch  # noqa: E402

CELL_GOAL_S = 0.3
GROWTH_GOAL = 1.2


def suite_yaml(cells: int) -> str:
    return (f"name: {EXPERIMENT}\n"
            f"description: per-cell overhead benchmark (benchmarks/overhead.py)\n"
            f"seeds: {list(range(cells))}\n"
            f"base: {{mode: sentiment, model: smallcnn, n_mels: 32, hop_length: 1024, batch_size: 64, epochs: 1}}\n"
            f"rows:\n"
            f"  - name: probe\n")


# --- timing hooks -------------------------------------------------------------------

class Clock:
    """Wall seconds and CPU-seconds (this process, all threads) spent inside the patched functions,
    by name, for one suite run."""

    def __init__(self) -> None:
        self.s: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.n: dict[str, int] = defaultdict(int)

    def add(self, name: str, seconds: float, cpu: float = 0.0) -> None:
        self.s[name] += seconds
        self.cpu[name] += cpu
        self.n[name] += 1

    def clear(self) -> None:
        self.s.clear()
        self.cpu.clear()
        self.n.clear()


CLOCK = Clock()


def _timed(name: str, fn):
    def wrapper(*args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            CLOCK.add(name, time.perf_counter() - t0, time.process_time() - c0)
    return wrapper


def install_hooks() -> None:
    """Wrap what a cell does, where the harness looks it up (module globals), to time its parts."""
    from harness.suite import runner, workers
    from harness.train import run as training

    real_fit = training.fit

    def fit(cfg, data, out_dir=None, on_epoch=None, device=None):
        spent = [0.0, 0.0]

        def cb(epoch, row):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                if on_epoch is not None:
                    on_epoch(epoch, row)
            finally:
                spent[0] += time.perf_counter() - t0
                spent[1] += time.process_time() - c0

        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return real_fit(cfg, data, out_dir, on_epoch=cb, device=device)
        finally:
            CLOCK.add("training", time.perf_counter() - t0 - spent[0], time.process_time() - c0 - spent[1])
            CLOCK.add("epoch logging", spent[0], spent[1])

    training.fit = fit
    training.score_test = _timed("test scoring", training.score_test)
    training.confusion_png = _timed("confusion PNG", training.confusion_png)
    workers.cell_runs = _timed("cell look-up", workers.cell_runs)
    workers.claim = _timed("queue claim", workers.claim)
    workers.finish = _timed("queue finish", workers.finish)
    training.run = _timed("run()", training.run)  # run_cell imports it from harness.train.run at call time
    runner.drain = _timed("drain", runner.drain)


@dataclass(frozen=True)
class SuiteTiming:
    kind: str
    cells: int
    wall_s: float  # the whole run_suite call
    parts: dict[str, float]
    cpu: dict[str, float]
    counts: dict[str, int]

    @property
    def drain_s(self) -> float:
        return self.parts["drain"]

    @property
    def per_cell_s(self) -> float:
        """Overhead per cell: the drain outside training."""
        return (self.drain_s - self.parts["training"]) / self.cells

    @property
    def per_cell_cpu_s(self) -> float:
        """The same in CPU-seconds of this process: what the overhead would take on idle cores, less waits."""
        return (self.cpu["drain"] - self.cpu["training"]) / self.cells

    @property
    def fixed_s(self) -> float:
        return self.wall_s - self.drain_s

    def part_per_cell(self, name: str) -> float:
        return self.parts.get(name, 0.0) / self.cells


@contextmanager
def inside(folder: Path):
    cwd = os.getcwd()
    os.chdir(folder)  # MLflow puts a new sqlite store's artifacts under ./mlruns: keep them here
    try:
        yield
    finally:
        os.chdir(cwd)


def timed(kind: str, suite_path: Path, urls: tuple[str, str], folder: Path, root: Path) -> SuiteTiming:
    from harness.suite import runner
    from harness.suite.file import load_suite

    suite = load_suite(suite_path)
    CLOCK.clear()
    with inside(folder):
        t0 = time.perf_counter()
        summary = runner.run_suite(suite, data_root=str(root), tracking_uri=urls[0], storage=urls[1],
                                   out_dir=str(folder / "artifacts"), progress=False)
        wall = time.perf_counter() - t0
    if summary.failed or summary.done != len(suite.seeds):
        raise SystemExit(f"overhead benchmark: the {kind} suite did not run every cell: {summary}")
    return SuiteTiming(kind, len(suite.seeds), wall, dict(CLOCK.s), dict(CLOCK.cpu), dict(CLOCK.n))


# --- main -------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    import glob

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    p.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both",
                   help="stores on local sqlite files, on PostgreSQL (scripts/services.sh), or both (default; "
                        "PostgreSQL skipped with a note where it is not installed)")
    p.add_argument("--cells", type=int, default=8, help="cells (seeds) per suite run (default 8)")
    p.add_argument("--filler", type=int, default=2000, help="finished runs already in the full store (default 2000)")
    # Four pairs: with two the median is the mean of two, and one fast empty round (0.098 s against 0.163 s
    # per cell, sqlite, 2026-12-02) moved the full / empty ratio from 1.09 to 1.42 within one run.
    p.add_argument("--rounds", type=int, default=4, help="empty/full pairs of suite runs (default 4)")
    p.add_argument("--quick", action="store_true", help="smoke run: 4 cells, 1 round")
    args = p.parse_args(argv)
    if args.quick:
        args.cells, args.rounds = 4, 1
    if args.cells < 1 or args.rounds < 1 or args.filler < 0:
        p.error("--cells and --rounds must be >= 1, --filler >= 0")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not (os.environ.get("PG_BIN") or glob.glob("/usr/lib/postgresql/*/bin/initdb")):
        if args.backend == "postgres":
            p.error("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: apt-get install -y postgresql")
        backends.remove("postgres")
        print("PostgreSQL not installed: its measurement is skipped")
    for w in ("RetryHeartbeatStaleTrialCallback is experimental", "Argument ``heartbeat_interval``",
              "optuna.storages._heartbeat.fail_stale_trials is experimental"):
        warnings.filterwarnings("ignore", message=w)
    with scratch("harness-bench-overhead-") as tmp:
        return run(args, tmp, backends)


def run(args: argparse.Namespace, tmp: Path, backends: list[str]) -> int:
    import torch

    from harness.suite.file import load_suite
    from harness.suite.planning import cell_config, row_cells
    from harness.train.run import prepare

    print("\n".join(machine_lines()))
    root, label = corpus_root(tmp / "synth-cache")
    print(f"data    : {label}")
    suite_path = tmp / "overhead.yaml"
    suite_path.write_text(suite_yaml(args.cells))
    (tmp / "warm.yaml").write_text(suite_yaml(1))
    suite = load_suite(suite_path)
    prepare(cell_config(suite.rows[0], row_cells(suite.rows[0], [0])[0], str(root)))  # warm features: not timed
    install_hooks()
    # One torch thread: a 2-thread OpenMP region stalls whenever a thread loses its core on a shared machine;
    # the overhead measured here is single-threaded Python and database work either way.
    torch.set_num_threads(1)
    ratios, notes = [], []
    for backend in backends:
        stores = PostgresStores(tmp) if backend == "postgres" else Stores(tmp)
        try:
            r, n = measure(args, stores, suite_path, tmp / "warm.yaml", root)
        finally:
            stores.close()
        ratios += r
        notes += n
    print_summary(ratios, notes)
    return 1 if args.check and not all(r.ok for r in ratios) else 0


def measure(args: argparse.Namespace, stores: Stores, suite_path: Path, warm_path: Path,
            root: Path) -> tuple[list[Ratio], list[str]]:
    """Empty and full stores on one backend, alternated; the figures and the notes of the summary."""
    import torch

    b = stores.backend
    print(f"\n{b}: filling the full store: {args.filler} finished cell runs + {args.filler} completed queue "
          f"trials ...", flush=True)
    fill_s = fill(*stores.new("template"), stores.folder("template"), args.filler, root)
    print(f"    filled in {fill_s:.1f} s ({1000 * fill_s / max(args.filler, 1):.1f} ms a run)")
    # one-off imports and first calls (matplotlib, sklearn, the database driver): not timed
    timed("warm-up", warm_path, stores.new("warm"), stores.folder("warm"), root)
    stores.drop("warm")

    print(f"\n{b}: suite: 1 row x {args.cells} seeds (SmallCNN, 32 x 65, 1 epoch, batch 64, CPU, "
          f"{torch.get_num_threads()} torch threads), 1 in-process worker; rounds empty/full x {args.rounds}",
          flush=True)
    results: dict[str, list[SuiteTiming]] = {"empty": [], "full": []}
    for r in range(args.rounds):
        for kind in ("empty", "full"):
            name = f"{kind}{r}"
            urls = stores.clone("template", name) if kind == "full" else stores.new(name)
            stores.settle()
            t = timed(kind, suite_path, urls, stores.folder(name), root)
            results[kind].append(t)
            print(f"    round {r + 1} {kind:<5}: suite {t.wall_s:6.2f} s = fixed {t.fixed_s:5.2f} s + drain "
                  f"{t.drain_s:6.2f} s (training {t.parts['training']:5.2f} s); overhead "
                  f"{t.per_cell_s:.3f} s per cell ({t.per_cell_cpu_s:.3f} CPU-s)", flush=True)
            stores.drop(name)

    def med(kind: str, f) -> float:
        return statistics.median(f(t) for t in results[kind])

    empty, full = med("empty", lambda t: t.per_cell_s), med("full", lambda t: t.per_cell_s)
    parts = ("cell look-up", "queue claim", "queue finish", "epoch logging", "test scoring")
    print(f"\n    {b}, per cell (median over rounds), seconds:")
    print(f"    {'':<34} {'empty':>8} {'full':>8}")
    for name in ("training", *parts):
        print(f"    {name:<34} {med('empty', lambda t: t.part_per_cell(name)):>8.3f} "
              f"{med('full', lambda t: t.part_per_cell(name)):>8.3f}")
    rest = {k: med(k, lambda t: t.per_cell_s - sum(t.part_per_cell(n) for n in parts)) for k in results}
    print(f"    {'rest of run() and run_cell':<34} {rest['empty']:>8.3f} {rest['full']:>8.3f}   "
          f"(MLflow run create/params/metrics/artifacts, checkpoint save, heartbeat)")
    print(f"    {'overhead (drain - training)':<34} {empty:>8.3f} {full:>8.3f}")
    cpu_e, cpu_f = med("empty", lambda t: t.per_cell_cpu_s), med("full", lambda t: t.per_cell_cpu_s)
    print(f"    {'  the same in CPU-seconds':<34} {cpu_e:>8.3f} {cpu_f:>8.3f}   (this process, all threads)")
    print(f"    {'suite fixed cost, once per suite':<34} {med('empty', lambda t: t.fixed_s):>8.2f} "
          f"{med('full', lambda t: t.fixed_s):>8.2f}   (preflight, scan, finished cells read once, parents)")
    if any(t.counts.get("confusion PNG") for ts in results.values() for t in ts):
        raise SystemExit("overhead benchmark: a cell drew a confusion PNG (the report draws them)")
    stores.drop("template")
    ratios = [Ratio(f"(a) {b}: overhead per cell, empty store (s)", empty, CELL_GOAL_S),
              Ratio(f"(b) {b}: overhead per cell, {args.filler} runs / empty", full / empty, GROWTH_GOAL)]
    return ratios, [f"{b}: CPU-seconds per cell of overhead: empty {cpu_e:.3f}, full {cpu_f:.3f} "
                    f"(ratio {cpu_f / cpu_e:.3f}; informational)",
                    f"{b}: {args.cells} cells x {args.rounds} round(s) per store; full store: {args.filler} "
                    f"finished runs (filled in {fill_s:.0f} s); suite fixed cost: empty "
                    f"{med('empty', lambda t: t.fixed_s):.2f} s, full {med('full', lambda t: t.fixed_s):.2f} s"]


if __name__ == "__main__":
    sys.exit(main())
