"""Ablation suites: each row of a YAML table, run over several seeds as MLflow runs.

Layout in MLflow (the report reads exactly this):
- one experiment per suite (the file's `name`, or `--experiment`);
- one parent run per row (tags `harness.kind=row`, `harness.row`, `harness.row_index`,
  `harness.config_hash`, `harness.claimed_f1`, `harness.note`), with the row's
  mean and 95% CI over its finished seeds as metrics, for the MLflow UI;
- one nested child run per (row, seed) = a cell (tags `harness.kind=cell`,
  `harness.row`, `harness.seed`, `harness.config_hash`), holding the training run.

Work is shared through an Optuna RDB storage used as a queue: each pending cell
is an enqueued (WAITING) trial; a worker claims one atomically
(WAITING -> RUNNING), keeps a heartbeat while it trains, and tells it COMPLETE
or FAIL. A dead worker's heartbeat goes stale and `RetryHeartbeatStaleTrialCallback`
puts its cell back in the queue (on the same machine a dead PID is noticed at
once). MLflow is the record of what is done: a cell is done when a FINISHED
child run with the same config hash and data fingerprint exists, so a rerun
skips it, and a RUNNING child left by a dead worker is marked KILLED.
"""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import services, tracking
from .config import RunConfig, did_you_mean, read_yaml_mapping
from .errors import ConfigError, HarnessError

TOP_KEYS = {"name", "description", "seeds", "base", "rows", "profiles"}
ROW_KEYS = {"name", "config", "claimed_f1", "note"}
PROFILE_KEYS = {"description", "seeds", "override", "epochs_scale"}
NOT_IN_FILES = {"seed", "data_root", "device"}  # given by `seeds` and the command line
HEARTBEAT_S = int(os.environ.get("HARNESS_HEARTBEAT_S", "10"))
GRACE_S = int(os.environ.get("HARNESS_GRACE_S", str(3 * HEARTBEAT_S)))


# --- the suite file ---------------------------------------------------------

@dataclass(frozen=True)
class RowSpec:
    name: str
    config: RunConfig  # seed 0; each cell replaces the seed
    claimed_f1: str = ""  # "0.661", "0.732,0.532" or a range "0.4-0.5"
    note: str = ""


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    seeds: tuple[int, ...]
    rows: tuple[RowSpec, ...]
    profile: str = "full"
    description: str = ""

    def row(self, name: str) -> RowSpec:
        return next(r for r in self.rows if r.name == name)


