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

from . import racing, services, tracking
from .errors import HarnessError
from .planning import (Cell, Summary, cell_config, finished_cells, parse_seeds, print_plan, row_cells, search_runs,
                       select_rows)
from .queue import Heartbeat, _cell_of, claim, default_storage, enqueue, finish, open_queue, reap_dead_local_workers
from .stats import mean_ci, nominal_ratio
from .suite_file import RowSpec, Suite, load_suite


def row_ci(cells: Sequence) -> tuple[float, float]:
    """Mean test macro-F1 of a row's finished cell runs and the 95% half-width of the report's
    default interval (corrected for overlapping training sets); nan half-width for fewer than 2."""
    values = [r.data.metrics["test_f1_macro"] for r in cells]
    mean = sum(values) / len(values) if values else math.nan
    if len(values) < 2:
        return mean, math.nan
    ratio = sum(cell_ratio(r) for r in cells) / len(cells)
    low, high, _ = mean_ci(values, "corrected", test_train_ratio=ratio)
    return mean, (high - low) / 2


def cell_ratio(run) -> float:
    """n_test / n_train of a cell run: its clip counts, or (older runs) the ratios of its config."""
    m, p = run.data.metrics, run.data.params
    if m.get("n_train_clips"):
        return m["n_test_clips"] / m["n_train_clips"]
    return nominal_ratio(float(p.get("train_ratio") or 0.8), float(p.get("val_ratio") or 0.1),
                         int(p.get("cv_folds") or 0))


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
    from .data import check_cv
    from .training import prepare, scan_data

    seeds = tuple(seeds or suite.seeds)
    selected = select_rows(suite, rows)
    baseline = check_racing(suite, selected, seeds, until_decided, budget, target_ci)
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

    # Scanning the data first: a bad corpus, or a CV design it cannot hold, fails here, before any run exists.
    probe = scan_data(selected[0].config.replace(data_root=data_root))
    fingerprint = probe.fingerprint
    for r in selected:
        if r.config.cv_folds:
            try:
                check_cv(len(probe.actors), r.config.cv_folds, r.config.val_ratio)
            except HarnessError as e:
                raise HarnessError(f"{suite.path}: row {r.name!r}: {e}") from None
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    done = finished_cells(c, exp.experiment_id if exp else None, fingerprint)
    all_cells = [cell for r in selected for cell in row_cells(r, seeds)]
    pending = [cell for cell in all_cells if cell.ident not in done]
    summary = Summary(skipped=len(all_cells) - len(pending))

    if until_decided and budget is None:
        budget = racing.DEFAULT_BUDGET_FACTOR * len(all_cells)
    if until_decided and budget < len(all_cells):
        raise HarnessError(f"invalid --budget {budget}: the first seeds alone are {len(all_cells)} training runs "
                           f"({len(selected)} rows x {len(seeds)} seeds{' x folds' if len(all_cells) > len(selected) * len(seeds) else ''})")

    if dry_run:
        print_plan(suite, selected, seeds, all_cells, done, data_root, experiment,
                   budget=budget if until_decided else None)
        return summary

    exp_id = tracking.get_or_create_experiment(c, experiment)
    parents = {r.name: row_parent(c, exp_id, suite, r, extra_row_tags or {}) for r in selected}
    queue = open_queue(storage, experiment)
    prepare(cell_config(selected[0], all_cells[0], data_root))  # features cached once before workers start
    plan = Plan(suite=suite, experiment=experiment, tracking_uri=uri, storage=storage, data_root=data_root,
                out_dir=out_dir, parents=parents, cells=tuple(pending), fingerprint=fingerprint,
                extra_row_tags=dict(extra_row_tags or {}))
    print(f"suite {suite.name!r} ({suite.profile}) -> MLflow experiment {experiment!r} at {tracking.redact(uri)}: "
          f"{len(all_cells)} cells, {summary.skipped} already done, {len(pending)} to run, {workers} worker(s)")
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
            if not nxt:
                print(f"racing: every row decided after {rounds} round(s), {st.spent} training runs "
                      f"(budget {budget})")
                break
            if st.spent + len(nxt) > budget:
                print(f"racing: budget reached ({st.spent} of {budget} training runs spent, the next round needs "
                      f"{len(nxt)}); still undecided: {', '.join(open_rows)}")
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
        record_race(c, exp_id, parents, fingerprint, selected, seeds, budget)
    close_parents(c, exp_id, parents, fingerprint, suite)
    print(f"summary: {summary.done} done, {summary.skipped} skipped (already done), {summary.failed} failed")
    for line in summary.failures:
        print(f"  FAILED {line}")
    return summary


