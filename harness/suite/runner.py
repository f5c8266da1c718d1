"""Ablation suites: each row of a YAML table, run over several seeds as MLflow runs.

Layout in MLflow (the report reads exactly this):
- one experiment per suite (the file's `name`, or `--experiment`);
- one parent run per row (tags `harness.kind=row`, `harness.row`, `harness.row_index`,
  `harness.config_hash`, `harness.claimed_f1`, `harness.note`), with the row's
  mean and 95% CI over its finished seeds as metrics, and the answer in words (mean, CI, n,
  paired Δ vs the baseline row) as the run's note `mlflow.note.content`, for the MLflow UI;
- one nested child run per (row, seed) = a cell (tags `harness.kind=cell`,
  `harness.row`, `harness.seed`, `harness.config_hash`), holding the training run.

Work is shared through the work queue (`harness.queue`); MLflow is the record
of what is done: a cell is done when a FINISHED child run with the same config
hash and data fingerprint exists, so a rerun skips it, and a RUNNING child left
by a dead worker is marked KILLED. The suite file is read by `suite_file`, the
cells are planned by `planning`.
"""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from harness import services, tracking
from harness.errors import HarnessError
from harness.report.repeat_cap import switch_warning
from harness.suite import racing
from harness.suite.file import RowSpec, Suite, load_suite
from harness.suite.parents import close_parents, row_ci, row_parent
from harness.suite.planning import (
    Cell,
    Summary,
    cell_config,
    cell_runs,
    cv_repeats,
    finished_cells,
    parse_seeds,
    print_plan,
    row_cells,
    select_rows,
)
from harness.suite.queue import (
    LostClaim,
    Reaper,
    claim,
    default_storage,
    enqueue,
    finish,
    open_queue,
    retrying,
    trials_in,
)

# --- running ---------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """What one `suite run` process works on; picklable for worker processes."""
    suite: Suite
    experiment: str
    tracking_uri: str
    storage: str
    data_root: str | None
    out_dir: str
    parents: dict[str, str]  # row name -> parent run id
    cells: tuple[Cell, ...]
    fingerprint: str
    extra_row_tags: dict[str, str] = field(default_factory=dict)


