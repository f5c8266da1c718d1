"""The suite's work queue, on an Optuna RDB storage: each cell handed to exactly one worker.

Each pending cell is an enqueued (WAITING) trial. Every change of hands is one transaction that
first locks the trial's row (sqlite: the database) and re-reads what it decides on (Optuna's
`set_trial_state_values` reads, then writes: on sqlite two workers could both claim one trial):
- `claim`: WAITING -> RUNNING with a fresh owner token (user attr `owner`), heartbeat, host, pid;
  refused while a twin trial of the cell is RUNNING (a cell enqueued by two processes at once);
- a `Claim` heartbeats only while its token owns the trial and `commit`s (user attr `committed`)
  just before the cell's MLflow run is marked FINISHED: a worker that lost its cell meanwhile
  learns it there, and its run ends KILLED as a duplicate (`LostClaim`), never FINISHED;
- `Reaper`: a RUNNING trial of a dead process on this host goes back to WAITING at once; another
  host's when its heartbeat is past the grace period *and* stayed unchanged through a heartbeat
  interval of the reaper's own watch while the storage answered promptly (a heartbeat that could
  not be written because the database was locked or down is no evidence of death); a committed
  one after 10 x the grace. In place: a cell keeps one trial (history in user attr `requeued`).
The queue only hands out work: MLflow is the record of what is done.
"""
from __future__ import annotations

import json
import os
import platform
import threading
import time
import uuid
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import sqlalchemy as sa

from harness import tracking
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.suite.planning import Cell

HEARTBEAT_S = int(os.environ.get("HARNESS_HEARTBEAT_S", "10"))
GRACE_S = int(os.environ.get("HARNESS_GRACE_S", str(3 * HEARTBEAT_S)))
# How long queue operations ride out a storage that is down (a restarted PostgreSQL), in seconds.
RETRY_S = int(os.environ.get("HARNESS_QUEUE_RETRY_S", "300"))
# The name this process gives its machine in the queue: workers that share it judge each other by pid.
HOST = os.environ.get("HARNESS_HOST") or platform.node()
COMMITTED_GRACE_FACTOR = 10


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
    # sqlite: wait for the lock rather than fail with "database is locked" under parallel workers;
    # a server: test pooled connections before use, so a restarted database costs no failed call.
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
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


def trials_in(queue, states: Iterable[Any]) -> list[tuple[int, int, str | None]]:
    """(trial id, number, cell) of the queue's trials in `states`, by number: one query on those
    trials alone. Never `study.get_trials`: Optuna's cache reads every trial of the study first
    (the finished ones too), so each worker's first claim grew with the store."""
    trials, _, _, sys_attrs = _tables()
    engine = getattr(queue._storage, "_backend", queue._storage).engine
    with engine.connect() as conn:
        rows = conn.execute(sa.select(trials.c.trial_id, trials.c.number, sys_attrs.c.value_json).outerjoin(
            sys_attrs, sa.and_(sys_attrs.c.trial_id == trials.c.trial_id, sys_attrs.c.key == "fixed_params")).where(
            trials.c.study_id == queue._study_id, trials.c.state.in_(list(states))).order_by(trials.c.number)).all()
    return [(tid, number, json.loads(v).get("cell") if v else None) for tid, number, v in rows]


def enqueue(queue, cells: Iterable[Cell]) -> int:
    """Put cells in the queue unless one is already waiting or running."""
    from optuna.trial import TrialState

    live = {cell for _, _, cell in retrying(lambda: trials_in(queue, (TrialState.WAITING, TrialState.RUNNING)))}
    n = 0
    for cell in cells:
        if cell.key not in live:
            retrying(lambda: queue.enqueue_trial({"cell": cell.key}, user_attrs={"row": cell.row, "seed": cell.seed}))
            n += 1
    return n


# --- storage health, transactions ---------------------------------------------------

_trouble = [0.0]  # time.monotonic() of this process's last failed or slow (locked) queue operation


def _troubled(since: float) -> bool:
    return _trouble[0] > since