def check_racing(suite: Suite, selected: Sequence[RowSpec], seeds: Sequence[int], until_decided: bool,
                 budget: int | None, target_ci: float | None) -> str:
    """`--until-decided`'s flags, checked before any work; returns the baseline row it races against."""
    from .table import default_baseline

    if budget is not None and not until_decided:
        raise HarnessError("--budget goes with --until-decided")
    if budget is not None and budget < 1:
        raise HarnessError(f"invalid --budget {budget}: expected a number of training runs >= 1")
    baseline = default_baseline([r.name for r in suite.rows])
    if not until_decided:
        return baseline
    if target_ci is not None:
        raise HarnessError("--until-decided and --target-ci are two stopping rules: use one")
    if len(seeds) < 2:
        raise HarnessError(f"--until-decided needs at least 2 starting seeds (a decision needs 2 paired repeats), "
                           f"got {list(seeds)}")
    if baseline not in {r.name for r in selected}:
        raise HarnessError(f"--until-decided races rows against the baseline row {baseline!r}: include it in --rows")
    if len(selected) < 2:
        raise HarnessError("--until-decided needs a row besides the baseline")
    return baseline


def record_race(c, exp_id: str, parents: dict[str, str], fingerprint: str, rows: Sequence[RowSpec],
                start: Sequence[int], budget: int) -> None:
    """On each row's parent: that its seeds came from a sequential design, how many rounds, the budget."""
    st = racing.standing(c, exp_id, rows, rows[0].name, fingerprint)
    seeds_run = {s for _, s, _ in st.finished}
    rounds = len(seeds_run - set(start))
    for run_id in parents.values():
        tracking.set_tags(c, run_id, racing.race_tags(rounds, budget, racing.RACING_PROB, start))


def row_parent(c, exp_id: str, suite: Suite, row: RowSpec, extra: dict[str, str]) -> str:
    """The row's parent run for this config hash: found, or created once."""
    h = row.config.config_hash
    flt = f"tags.`harness.kind` = 'row' and tags.`harness.row` = '{row.name}' and tags.`harness.config_hash` = '{h}'"
    existing = search_runs(c, exp_id, flt)
    if existing:
        return min(existing, key=lambda r: r.info.start_time).info.run_id
    tags = {**tracking.environment_tags(), "harness.kind": "row", "harness.row": row.name,
            "harness.row_index": str([r.name for r in suite.rows].index(row.name)),
            "harness.config_hash": h, "harness.claimed_f1": row.claimed_f1, "harness.note": row.note,
            "harness.suite": suite.name, "harness.suite_file": str(suite.path), "harness.profile": suite.profile,
            "harness.profile_changes": row.profile_changes,
            **extra}
    run = c.create_run(exp_id, run_name=row.name, tags=tags)
    params = {k: v for k, v in row.config.to_params().items() if k not in ("seed", "data_root")}
    tracking.log_params(c, run.info.run_id, params)
    # Two processes may create it at once: keep the oldest, drop ours if it lost.
    existing = search_runs(c, exp_id, flt)
    winner = min(existing, key=lambda r: r.info.start_time).info.run_id
    if winner != run.info.run_id:
        c.delete_run(run.info.run_id)
    return winner


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
        procs = [ctx.Process(target=_worker_main, args=(plan, messages, threads), daemon=False)
                 for _ in range(workers)]
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


def _worker_main(plan: Plan, messages, threads: int) -> None:
    parent = os.getppid()
    try:
        # An orphaned worker (its `suite run` was killed) finishes its cell and stops.
        work(plan, lambda kind, line: messages.put((kind, line)), threads, stop=lambda: os.getppid() != parent)
    finally:
        messages.put(("exit", ""))


def work(plan: Plan, report, threads: int | None, stop=lambda: False) -> None:
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
    while not stop():
        trial = claim(queue, keys)
        if trial is None:
            reap_dead_local_workers(queue)
            import optuna
            optuna.storages.fail_stale_trials(queue)  # a dead remote worker's cell comes back after the grace period
            live = [t for t in queue.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
                    if _cell_of(t) in keys]
            if not live:
                return
            time.sleep(0.2)  # another worker's last cell: poll briskly so the suite ends when it does
            continue
        cell = by_key[_cell_of(trial)]
        with Heartbeat(queue._storage, trial._trial_id):
            state = run_cell(plan, cell, trial, queue, c, exp_id, report, data_cache)
        finish(queue, trial, state)