def run_suite(suite: Suite, seeds: Sequence[int] | None = None, rows: Sequence[str] | None = None,
              workers: int = 1, data_root: str | None = None, tracking_uri: str | None = None,
              storage: str | None = None, experiment: str | None = None,
              extra_row_tags: dict[str, str] | None = None, dry_run: bool = False,
              target_ci: float | None = None, max_seeds: int | None = None,
              until_decided: bool = False, budget: int | None = None,
              out_dir: str = "artifacts", progress: bool = True) -> Summary:
    """Run every pending (row, seed[, fold]) cell; returns counts of done/skipped/failed."""
    from harness.train.frontends import extraction_status
    from harness.train.run import checked_config, default_cache_dir, prepare, scan_data

    seeds = tuple(seeds or suite.seeds)
    data_root = data_root if data_root is not None else suite.data_root
    selected = select_rows(suite, rows)
    baseline = racing.check_racing(suite, selected, seeds, until_decided, budget, target_ci)
    if workers < 1:
        raise HarnessError(f"invalid --workers {workers}: expected >= 1")
    if (target_ci is None) != (max_seeds is None):
        raise HarnessError("--target-ci and --max-seeds go together")
    if target_ci is not None and (target_ci <= 0 or max_seeds < len(seeds)):
        raise HarnessError(f"--target-ci must be > 0 and --max-seeds >= the {len(seeds)} starting seeds")
    uri = tracking.resolve_tracking_uri(tracking_uri)
    experiment = experiment or suite.name
    storage = storage or default_storage(uri)
    services.preflight(uri, storage)  # a server or database that is down: one line, exit 2, in seconds

    frontend_rows = _frontend_rows(suite, selected)  # an encoder without weights: one line, before any work
    # Scanning the data first: a bad corpus, or a CV design it cannot hold, fails here, before any run exists.
    # Rows reading other data (labels, corpora) than the first are scanned once each.
    probes: dict[tuple, object] = {}
    resolved = []
    for r in selected:
        try:
            cfg = r.config.replace(data_root=data_root) if data_root is not None else r.config
            key = tuple(getattr(cfg, f) for f in ("data_root", "corpus", "labels", "label_map"))
            if key not in probes:
                probes[key] = scan_data(cfg)
            cfg = checked_config(cfg, probes[key])
        except HarnessError as e:
            raise HarnessError(f"{suite.path}: row {r.name!r}: {e}") from None
        resolved.append(dataclasses.replace(r, config=cfg.replace(data_root=r.config.data_root)))
    selected = resolved
    probe = next(iter(probes.values()))
    fingerprint = probe.fingerprint
    c = _store(uri, dry_run)
    exp = c.get_experiment_by_name(experiment) if c is not None else None
    done = finished_cells(c, exp.experiment_id if exp else None, fingerprint, selected)
    all_cells = [cell for r in selected for cell in row_cells(r, seeds)]
    pending = [cell for cell in all_cells if cell.ident not in done]
    summary = Summary(skipped=len(all_cells) - len(pending))

    if until_decided and budget is None:
        budget = racing.DEFAULT_BUDGET_FACTOR * len(all_cells)
    if until_decided and budget < len(all_cells):
        raise HarnessError(f"invalid --budget {budget}: the first seeds alone are {len(all_cells)} training runs "
                           f"({len(selected)} rows x {len(seeds)} seeds{' x folds' if len(all_cells) > len(selected) * len(seeds) else ''})")

    # a repeat past the default interval's cap widens the report's answers: said before it is run
    added = (racing.max_rounds(selected, baseline, budget, len(all_cells)) if until_decided
             else max_seeds - len(seeds) if target_ci is not None else 0)  # the most repeats racing or --target-ci add
    cap_warning = switch_warning(cv_repeats(selected, seeds, done, added))
    if dry_run:
        print_plan(suite, selected, seeds, all_cells, done, data_root, experiment,
                   budget=budget if until_decided else None,
                   extraction=[extraction_status(r.config, fingerprint, len(probe.clips), default_cache_dir(), probe.clips)
                               for r in frontend_rows])
        if cap_warning:
            print(cap_warning)
        return summary

    exp_id = tracking.get_or_create_experiment(c, experiment)
    parents = {r.name: row_parent(c, exp_id, suite, r, extra_row_tags or {}) for r in selected}
    queue = open_queue(storage, experiment)
    # Features cached once before workers start: log-mel, and each front-end the rows use.
    for r in [selected[0], *frontend_rows]:
        # An extraction says how far it is (clips/s, time left) on a terminal or in a log alike. Each row's own
        # first cell: a fold of a CV row means nothing to a split row (ConfigError before this was per row).
        first = next(cell for cell in all_cells if cell.row == r.name)
        prepare(cell_config(r, first, data_root), progress=progress or r.config.features != "logmel")
    plan = Plan(suite=suite, experiment=experiment, tracking_uri=uri, storage=storage, data_root=data_root,
                out_dir=out_dir, parents=parents, cells=tuple(pending), fingerprint=fingerprint,
                extra_row_tags=dict(extra_row_tags or {}))
    print(f"suite {suite.name!r} ({suite.profile}) -> MLflow experiment {experiment!r} at {tracking.redact(uri)}: "
          f"{len(all_cells)} cells, {summary.skipped} already done, {len(pending)} to run, {workers} worker(s)")
    if cap_warning:
        print(cap_warning)
    rounds = 0
    while True:
        if plan.cells:
            enqueue(queue, plan.cells)
            failed_before = summary.failed
            drain(plan, workers, summary, progress)
            if until_decided and rounds and summary.failed > failed_before:
                print("racing stopped: a cell of the last round failed (rerun to retry it)")
                break
        if until_decided:
            st = racing.standing(c, exp_id, selected, baseline, fingerprint)
            nxt = racing.next_round(selected, baseline, st)
            open_rows = sorted(r for r, d in st.decisions.items() if d == "undecided")
            if not nxt or st.spent + len(nxt) > budget:
                if nxt:
                    print(f"racing: budget reached ({st.spent} of {budget} training runs spent, the next round "
                          f"needs {len(nxt)})")
                print("\n".join(racing.summary_lines(st, rounds, budget)))
                break
            rounds += 1
            print(f"racing round {rounds}: {len(nxt)} cell(s) (seed {nxt[0].seed}) for undecided row(s) "
                  f"{', '.join(open_rows)} and the baseline; {st.spent} of {budget} training runs spent")
            plan = dataclasses.replace(plan, cells=tuple(nxt))
            continue
        plan = dataclasses.replace(plan, cells=tuple(more_seeds(c, exp_id, plan, selected, target_ci, max_seeds)))
        if not plan.cells:
            break
        print(f"adaptive seeds: {len(plan.cells)} more cell(s) to reach a 95% CI half-width <= {target_ci}")
    if until_decided:
        racing.record_race(c, exp_id, parents, fingerprint, selected, seeds, budget)
    close_parents(c, exp_id, parents)
    print(f"summary: {summary.done} done, {summary.skipped} skipped (already done), {summary.failed} failed")
    for line in summary.failures:
        print(f"  FAILED {line}")
    return summary