def load_suite(path: str | os.PathLike, profile: str | None = None) -> Suite:
    """Read and validate a whole suite file; HarnessError names file, row and key."""
    path = Path(path)
    where = str(path)
    doc = read_yaml_mapping(path, "suite")
    _check_keys(doc, TOP_KEYS, where)
    if not isinstance(doc.get("rows"), list) or not doc["rows"]:
        raise HarnessError(f"{where}: key 'rows': expected a non-empty list of rows")
    base = doc.get("base") or {}
    if not isinstance(base, dict):
        raise HarnessError(f"{where}: key 'base': expected a mapping of run settings")
    _check_config_keys(base, f"{where}: base")

    profiles = doc.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise HarnessError(f"{where}: key 'profiles': expected a mapping of profile name -> settings")
    profile_name = profile or "full"
    if profile is not None and profile not in profiles:
        raise HarnessError(f"{where}: no profile {profile!r}; profiles here: "
                           f"{', '.join(profiles) or 'none'}{did_you_mean(profile, profiles)}")
    prof = profiles.get(profile_name) or {}
    for pname, p in profiles.items():
        p = p or {}
        if not isinstance(p, dict):
            raise HarnessError(f"{where}: profile {pname!r}: expected a mapping with keys {sorted(PROFILE_KEYS)}")
        _check_keys(p, PROFILE_KEYS, f"{where}: profile {pname!r}")
        _check_config_keys(p.get("override") or {}, f"{where}: profile {pname!r}: override")
        scale = p.get("epochs_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
            raise HarnessError(f"{where}: profile {pname!r}: key 'epochs_scale': expected a number > 0, got {scale!r}")

    seeds = _check_seeds(prof.get("seeds", doc.get("seeds", [0, 1, 2, 3, 4])),
                         f"{where}: profile {profile_name!r}" if "seeds" in prof else where)
    rows: list[RowSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(doc["rows"]):
        here = f"{where}: row #{i + 1}"
        if not isinstance(raw, dict):
            raise HarnessError(f"{here}: expected a mapping with keys {sorted(ROW_KEYS)}")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise HarnessError(f"{here}: key 'name': expected a non-empty string")
        here = f"{where}: row {name!r}"
        if name in seen:
            raise HarnessError(f"{here}: duplicate row name (row names must be unique)")
        seen.add(name)
        _check_keys(raw, ROW_KEYS, here)
        overrides = raw.get("config") or {}
        if not isinstance(overrides, dict):
            raise HarnessError(f"{here}: key 'config': expected a mapping of run settings")
        _check_config_keys(overrides, here)
        values = {**base, **overrides, **(prof.get("override") or {})}
        scale = prof.get("epochs_scale", 1.0)
        if scale != 1.0:
            values["epochs"] = max(1, round(values.get("epochs", RunConfig.epochs) * scale))
        try:
            cfg = RunConfig.from_dict(values)
        except ConfigError as e:
            raise HarnessError(f"{here}: key {e.key!r}: {e.problem}") from None
        rows.append(RowSpec(name=name, config=cfg, claimed_f1=_claim(raw.get("claimed_f1"), here),
                            note=str(raw.get("note") or "")))
    return Suite(name=str(doc.get("name") or path.stem), path=path, seeds=seeds, rows=tuple(rows),
                 profile=profile_name, description=str(doc.get("description") or ""))


def _check_keys(d: dict, allowed: set[str], where: str) -> None:
    for key in d:
        if key not in allowed:
            raise HarnessError(f"{where}: unknown key {key!r}{did_you_mean(str(key), allowed)}; "
                               f"expected one of {', '.join(sorted(allowed))}")


def _check_config_keys(d: dict, where: str) -> None:
    fields = set(RunConfig.field_names())
    for key in d:
        if key in NOT_IN_FILES:
            raise HarnessError(f"{where}: key {key!r} is set on the command line or by the suite's `seeds`, "
                               f"not in a row")
        if key not in fields:
            raise HarnessError(f"{where}: unknown key {key!r}{did_you_mean(str(key), fields - NOT_IN_FILES)}")


def _check_seeds(seeds: Any, where: str) -> tuple[int, ...]:
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise HarnessError(f"{where}: key 'seeds': expected a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise HarnessError(f"{where}: key 'seeds': duplicate seeds in {seeds}")
    return tuple(seeds)


def _claim(value: Any, where: str) -> str:
    """The seed's single-run number(s) as a tag string; validated."""
    if value is None:
        return ""
    nums = value if isinstance(value, list) else [value]
    if isinstance(value, str):
        parts = value.split("-")
        try:
            lo, hi = (float(p) for p in parts)
            if lo <= hi:
                return f"{lo:g}-{hi:g}"
        except ValueError:
            pass
        raise HarnessError(f"{where}: key 'claimed_f1': expected a number, a list of numbers or a range "
                           f"'low-high', got {value!r}")
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) and 0 <= n <= 1 for n in nums) or not nums:
        raise HarnessError(f"{where}: key 'claimed_f1': expected F1 values in [0, 1], got {value!r}")
    return ",".join(f"{float(n):g}" for n in nums)


# --- planning ----------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    row: str
    seed: int
    config_hash: str

    @property
    def key(self) -> str:
        return f"{self.row}|{self.seed}|{self.config_hash}"


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise HarnessError(f"invalid --seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds or any(s < 0 for s in seeds):
        raise HarnessError(f"invalid --seeds {text!r}: expected integers >= 0")
    return seeds


def select_rows(suite: Suite, names: Sequence[str] | None) -> tuple[RowSpec, ...]:
    if not names:
        return suite.rows
    known = [r.name for r in suite.rows]
    for n in names:
        if n not in known:
            raise HarnessError(f"{suite.path}: no row {n!r}{did_you_mean(n, known)}; rows: {', '.join(known)}")
    return tuple(r for r in suite.rows if r.name in names)


def cell_config(row: RowSpec, seed: int, data_root: str | None) -> RunConfig:
    return row.config.replace(seed=seed, data_root=data_root)


def finished_cells(c, exp_id: str | None, fingerprint: str) -> dict[tuple[str, int, str], Any]:
    """(row, seed, config_hash) -> the FINISHED child run, for this data."""
    if exp_id is None:
        return {}
    runs = _search(c, exp_id, "tags.`harness.kind` = 'cell' and attributes.status = 'FINISHED' "
                              f"and tags.`harness.data_fingerprint` = '{fingerprint}'")
    out = {}
    for r in runs:
        t = r.data.tags
        out.setdefault((t["harness.row"], int(t["harness.seed"]), t["harness.config_hash"]), r)
    return out


def _search(c, exp_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = c.search_runs([exp_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


# --- the work queue (Optuna RDB storage) --------------------------------------------

def default_storage(tracking_uri: str) -> str:
    """A sqlite file beside mlflow.db (never mlflow.db itself: both use alembic)."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return f"sqlite:///{db.parent / 'optuna.db'}"
    return "sqlite:///optuna.db"


def open_storage(url: str, max_retry: int | None = None):
    """An Optuna RDB storage with heartbeats, so a dead worker's trial is retried;
    one per process (SQLAlchemy engines are not shared across processes)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats and the retry callback are "experimental" in Optuna 5 but are the
    # documented way to hand on a dead worker's trial; one warning per process is noise.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # sqlite: wait for the lock rather than fail with "database is locked" under parallel workers.
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry))
        except Exception as e:
            # Workers starting together on a new database race to create its tables
            # ("already exists", a duplicate key): the loser waits and opens what the winner made.
            text = str(e).lower()
            if attempt < 4 and ("already exists" in text or "duplicate" in text or "unique" in text):
                time.sleep(0.5 * (attempt + 1))
                continue
            raise HarnessError(f"cannot open the storage {tracking.redact(url)}: "
                               f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
    raise AssertionError("unreachable")


def open_queue(storage_url: str, experiment: str):
    import optuna

    return optuna.create_study(study_name=f"harness-suite:{experiment}", storage=open_storage(storage_url),
                               load_if_exists=True)


def _cell_of(trial) -> str | None:
    return trial.system_attrs.get("fixed_params", {}).get("cell")


def enqueue(queue, cells: Iterable[Cell]) -> int:
    """Put cells in the queue unless one is already waiting or running."""
    from optuna.trial import TrialState

    live = {_cell_of(t) for t in queue.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))}
    n = 0
    for cell in cells:
        if cell.key not in live:
            queue.enqueue_trial({"cell": cell.key}, user_attrs={"row": cell.row, "seed": cell.seed})
            n += 1
    return n


def reap_dead_local_workers(queue) -> None:
    """A RUNNING cell of a dead process on this host goes back to the queue now,
    rather than after the heartbeat grace period."""
    import optuna
    from optuna.trial import TrialState

    storage = queue._storage
    for t in queue.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("host") != platform.node() or _pid_alive(t.user_attrs.get("pid")):
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                optuna.storages.RetryHeartbeatStaleTrialCallback()(queue, storage.get_trial(t._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker got there first


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return True  # unknown: leave it to the heartbeat
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(queue, keys: set[str]):
    """Atomically take one WAITING cell of ours; None when none is waiting."""
    from optuna.trial import TrialState

    storage = queue._storage
    for t in queue.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if _cell_of(t) in keys and storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
            storage.record_heartbeat(t._trial_id)
            storage.set_trial_user_attr(t._trial_id, "host", platform.node())
            storage.set_trial_user_attr(t._trial_id, "pid", os.getpid())
            return storage.get_trial(t._trial_id)
    return None


class Heartbeat:
    """Records a heartbeat for a claimed trial every HEARTBEAT_S seconds."""

    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:
                pass  # a missed beat only risks a retry, never a lost result

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


def finish(queue, trial, state_name: str) -> None:
    from optuna.trial import TrialState

    state = {"COMPLETE": TrialState.COMPLETE, "FAIL": TrialState.FAIL}[state_name]
    try:
        queue._storage.set_trial_state_values(trial._trial_id, state=state,
                                              values=[0.0] if state == TrialState.COMPLETE else None)
    except Exception:
        pass  # already failed as stale by another worker: MLflow holds the truth


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
              out_dir: str = "artifacts", progress: bool = True) -> Summary:
    """Run every pending (row, seed) cell; returns counts of done/skipped/failed."""
    from .training import prepare, scan_data

    seeds = tuple(seeds or suite.seeds)
    selected = select_rows(suite, rows)
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

    # Scanning the data first: a bad corpus fails here, before any run exists.
    probe = scan_data(selected[0].config.replace(data_root=data_root))
    fingerprint = probe.fingerprint
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    done = finished_cells(c, exp.experiment_id if exp else None, fingerprint)
    all_cells = [Cell(r.name, s, r.config.config_hash) for r in selected for s in seeds]
    pending = [cell for cell in all_cells if (cell.row, cell.seed, cell.config_hash) not in done]
    summary = Summary(skipped=len(all_cells) - len(pending))

    if dry_run:
        print_plan(suite, selected, seeds, all_cells, done, data_root, experiment)
        return summary

    exp_id = tracking.get_or_create_experiment(c, experiment)
    parents = {r.name: row_parent(c, exp_id, suite, r, extra_row_tags or {}) for r in selected}
    queue = open_queue(storage, experiment)
    prepare(selected[0].config.replace(data_root=data_root))  # features cached once before workers start
    plan = Plan(suite=suite, experiment=experiment, tracking_uri=uri, storage=storage, data_root=data_root,
                out_dir=out_dir, parents=parents, cells=tuple(pending), fingerprint=fingerprint,
                extra_row_tags=dict(extra_row_tags or {}))
    print(f"suite {suite.name!r} ({suite.profile}) -> MLflow experiment {experiment!r} at {tracking.redact(uri)}: "
          f"{len(all_cells)} cells, {summary.skipped} already done, {len(pending)} to run, {workers} worker(s)")
    while True:
        if plan.cells:
            enqueue(queue, plan.cells)
            drain(plan, workers, summary, progress)
        plan = dataclasses.replace(plan, cells=tuple(more_seeds(c, exp_id, plan, selected, target_ci, max_seeds)))
        if not plan.cells:
            break
        print(f"adaptive seeds: {len(plan.cells)} more cell(s) to reach a 95% CI half-width <= {target_ci}")
    close_parents(c, exp_id, parents, fingerprint)
    print(f"summary: {summary.done} done, {summary.skipped} skipped (already done), {summary.failed} failed")
    for line in summary.failures:
        print(f"  FAILED {line}")
    return summary


def row_parent(c, exp_id: str, suite: Suite, row: RowSpec, extra: dict[str, str]) -> str:
    """The row's parent run for this config hash: found, or created once."""
    h = row.config.config_hash
    flt = f"tags.`harness.kind` = 'row' and tags.`harness.row` = '{row.name}' and tags.`harness.config_hash` = '{h}'"
    existing = _search(c, exp_id, flt)
    if existing:
        return min(existing, key=lambda r: r.info.start_time).info.run_id
    tags = {**tracking.environment_tags(), "harness.kind": "row", "harness.row": row.name,
            "harness.row_index": str([r.name for r in suite.rows].index(row.name)),
            "harness.config_hash": h, "harness.claimed_f1": row.claimed_f1, "harness.note": row.note,
            "harness.suite": suite.name, "harness.suite_file": str(suite.path), "harness.profile": suite.profile,
            **extra}
    run = c.create_run(exp_id, run_name=row.name, tags=tags)
    params = {k: v for k, v in row.config.to_params().items() if k not in ("seed", "data_root")}
    tracking.log_params(c, run.info.run_id, params)
    # Two processes may create it at once: keep the oldest, drop ours if it lost.
    existing = _search(c, exp_id, flt)
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

    label = f"{cell.row} seed {cell.seed}"
    # Already finished (a rerun of a cell whose worker died after finishing)? Then skip.
    if (cell.row, cell.seed, cell.config_hash) in finished_cells(c, exp_id, plan.fingerprint):
        report("skipped", f"{label} (already finished)")
        return "COMPLETE"
    # Someone else (a duplicate enqueue) is running it under a lower trial number? Let them.
    for t in queue.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _cell_of(t) == cell.key and t.number < trial.number:
            report("skipped", f"{label} (claimed by another worker)")
            return "COMPLETE"
    # A RUNNING run of this cell now can only be left by a dead worker: the queue hands a cell to one live worker.
    for r in _search(c, exp_id, f"tags.`harness.kind` = 'cell' and attributes.status = 'RUNNING' and "
                                f"tags.`harness.row` = '{cell.row}' and tags.`harness.seed` = '{cell.seed}' and "
                                f"tags.`harness.config_hash` = '{cell.config_hash}'"):
        tracking.set_tags(c, r.info.run_id, {"harness.failure_reason": "worker died (process killed or lost)"})
        c.set_terminated(r.info.run_id, status="KILLED")
    row = plan.suite.row(cell.row)
    cfg = cell_config(row, cell.seed, plan.data_root)
    fkey = tuple(getattr(cfg, f) for f in PREPARE_FIELDS)
    t0 = time.time()
    try:
        data = data_cache.get(fkey) or prepare(cfg)
        data_cache.clear()
        data_cache[fkey] = data
        res = run(cfg, experiment=plan.experiment, tracking_uri=plan.tracking_uri,
                  out_dir=Path(plan.out_dir) / plan.experiment / cell.row / f"seed{cell.seed}",
                  run_name=f"{cell.row}/seed{cell.seed}", parent_run_id=plan.parents[cell.row], data=data,
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


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% Student-t half-width (nan for fewer than 2 values)."""
    import numpy as np
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return (float(v.mean()) if len(v) else math.nan), math.nan
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def more_seeds(c, exp_id: str, plan: Plan, rows: Sequence[RowSpec], target_ci: float | None,
               max_seeds: int | None) -> list[Cell]:
    """Adaptive seeds: one more seed for each row whose CI is still wider than the target."""
    if target_ci is None:
        return []
    done = finished_cells(c, exp_id, plan.fingerprint)
    cells = []
    for row in rows:
        seeds = sorted(s for (r, s, h) in done if r == row.name and h == row.config.config_hash)
        scores = [done[(row.name, s, row.config.config_hash)].data.metrics["test_f1_macro"]
                  for s in seeds]
        _, half = mean_ci(scores)
        if len(seeds) < max_seeds and (math.isnan(half) or half > target_ci):
            nxt = max(seeds, default=-1) + 1
            cells.append(Cell(row.name, nxt, row.config.config_hash))
    return cells


def close_parents(c, exp_id: str, parents: dict[str, str], fingerprint: str) -> None:
    """Summarise each row on its parent run (mean, 95% CI, n) for the MLflow UI."""
    done = finished_cells(c, exp_id, fingerprint)
    for row, run_id in parents.items():
        scores = [r.data.metrics["test_f1_macro"] for (name, _, _), r in done.items()
                  if name == row and r.data.tags.get("mlflow.parentRunId") == run_id and "test_f1_macro" in r.data.metrics]
        if not scores:
            continue
        mean, half = mean_ci(scores)
        metrics = {"n_seeds": len(scores), "test_f1_macro_mean": mean}
        if not math.isnan(half):
            metrics.update(test_f1_macro_ci95_low=mean - half, test_f1_macro_ci95_high=mean + half)
        tracking.log_metrics(c, run_id, metrics)
        status = c.get_run(run_id).info.status
        if status == "RUNNING":
            c.set_terminated(run_id, status="FINISHED")


def print_plan(suite: Suite, rows: Sequence[RowSpec], seeds: Sequence[int], cells: Sequence[Cell],
               done: dict, data_root: str | None, experiment: str) -> None:
    print(f"suite {suite.name!r} from {suite.path}, profile {suite.profile!r} -> experiment {experiment!r}; "
          f"data: {data_root or 'synthetic corpus'}; seeds {list(seeds)}")
    print(f"{'row':<28} {'model':<9} {'epochs':>6}  {'done':>4}  {'to run':>6}  seeds to run")
    total_epochs = 0
    n_pending = 0
    for r in rows:
        mine = [cell for cell in cells if cell.row == r.name]
        todo = [cell.seed for cell in mine if (cell.row, cell.seed, cell.config_hash) not in done]
        total_epochs += len(todo) * r.config.epochs
        n_pending += len(todo)
        print(f"{r.name:<28} {r.config.model:<9} {r.config.epochs:>6}  {len(mine) - len(todo):>4}  {len(todo):>6}  "
              f"{','.join(map(str, todo)) or '-'}")
    est = _estimate_seconds(done.values(), rows, cells, done)
    print(f"{len(cells)} cells: {len(cells) - n_pending} already done, {n_pending} to run "
          f"({total_epochs} training epochs){est}")


def _estimate_seconds(runs: Iterable, rows: Sequence[RowSpec], cells: Sequence[Cell], done: dict) -> str:
    """Seconds per epoch measured on finished cells of the same model, where there are any."""
    per_epoch: dict[str, list[float]] = {}
    for r in runs:
        m = r.data.metrics
        if "wall_time_s" in m and m.get("epochs_run"):
            per_epoch.setdefault(r.data.params.get("model", ""), []).append(m["wall_time_s"] / m["epochs_run"])
    if not per_epoch:
        return "; no finished cells yet to estimate the time from"
    secs, unknown = 0.0, 0
    for r in rows:
        todo = sum(1 for cell in cells if cell.row == r.name and (cell.row, cell.seed, cell.config_hash) not in done)
        rates = per_epoch.get(r.config.model)
        if rates:
            secs += todo * r.config.epochs * sum(rates) / len(rates)
        else:
            unknown += todo
    extra = f", plus {unknown} cell(s) of a model not timed yet" if unknown else ""
    return f"; about {secs / 60:.1f} min of training at the measured speed{extra}"


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
                        out_dir=args.out, progress=sys.stderr.isatty())
    return 1 if summary.failed else 0