def run_cell(plan: Plan, cell: Cell, trial, queue, c, exp_id: str, report, data_cache: dict) -> str:
    from optuna.trial import TrialState

    from .training import PREPARE_FIELDS, prepare, run

    label = cell.label
    # Already finished (a rerun of a cell whose worker died after finishing)? Then skip.
    if cell.ident in finished_cells(c, exp_id, plan.fingerprint):
        report("skipped", f"{label} (already finished)")
        return "COMPLETE"
    # Someone else (a duplicate enqueue) is running it under a lower trial number? Let them.
    for t in queue.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _cell_of(t) == cell.key and t.number < trial.number:
            report("skipped", f"{label} (claimed by another worker)")
            return "COMPLETE"
    # A RUNNING run of this cell now can only be left by a dead worker: the queue hands a cell to one live worker.
    same_fold = "" if cell.fold is None else f" and tags.`harness.fold` = '{cell.fold}'"
    for r in search_runs(c, exp_id, f"tags.`harness.kind` = 'cell' and attributes.status = 'RUNNING' and "
                                    f"tags.`harness.row` = '{cell.row}' and tags.`harness.seed` = '{cell.seed}' and "
                                    f"tags.`harness.config_hash` = '{cell.config_hash}'{same_fold}"):
        tracking.set_tags(c, r.info.run_id, {"harness.failure_reason": "worker died (process killed or lost)"})
        c.set_terminated(r.info.run_id, status="KILLED")
    row = plan.suite.row(cell.row)
    cfg = cell_config(row, cell, plan.data_root)
    fkey = tuple(getattr(cfg, f) for f in PREPARE_FIELDS)
    fold = "" if cell.fold is None else f"fold{cell.fold}"
    t0 = time.time()
    try:
        data = data_cache.get(fkey) or prepare(cfg)
        data_cache.clear()
        data_cache[fkey] = data
        res = run(cfg, experiment=plan.experiment, tracking_uri=plan.tracking_uri,
                  out_dir=Path(plan.out_dir) / plan.experiment / cell.row / f"seed{cell.seed}" / fold,
                  run_name=f"{cell.row}/seed{cell.seed}" + (f"/{fold}" if fold else ""),
                  parent_run_id=plan.parents[cell.row], data=data,
                  extra_tags={"harness.kind": "cell", "harness.row": cell.row, "harness.suite": plan.suite.name,
                              "harness.profile": plan.suite.profile, "harness.queue_trial": str(trial.number),
                              "harness.worker": f"{platform.node()}:{os.getpid()}",
                              **plan.extra_row_tags})
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
    done = finished_cells(c, exp_id, plan.fingerprint)
    cells = []
    for row in rows:
        mine = [r for (name, _, _, h), r in done.items() if name == row.name and h == row.config.config_hash]
        seeds = sorted({s for (name, s, _, h) in done if name == row.name and h == row.config.config_hash})
        _, half = row_ci(mine)
        if len(seeds) < max_seeds and (math.isnan(half) or half > target_ci):
            cells += row_cells(row, [max(seeds, default=-1) + 1])
    return cells


def close_parents(c, exp_id: str, parents: dict[str, str], fingerprint: str, suite: Suite | None = None) -> None:
    """Summarise each row on its parent run for the MLflow UI: mean, 95% CI and n as metrics, and the
    answer in words as the run's note (`mlflow.note.content`): mean, CI, n and Δ vs the baseline row.

    The baseline is the report's default: the first row (of `suite`, else of `parents`) whose name
    starts with "baseline", else the first row."""
    from .table import default_baseline

    done = finished_cells(c, exp_id, fingerprint)
    cells = {}
    for row, run_id in parents.items():
        cells[row] = [r for (name, _, _, _), r in done.items()
                      if name == row and r.data.tags.get("mlflow.parentRunId") == run_id
                      and "test_f1_macro" in r.data.metrics]
    order = [r.name for r in suite.rows] if suite is not None else list(parents)
    baseline = default_baseline(order) if order else None
    if baseline is not None and baseline not in cells and suite is not None:  # a run of other rows only
        h = suite.row(baseline).config.config_hash
        cells[baseline] = [r for (name, _, _, hh), r in done.items()
                           if name == baseline and hh == h and "test_f1_macro" in r.data.metrics]
    for row, run_id in parents.items():
        mine = cells[row]
        if not mine:
            continue
        mean, half = row_ci(mine)
        metrics = {"n_seeds": len({r.data.tags["harness.seed"] for r in mine}), "n_resamples": len(mine),
                   "test_f1_macro_mean": mean}
        if not math.isnan(half):  # the metric's range bounds the interval
            metrics.update(test_f1_macro_ci95_low=max(0.0, mean - half), test_f1_macro_ci95_high=min(1.0, mean + half))
        tracking.log_metrics(c, run_id, metrics)
        parent = c.get_run(run_id)
        tags = parent.data.tags
        tracking.set_tags(c, run_id, {NOTE_TAG: row_note(row, mine, baseline, cells.get(baseline, []),
                                                          tags.get("harness.profile_changes", ""),
                                                          tags.get("harness.profile", ""))})
        if parent.info.status == "RUNNING":
            c.set_terminated(run_id, status="FINISHED")


NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI


def _resample(run) -> tuple[int, int | None]:
    """(seed, fold) of a cell run: what pairs it with the same resample of another row."""
    fold = run.data.tags.get("harness.fold", "")
    return int(run.data.tags["harness.seed"]), (int(fold) if fold != "" else None)


def paired_difference(cells: Sequence, reference: Sequence) -> tuple[float, float, float, int]:
    """Δ = row − reference in test macro-F1 over the resamples both finished, matched on (seed, fold):
    (mean Δ, 95% low, 95% high, pairs), with the corrected interval of `row_ci` (nan below 2 pairs)."""
    from .stats import corrected_t_interval

    mine = {_resample(r): r for r in cells}
    ref = {_resample(r): r for r in reference}
    keys = sorted(set(mine) & set(ref), key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    if not keys:
        return math.nan, math.nan, math.nan, 0
    d = [mine[k].data.metrics["test_f1_macro"] - ref[k].data.metrics["test_f1_macro"] for k in keys]
    delta = sum(d) / len(d)
    if len(d) < 2:
        return delta, math.nan, math.nan, len(d)
    both = [mine[k] for k in keys] + [ref[k] for k in keys]
    low, high = corrected_t_interval(d, sum(cell_ratio(r) for r in both) / len(both))
    return delta, max(-1.0, low), min(1.0, high), len(d)


def row_note(row: str, cells: Sequence, baseline: str | None, baseline_cells: Sequence, changes: str = "",
             profile: str = "") -> str:
    """The parent run's note (markdown, 2-3 lines): the row's answer at a glance. The first line is the
    numbers alone, "mean [95% CI], Δ delta [95% CI]", in at most 50 characters: what the runs table's
    Description column shows; the next line says what they are."""
    mean, half = row_ci(cells)
    seeds = len({r.data.tags["harness.seed"] for r in cells})
    folds = len({_resample(r)[1] for r in cells})
    n = f"{len(cells)} resamples ({seeds} seed{'' if seeds == 1 else 's'} × {folds} folds)" \
        if len(cells) != seeds else f"{seeds} seed{'' if seeds == 1 else 's'}"
    ci = f" [{max(0.0, mean - half):.3f}, {min(1.0, mean + half):.3f}]" if not math.isnan(half) else ""
    head = f"{mean:.3f}{ci}"
    what = [f"test macro-F1: mean over {n}" + (" and its 95% CI (corrected resampled t)" if ci else
                                                ", no interval (fewer than 2 resamples)")]
    if baseline is None:
        pass
    elif row == baseline:
        head += ", baseline"
        what.append("this is the baseline row the others' Δ is measured against")
    else:
        delta, low, high, pairs = paired_difference(cells, baseline_cells)
        if pairs == 0:
            head += ", Δ n/a"
            what.append(f"no resample finished in both this row and `{baseline}`, so no Δ")
        else:
            dci = f" [{low:+.3f}, {high:+.3f}]" if not math.isnan(low) else ""
            head += f", Δ {delta:+.3f}{dci}"
            what.append(f"Δ = this row − `{baseline}`, paired over {pairs} resample{'' if pairs == 1 else 's'} "
                        f"(same seed and fold){', and its 95% CI' if dci else ''}")
    lines = [head, "; ".join(what) + "."]
    if changes:
        lines.append(f"Profile `{profile or '?'}` changes the training ({changes}): not the suite file's setting.")
    return "  \n".join(lines)


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
    r.add_argument("--data_root", default=None, help="RAVDESS root (default: the synthetic corpus)")
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