"""The suite's work queue, on an Optuna RDB storage.

Each pending cell is an enqueued (WAITING) trial; a worker claims one
atomically (WAITING -> RUNNING), keeps a heartbeat while it trains, and tells
it COMPLETE or FAIL. A dead worker's heartbeat goes stale and
`RetryHeartbeatStaleTrialCallback` puts its cell back in the queue (on the same
machine a dead PID is noticed at once). The queue only hands out work: MLflow
is the record of what is done.
"""
from __future__ import annotations

import os
import platform
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from harness import tracking
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.suite.planning import Cell

HEARTBEAT_S = int(os.environ.get("HARNESS_HEARTBEAT_S", "10"))
GRACE_S = int(os.environ.get("HARNESS_GRACE_S", str(3 * HEARTBEAT_S)))


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