def retrying(fn: Callable[[], Any], what: str = "the work queue") -> Any:
    """`fn()`, retried while the storage is unreachable (a database restart), for up to RETRY_S seconds."""
    import sqlalchemy.exc

    deadline = time.monotonic() + RETRY_S
    delay = 0.5
    while True:
        try:
            return fn()
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as e:
            _trouble[0] = time.monotonic()
            if time.monotonic() + delay > deadline:
                raise HarnessError(f"{what} stayed unreachable for {RETRY_S} s "
                                   f"(HARNESS_QUEUE_RETRY_S): {str(e).splitlines()[0]}") from None
            time.sleep(delay)
            delay = min(2 * delay, 5.0)


def _tables():
    from optuna.storages._rdb import models

    return (models.TrialModel.__table__, models.TrialHeartbeatModel.__table__,
            models.TrialUserAttributeModel.__table__, models.TrialSystemAttributeModel.__table__)


class _Slow(Exception):
    """The trial's lock took too long to get: the database was locked; decide nothing."""


@contextmanager
def _locked(queue, trial_id: int, cell: str | None = None, max_wait: float | None = None):
    """A transaction holding the trial's row lock (sqlite: the database's write lock) and, on
    PostgreSQL, an advisory lock on its cell, so cross-row checks of one cell are serialised too."""
    import hashlib

    trials = _tables()[0]
    engine = getattr(queue._storage, "_backend", queue._storage).engine
    with engine.begin() as conn:
        t0 = time.monotonic()
        if cell is not None and engine.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha1(f"{queue._study_id}|{cell}".encode()).digest()[:8], "big", signed=True)
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        conn.execute(sa.update(trials).where(trials.c.trial_id == trial_id).values(state=trials.c.state))
        if max_wait is not None and time.monotonic() - t0 > max_wait:
            _trouble[0] = time.monotonic()
            raise _Slow()
        yield conn


def _state(conn, trial_id: int):
    trials = _tables()[0]
    return conn.execute(sa.select(trials.c.state).where(trials.c.trial_id == trial_id)).scalar()


def _attrs(conn, trial_id: int) -> dict[str, Any]:
    ua = _tables()[2]
    rows = conn.execute(sa.select(ua.c.key, ua.c.value_json).where(ua.c.trial_id == trial_id))
    return {k: json.loads(v) for k, v in rows}


def _set_attrs(conn, trial_id: int, attrs: dict[str, Any], drop: Iterable[str] = ()) -> None:
    ua = _tables()[2]
    conn.execute(sa.delete(ua).where(ua.c.trial_id == trial_id, ua.c.key.in_([*attrs, *drop])))
    if attrs:
        conn.execute(sa.insert(ua), [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                                     for k, v in attrs.items()])


def _beat(conn, trial_id: int) -> None:
    hb = _tables()[1]
    now = conn.execute(sa.select(sa.func.now())).scalar()  # the database's clock, as Optuna's heartbeats
    if conn.execute(sa.update(hb).where(hb.c.trial_id == trial_id).values(heartbeat=now)).rowcount == 0:
        conn.execute(sa.insert(hb).values(trial_id=trial_id, heartbeat=now))


# --- claiming -----------------------------------------------------------------------

def _try_claim(queue, trial_id: int, cell: str) -> str | None:
    """WAITING -> RUNNING under the lock, unless another trial of the cell is RUNNING; the owner token."""
    from optuna.trial import TrialState

    trials, _, _, sa_attrs = _tables()
    with _locked(queue, trial_id, cell) as conn:
        if _state(conn, trial_id) != TrialState.WAITING:
            return None
        other = conn.execute(
            sa.select(trials.c.trial_id).join(sa_attrs, sa_attrs.c.trial_id == trials.c.trial_id).where(
                trials.c.study_id == queue._study_id, trials.c.state == TrialState.RUNNING,
                trials.c.trial_id != trial_id, sa_attrs.c.key == "fixed_params",
                sa_attrs.c.value_json == json.dumps({"cell": cell}))).first()
        if other is not None:
            return None
        token = uuid.uuid4().hex
        conn.execute(sa.update(trials).where(trials.c.trial_id == trial_id).values(
            state=TrialState.RUNNING, datetime_start=datetime.now(timezone.utc).replace(tzinfo=None)))
        _beat(conn, trial_id)
        _set_attrs(conn, trial_id, {"owner": token, "host": HOST, "pid": os.getpid()}, drop=("committed",))
        return token


