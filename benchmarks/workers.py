"""Suite throughput: cells per hour with 2 worker processes over 1.

A small temporary suite (1 row x 6 seeds: SmallCNN, 64 mels, 4 epochs, synthetic corpus
unless --data_root) runs through `harness.suite.runner.run_suite` twice in this one process:
once with workers=1 (in-process, torch's default threads) and once with workers=2
(two spawned processes, cores // 2 torch threads each), each into fresh temporary
MLflow and Optuna sqlite stores with its own experiment name. The whole `run_suite`
call is timed, so the cost of spawning workers, opening the stores and the queue
traffic is included. The feature cache is shared and made warm (one `prepare`) before
either clock starts, so the ratio measures the cells' work, not the one-off log-mel pass.

Ratio (cells/hour with 2 workers) / (cells/hour with 1 worker), goal >= 1.6 on 2 cores.
Beside it, from the cells' MLflow runs: the median time of one cell, the wall time spent
outside cells (start-up, spawning, imports, queue, idle tail) and the ceiling
2 x cell(1 worker) / cell(2 workers), the ratio if nothing outside the cells cost anything:
when a cell on 1 thread takes twice as long as on 2, no number of workers can beat 1.0.

    python benchmarks/workers.py [--check] [--seeds 6] [--epochs 4] [--rounds 1]
    python benchmarks/workers.py --quick     # 2 cells of 1 epoch: a smoke run

With --rounds 2 the runs go 1, 2, 2, 1 workers and the median of each is used, so
load that drifts during the benchmark hits both sides alike.
Exit code 0 (a measurement), or with --check 1 when the goal is missed.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):  # the repo (harness) and this folder (pipeline helpers)
    if p not in sys.path:
        sys.path.insert(0, p)

from common import Ratio, load_average, machine_lines, print_summary, scratch  # noqa: E402

GOAL = 1.6
# Optuna's "experimental feature" warnings from harness.suite, once per process: noise here.
# PYTHONWARNINGS matches message prefixes without importing optuna at interpreter start.
QUIET = ("RetryHeartbeatStaleTrialCallback is experimental", "Argument ``heartbeat_interval``",
         "optuna.storages._heartbeat.fail_stale_trials is experimental")


def suite_yaml(seeds: int, epochs: int) -> str:
    return (f"name: bench-workers\n"
            f"description: cells-per-hour benchmark (benchmarks/workers.py)\n"
            f"seeds: {list(range(seeds))}\n"
            f"base: {{mode: sentiment, model: smallcnn, n_mels: 64, batch_size: 16, epochs: {epochs}}}\n"
            f"rows:\n"
            f"  - name: smallcnn-64mels\n")


@dataclass(frozen=True)
class SuiteTiming:
    workers: int
    wall_s: float  # the whole run_suite call
    cell_s: list[float]  # each cell's own wall_time_s as MLflow recorded it (training + logging + test)
    startup_s: float  # from the run_suite call to the first cell's MLflow run start
    tail_s: float  # from the last cell's MLflow run end to run_suite's return

    @property
    def per_cell_s(self) -> float:
        return statistics.median(self.cell_s)

    @property
    def outside_cells_s(self) -> float:
        """Wall time not spent inside cells: start-up, spawning, imports, stores, queue, idle tail."""
        return self.wall_s - sum(self.cell_s) / self.workers


def timed_suite(suite_path: Path, workers: int, store: Path, data_root: str | None) -> SuiteTiming:
    """One run_suite call into fresh stores under `store`, timed."""
    from mlflow.tracking import MlflowClient

    from harness.suite.file import load_suite
    from harness.suite.runner import run_suite

    store.mkdir(parents=True)
    uri, experiment = f"sqlite:///{store / 'mlflow.db'}", f"bench-workers-{store.name}"
    cwd = os.getcwd()
    os.chdir(store)  # MLflow puts a sqlite store's artifacts under ./mlruns: keep them here
    try:
        t0, epoch0 = time.perf_counter(), time.time()
        summary = run_suite(load_suite(suite_path), workers=workers, data_root=data_root, tracking_uri=uri,
                            storage=f"sqlite:///{store / 'optuna.db'}", experiment=experiment,
                            out_dir=str(store / "artifacts"), progress=False)
        wall = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
    if summary.failed or summary.skipped:
        raise SystemExit(f"workers={workers}: {summary.failed} failed, {summary.skipped} skipped: "
                         f"{summary.failures} -- the timing would not be comparable")
    c = MlflowClient(tracking_uri=uri)
    exp_id = c.get_experiment_by_name(experiment).experiment_id
    cells = c.search_runs([exp_id], filter_string="tags.`harness.kind` = 'cell'")
    first_start = min(r.info.start_time for r in cells) / 1000  # MLflow times: ms since the epoch
    last_end = max(r.info.end_time for r in cells) / 1000
    return SuiteTiming(workers=workers, wall_s=wall, cell_s=[r.data.metrics["wall_time_s"] for r in cells],
                       startup_s=first_start - epoch0, tail_s=epoch0 + wall - last_end)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when the goal is missed")
    p.add_argument("--seeds", type=int, default=6, help="cells (seeds of the one row; default 6)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per cell (default 4)")
    p.add_argument("--rounds", type=int, default=1, help="1: one run each; 2: 1,2,2,1 workers (default 1)")
    p.add_argument("--data_root", default=None, help="RAVDESS root (default: the synthetic corpus)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 cells of 1 epoch, one round")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.rounds = 2, 1, 1

    os.environ["PYTHONWARNINGS"] = ",".join(f"ignore:{m}" for m in QUIET)  # for the spawned workers
    for m in QUIET:
        warnings.filterwarnings("ignore", message=re.escape(m))
    with scratch("harness-bench-workers-") as tmp:  # spawned workers inherit it: one warm cache for all
        return run(args, tmp)


def run(args: argparse.Namespace, tmp: Path) -> int:
    import torch

    from harness.suite.file import load_suite
    from harness.train.run import prepare

    print("\n".join(machine_lines()))
    suite_path = tmp / "bench-workers.yaml"
    suite_path.write_text(suite_yaml(args.seeds, args.epochs))
    suite = load_suite(suite_path)
    cfg = suite.rows[0].config.replace(data_root=args.data_root)
    print(f"data    : {args.data_root or 'synthetic corpus (harness.synth, 8 actors)'}")
    print(f"suite   : 1 row x {args.seeds} seeds = {args.seeds} cells; {cfg.model}, {cfg.n_mels} mels, "
          f"batch {cfg.batch_size}, {cfg.epochs} epochs, {cfg.mode}, {cfg.split} split")

    t0 = time.perf_counter()
    data = prepare(cfg)  # corpus generated/scanned and log-mel cached before any clock starts
    print(f"warm-up : corpus + feature cache ready in {time.perf_counter() - t0:.1f} s "
          f"({len(data.corpus.clips)} clips, {len(data.split.train)} train); both timings below hit the cache")

    order = [1, 2] if args.rounds < 2 else [1, 2, 2, 1] * (args.rounds // 2) + [1, 2] * (args.rounds % 2)
    runs: dict[int, list[SuiteTiming]] = {1: [], 2: []}
    for i, workers in enumerate(order):
        threads = torch.get_num_threads() if workers == 1 else max(1, (os.cpu_count() or 1) // workers)
        print(f"\n--- workers={workers} ({threads} torch thread(s) each), load avg {load_average()}", flush=True)
        t = timed_suite(suite_path, workers, tmp / f"w{workers}-run{i + 1}", args.data_root)
        runs[workers].append(t)
        print(f"--- workers={workers}: {len(t.cell_s)} cells in {t.wall_s:.1f} s = "
              f"{len(t.cell_s) / t.wall_s * 3600:.0f} cells/hour; median cell {t.per_cell_s:.2f} s; "
              f"outside cells {t.outside_cells_s:.1f} s, of which {t.startup_s:.1f} s before the first cell "
              f"and {t.tail_s:.1f} s after the last", flush=True)

    def med(workers: int, attr: str) -> float:
        return statistics.median(getattr(t, attr) for t in runs[workers])

    w1, w2 = med(1, "wall_s"), med(2, "wall_s")
    per_hour = {1: args.seeds / w1 * 3600, 2: args.seeds / w2 * 3600}
    ratio = per_hour[2] / per_hour[1]
    # The ceiling: the ratio if nothing outside the cells cost anything. When one cell on
    # 1 thread takes twice as long as on 2 threads, no worker count can beat 1.0.
    ceiling = 2 * med(1, "per_cell_s") / med(2, "per_cell_s")
    print(f"\ncells/hour: 1 worker {per_hour[1]:.0f} ({w1:.1f} s), 2 workers {per_hour[2]:.0f} ({w2:.1f} s)"
          + (" (medians)" if args.rounds > 1 else ""))
    print(f"per cell: {med(1, 'per_cell_s'):.2f} s with 1 worker ({torch.get_num_threads()} threads), "
          f"{med(2, 'per_cell_s'):.2f} s with 2 workers (1 thread each); outside cells "
          f"{med(1, 'outside_cells_s'):.1f} s vs {med(2, 'outside_cells_s'):.1f} s (before the first cell "
          f"{med(1, 'startup_s'):.1f} s vs {med(2, 'startup_s'):.1f} s)")
    print_summary([Ratio("cells/hour, 2 workers / 1 worker", ratio, GOAL, higher_is_better=True)],
                  [f"ceiling if start-up, spawning and queue cost nothing: 2 x cell(1 worker) / cell(2 workers) "
                   f"= {ceiling:.3f} (no goal)",
                   f"{args.seeds} cells, {cfg.model}, {cfg.n_mels} mels, {cfg.epochs} epochs; "
                   f"{os.cpu_count()} cores; feature cache warm before both timings"])
    return 1 if args.check and ratio < GOAL else 0


if __name__ == "__main__":
    sys.exit(main())