def _store(uri: str, dry_run: bool):
    """The tracking store; for a dry run only one that exists (None: nothing done yet), as a dry run
    creates nothing (no mlflow.db, no lock, no mlruns/)."""
    if not dry_run:
        return tracking.client(uri)
    try:
        return tracking.client(uri, must_exist=True)
    except HarnessError:  # the URI passed the preflight: this says only that no local store is there yet
        return None


def _frontend_rows(suite: Suite, rows) -> list:
    """One row per distinct front-end other than log-mel (features, layer, weights), its weights checked."""
    from harness.train.frontends import check_weights

    out, seen = [], set()
    for r in rows:
        key = (r.config.features, r.config.layer, r.config.encoder_checkpoint)
        if r.config.features == "logmel" or key in seen:
            continue
        seen.add(key)
        try:
            check_weights(r.config)
        except HarnessError as e:
            raise HarnessError(f"{suite.path}: row {r.name!r}: {e}") from None
        out.append(r)
    return out


def drain(plan: Plan, workers: int, summary: Summary, progress: bool) -> None:
    """Run the queue dry with `workers` processes (in-process for one)."""
    from tqdm import tqdm

    bar = tqdm(total=len(plan.cells), unit="cell", disable=not progress, dynamic_ncols=True)

    def report(kind: str, line: str) -> None:
        if kind == "done":
            summary.done += 1
        elif kind == "failed":
            summary.failed += 1
            summary.failures.append(line)
        elif kind == "skipped":
            summary.skipped += 1
        bar.update(1)
        tqdm.write(f"{kind:>7}  {line}")

    if workers == 1:
        work(plan, report, threads=None)
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # a clean interpreter: no inherited locks or CUDA state
        messages = ctx.Queue()
        threads = max(1, (os.cpu_count() or 1) // workers)
        gpus = worker_gpus(workers, cuda_device_count(), os.environ.get("CUDA_VISIBLE_DEVICES"))
        procs = [ctx.Process(target=_worker_main, args=(plan, messages, threads, gpu), daemon=False)
                 for gpu in gpus]
        for p in procs:
            p.start()
        alive = len(procs)
        while alive:
            try:
                kind, line = messages.get(timeout=1.0)
            except Exception:
                alive = sum(p.is_alive() for p in procs)
                continue
            if kind == "exit":
                alive -= 1
            else:
                report(kind, line)
        for p in procs:
            p.join()
    bar.close()


def cuda_device_count() -> int:
    """GPUs this process may use (0 without CUDA). A spawned worker starts with a clean CUDA state,
    so asking here does not leak into it."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker_gpus(workers: int, n_gpus: int, visible: str | None) -> list[str | None]:
    """The GPU of each worker process, as its CUDA_VISIBLE_DEVICES: worker i gets GPU i mod n_gpus, counted
    among the GPUs this process sees (the entries of our own CUDA_VISIBLE_DEVICES when set, as under
    SLURM, else 0..n_gpus-1). None for every worker without a GPU."""
    if n_gpus < 1:
        return [None] * workers
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    ids = ids[:n_gpus] if len(ids) >= n_gpus else [str(i) for i in range(n_gpus)]
    return [ids[i % n_gpus] for i in range(workers)]


def _worker_main(plan: Plan, messages, threads: int, gpu: str | None = None) -> None:
    if gpu is not None:  # before anything in this process touches CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    parent = os.getppid()
    try:
        # An orphaned worker (its `suite run` was killed) finishes its cell and stops.
        work(plan, lambda kind, line: messages.put((kind, line)), threads, stop=lambda: os.getppid() != parent,
             gpu=gpu)
    finally:
        messages.put(("exit", ""))


def work(plan: Plan, report, threads: int | None, stop=lambda: False, gpu: str | None = None) -> None:
    """Claim and run cells until none of ours is waiting or running anywhere (or `stop()`)."""
    import torch
    from optuna.trial import TrialState

    if threads:
        torch.set_num_threads(threads)
    queue = open_queue(plan.storage, plan.experiment)
    c = tracking.client(plan.tracking_uri)
    exp_id = tracking.get_or_create_experiment(c, plan.experiment)
    keys = {cell.key for cell in plan.cells}
    by_key = {cell.key: cell for cell in plan.cells}
    data_cache: dict = {}
    reap = Reaper()
    while not stop():
        trial = claim(queue, keys)
        if trial is None:
            reap(queue)  # a dead worker's cell goes back to the queue (see harness.suite.queue)
            live = [cell for _, _, cell in retrying(lambda: trials_in(queue, (TrialState.WAITING, TrialState.RUNNING)))
                    if cell in keys]
            if not live:
                return
            time.sleep(0.2)  # another worker's last cell: poll briskly so the suite ends when it does
            continue
        cell = by_key[trial.cell]
        with trial:  # heartbeats while the cell trains
            state = run_cell(plan, cell, trial, queue, c, exp_id, report, data_cache,
                             {} if gpu is None else {"harness.worker_gpu": gpu})
        finish(queue, trial, state)


def run_cell(plan: Plan, cell: Cell, trial, queue, c, exp_id: str, report, data_cache: dict,
             worker_tags: dict[str, str] | None = None) -> str:
    from optuna.trial import TrialState

    from harness.train.run import FEATURE_FIELDS, PREPARE_FIELDS, prepare, run

    label = cell.label
    # This cell's runs, by its tags (one small query, not a read of the whole experiment).
    mine = cell_runs(c, exp_id, cell)
    # Already finished (a rerun of a cell whose worker died after finishing)? Then skip.
    if any(r.info.status == "FINISHED" and r.data.tags.get("harness.data_fingerprint") == plan.fingerprint
           for r in mine):
        report("skipped", f"{label} (already finished)")
        return "COMPLETE"
    # Someone else (a duplicate enqueue) is running it under a lower trial number? Let them.
    for _, number, key in retrying(lambda: trials_in(queue, (TrialState.RUNNING,))):
        if key == cell.key and number < trial.number:
            report("skipped", f"{label} (claimed by another worker)")
            return "COMPLETE"
    # A RUNNING run of this cell now can only be left by a dead worker: the queue hands a cell to one live worker.
    for r in mine:
        if r.info.status == "RUNNING":
            tracking.set_tags(c, r.info.run_id, {"harness.failure_reason": "worker died (process killed or lost)"})
            c.set_terminated(r.info.run_id, status="KILLED")
    row = plan.suite.row(cell.row)
    cfg = cell_config(row, cell, plan.data_root)
    fold = "" if cell.fold is None else f"fold{cell.fold}"
    t0 = time.time()
    try:
        # The worker's previous cell: the same data as is, or its corpus scan and features with a new split.
        prev_cfg, data = data_cache.get("last", (None, None))
        if prev_cfg is None or any(getattr(cfg, f) != getattr(prev_cfg, f) for f in PREPARE_FIELDS):
            same = prev_cfg is not None and all(getattr(cfg, f) == getattr(prev_cfg, f) for f in FEATURE_FIELDS)
            data = prepare(cfg, reuse=data if same else None)
        data_cache["last"] = (cfg, data)
        res = run(cfg, experiment=plan.experiment, tracking_uri=plan.tracking_uri,
                  out_dir=Path(plan.out_dir) / plan.experiment / cell.row / f"seed{cell.seed}" / fold,
                  run_name=f"{cell.row}/seed{cell.seed}" + (f"/{fold}" if fold else ""),
                  parent_run_id=plan.parents[cell.row], data=data,
                  extra_tags={"harness.kind": "cell", "harness.row": cell.row, "harness.suite": plan.suite.name,
                              "harness.profile": plan.suite.profile, "harness.queue_trial": str(trial.number),
                              "harness.worker": f"{platform.node()}:{os.getpid()}",
                              **(worker_tags or {}), **plan.extra_row_tags},
                  on_epoch=trial.check, before_finish=trial.commit,  # a cell lost meanwhile is no FINISHED run
                  confusion_figure=False)  # the report draws it per row, from the tag
    except LostClaim as e:  # its run is KILLED and tagged harness.duplicate; the cell's owner finishes it
        report("skipped", f"{label} (duplicate, not counted: {e})")
        return "LOST"
    except Exception as e:  # isolated: the run is FAILED in MLflow, the suite goes on
        report("failed", f"{label}: {type(e).__name__}: {e}")
        return "FAIL"
    report("done", f"{label}: test macro-F1 {res['test_f1_macro']:.3f} (best epoch {res['best_epoch']}, "
                   f"{time.time() - t0:.0f}s)")
    return "COMPLETE"


def more_seeds(c, exp_id: str, plan: Plan, rows: Sequence[RowSpec], target_ci: float | None,
               max_seeds: int | None) -> list[Cell]:
    """Adaptive seeds: one more seed (under cross-validation, a whole repeat) for each row whose
    CI is still wider than the target."""
    if target_ci is None:
        return []
    done = finished_cells(c, exp_id, plan.fingerprint, rows)
    cells = []
    for row in rows:
        mine = [r for (name, _, _, h), r in done.items() if name == row.name and h == row.config.config_hash]
        seeds = sorted({s for (name, s, _, h) in done if name == row.name and h == row.config.config_hash})
        _, half = row_ci(mine)
        if len(seeds) < max_seeds and (math.isnan(half) or half > target_ci):
            cells += row_cells(row, [max(seeds, default=-1) + 1])
    return cells


# --- CLI ---------------------------------------------------------------------------

def register(sub) -> None:
    p = sub.add_parser("suite", help="run an ablation suite (rows x seeds) as MLflow runs")
    ss = p.add_subparsers(dest="suite_command", required=True, parser_class=type(p))
    r = ss.add_parser("run", help="run every pending (row, seed) cell of a suite file")
    r.add_argument("file", type=Path, help="suite YAML, e.g. experiments/seed_table.yaml")
    r.add_argument("--profile", default=None, help="a profile of the file, e.g. quick (default: full)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2 (default: the file's)")
    g.add_argument("--n-seeds", type=int, default=None, help="seeds 0..N-1")
    r.add_argument("--rows", default=None, help="comma-separated row names (default: all)")
    r.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default: 1)")
    r.add_argument("--data_root", default=None, help="the corpus folder(s), ',' between several (default: the file's "
                                                     "'data' list, else the synthetic corpus)")
    r.add_argument("--tracking_uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    r.add_argument("--storage", default=None,
                   help="coordination database (SQLAlchemy URL; default: optuna.db beside mlflow.db)")
    r.add_argument("--experiment", default=None, help="MLflow experiment (default: the suite's name)")
    r.add_argument("--out", default="artifacts", help="folder for checkpoints and plots (default: artifacts)")
    r.add_argument("--target-ci", type=float, default=None, dest="target_ci",
                   help="adaptive seeds: add seeds to a row until its 95%% CI half-width of test macro-F1 <= W")
    r.add_argument("--max-seeds", type=int, default=None, dest="max_seeds", help="adaptive seeds: at most M per row")
    r.add_argument("--until-decided", action="store_true", dest="until_decided",
                   help="racing: after the first seeds, add a repeat only to rows whose decision against the "
                        "baseline is still open, round by round, until all are decided or --budget is spent")
    r.add_argument("--budget", type=int, default=None,
                   help=f"with --until-decided: at most N training runs (cells) for the selected rows, the first "
                        f"seeds included (default: {racing.DEFAULT_BUDGET_FACTOR}x the first seeds' cells)")
    r.add_argument("--dry-run", action="store_true", dest="dry_run", help="print the planned cells and exit")
    r.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    suite = load_suite(args.file, args.profile)
    if args.n_seeds is not None and args.n_seeds < 1:
        raise HarnessError(f"invalid --n-seeds {args.n_seeds}: expected >= 1")
    seeds = parse_seeds(args.seeds) if args.seeds else (tuple(range(args.n_seeds)) if args.n_seeds else None)
    rows = [r.strip() for r in args.rows.split(",")] if args.rows else None
    summary = run_suite(suite, seeds=seeds, rows=rows, workers=args.workers, data_root=args.data_root,
                        tracking_uri=args.tracking_uri, storage=args.storage, experiment=args.experiment,
                        dry_run=args.dry_run, target_ci=args.target_ci, max_seeds=args.max_seeds,
                        until_decided=args.until_decided, budget=args.budget,
                        out_dir=args.out, progress=sys.stderr.isatty())
    return 1 if summary.failed else 0