def claim(queue, keys: set[str]) -> Claim | None:
    """Take one WAITING cell of ours; None when none can be taken now."""
    from optuna.trial import TrialState

    for trial_id, number, cell in retrying(lambda: trials_in(queue, (TrialState.WAITING,))):
        if cell in keys:
            token = retrying(lambda: _try_claim(queue, trial_id, cell))
            if token:
                return Claim(queue, trial_id, number, cell, token)
    return None


class LostClaim(Exception):
    """This worker's cell was handed to another worker while it trained: its run is a duplicate."""
    mlflow_status = "KILLED"
    mlflow_tags = {"harness.duplicate": "true"}


class Claim:
    """One worker's hold on one cell's trial: heartbeats while it trains (only while it still owns
    the trial), takes the trial back if it was put back in the queue meanwhile, and `commit`s."""

    def __init__(self, queue, trial_id: int, number: int, cell: str, token: str):
        self.queue, self._trial_id, self.number, self.cell, self.token = queue, trial_id, number, cell, token
        self.lost = threading.Event()
        self.committed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            t0 = time.monotonic()
            try:
                with self._lock:
                    self._hold(commit=False)
            except Exception:
                _trouble[0] = time.monotonic()  # a missed beat only risks a requeue, never a lost result
            if time.monotonic() - t0 > HEARTBEAT_S / 2:
                _trouble[0] = time.monotonic()  # the beat waited for a lock: heartbeats are late everywhere

    def _hold(self, commit: bool) -> bool:
        """Beat (or commit) if the trial is still ours; take it back if it waits in the queue again."""
        from optuna.trial import TrialState

        if self.lost.is_set():
            return False
        with _locked(self.queue, self._trial_id, self.cell) as conn:
            state, attrs = _state(conn, self._trial_id), _attrs(conn, self._trial_id)
            if state == TrialState.RUNNING and attrs.get("owner") == self.token:
                _beat(conn, self._trial_id)
                if commit:
                    _set_attrs(conn, self._trial_id, {"committed": self.token})
                return True
        if state == TrialState.WAITING:  # requeued (judged dead) and not yet taken: ours again
            token = _try_claim(self.queue, self._trial_id, self.cell)
            if token:
                self.token = token
                return self._hold(commit)
        self.lost.set()
        return False

    def check(self, *_: Any) -> None:
        """Raises LostClaim when another worker owns the cell now (an `on_epoch` hook: stop early)."""
        if self.lost.is_set():
            raise LostClaim(f"queue trial {self.number} of cell {self.cell} was handed to another worker "
                            f"while this one trained; that worker's run counts")

    def commit(self) -> None:
        """Called just before the cell's run is marked FINISHED: from here on the cell is this worker's."""
        with self._lock:
            self.committed = retrying(lambda: self._hold(commit=True))
        self.check()

    def finish(self, state_name: str) -> None:
        """COMPLETE or FAIL the trial if it is still ours (a lost claim leaves it to its owner)."""
        from optuna.storages._rdb.models import TrialValueModel
        from optuna.trial import TrialState

        trials, values = _tables()[0], TrialValueModel.__table__

        def done() -> None:
            # Checked and written in one locked transaction: one commit, and no moment between them in
            # which the trial could change hands (what Optuna's set_trial_state_values writes, by hand).
            with _locked(self.queue, self._trial_id) as conn:
                attrs = _attrs(conn, self._trial_id)
                if self.lost.is_set() or _state(conn, self._trial_id) != TrialState.RUNNING or \
                        attrs.get("owner") != self.token:
                    return
                conn.execute(sa.update(trials).where(trials.c.trial_id == self._trial_id).values(
                    state=getattr(TrialState, state_name),
                    datetime_complete=datetime.now(timezone.utc).replace(tzinfo=None)))
                if state_name == "COMPLETE":
                    value, kind = TrialValueModel.value_to_stored_repr(0.0)
                    conn.execute(sa.insert(values).values(trial_id=self._trial_id, objective=0, value=value,
                                                          value_type=kind))
        try:
            retrying(done)
        except Exception:
            pass  # requeued meanwhile: its next owner finishes it

    def __enter__(self) -> "Claim":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


