"""A suite's workers: what `suite run` hands them (`Plan`), how many processes drain the queue (`drain`,
one GPU each where there are several), and what one worker does with a claimed cell (`run_cell`): skip it
if MLflow holds it finished, mark a dead worker's run KILLED, train it as a nested MLflow run."""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import tracking
from harness.suite.file import Suite
from harness.suite.planning import Cell, Summary, cell_config, cell_runs
from harness.suite.queue import LostClaim, Reaper, claim, finish, open_queue, retrying, trials_in


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
    fingerprints: dict[str, str]  # row name -> the data fingerprint of what it reads (a label filter changes it)
    extra_row_tags: dict[str, str] = field(default_factory=dict)


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

    from harness.train.data import FEATURE_FIELDS, PREPARE_FIELDS, prepare
    from harness.train.run import run

    label = cell.label
    # This cell's runs, by its tags (one small query, not a read of the whole experiment).
    mine = cell_runs(c, exp_id, cell)
    # Already finished (a rerun of a cell whose worker died after finishing)? Then skip.
    if any(r.info.status == "FINISHED" and r.data.tags.get("harness.data_fingerprint") == plan.fingerprints[cell.row]
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