# --- reaping ------------------------------------------------------------------------

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


class Reaper:
    """Puts the cells of dead workers back in the queue; one per worker process (it keeps a watch)."""

    def __init__(self) -> None:
        self.watch: dict[int, tuple[Any, Any, float]] = {}  # trial id -> (owner, heartbeat, first seen stale)

    def __call__(self, queue) -> int:
        try:
            return retrying(lambda: self._reap(queue))
        except _Slow:
            self.watch.clear()
            return 0

    def _reap(self, queue) -> int:
        from optuna.trial import TrialState

        trials, hb, _, _ = _tables()
        engine = getattr(queue._storage, "_backend", queue._storage).engine
        t0 = time.monotonic()
        with engine.connect() as conn:
            now = conn.execute(sa.select(sa.func.now())).scalar()
            rows = conn.execute(sa.select(trials.c.trial_id, hb.c.heartbeat).outerjoin(
                hb, hb.c.trial_id == trials.c.trial_id).where(
                trials.c.study_id == queue._study_id, trials.c.state == TrialState.RUNNING)).all()
            attrs = {tid: _attrs(conn, tid) for tid, _ in rows}
            conn.rollback()
        if time.monotonic() - t0 > HEARTBEAT_S / 2:
            _trouble[0] = time.monotonic()
        n = 0
        for tid, beat in rows:
            a = attrs[tid]
            if a.get("host") == HOST:
                self.watch.pop(tid, None)
                if not _pid_alive(a.get("pid")):
                    n += self._requeue(queue, tid, a.get("owner"), None, "worker died (its process is gone)")
                continue
            grace = GRACE_S * (COMMITTED_GRACE_FACTOR if a.get("committed") else 1)
            if beat is None or (now.replace(tzinfo=None) - beat.replace(tzinfo=None)).total_seconds() <= grace:
                self.watch.pop(tid, None)
                continue
            seen = self.watch.get(tid)
            if seen is None or seen[:2] != (a.get("owner"), beat) or _troubled(seen[2]):
                self.watch[tid] = (a.get("owner"), beat, time.monotonic())  # (re)start watching
            elif time.monotonic() - seen[2] >= HEARTBEAT_S + 1:
                n += self._requeue(queue, tid, a.get("owner"), beat, f"heartbeat older than {grace} s")
                self.watch.pop(tid, None)
        return n

    @staticmethod
    def _requeue(queue, trial_id: int, owner: Any, beat: Any, reason: str) -> int:
        """RUNNING -> WAITING in place, if nothing moved since it was judged: same owner, same heartbeat."""
        from optuna.trial import TrialState

        trials, hb, _, _ = _tables()
        with _locked(queue, trial_id, max_wait=HEARTBEAT_S / 2) as conn:
            a = _attrs(conn, trial_id)
            now_beat = conn.execute(sa.select(hb.c.heartbeat).where(hb.c.trial_id == trial_id)).scalar()
            if _state(conn, trial_id) != TrialState.RUNNING or a.get("owner") != owner or \
                    (beat is not None and now_beat != beat):
                return 0
            history = a.get("requeued", []) + [{"from": f"{a.get('host')}:{a.get('pid')}", "reason": reason}]
            conn.execute(sa.update(trials).where(trials.c.trial_id == trial_id).values(state=TrialState.WAITING))
            _set_attrs(conn, trial_id, {"requeued": history}, drop=("owner", "committed"))
            return 1


def finish(queue, claim_: Claim, state_name: str) -> None:
    if state_name in ("COMPLETE", "FAIL"):  # "LOST": the cell's owner finishes it
        claim_.finish(state_name)
