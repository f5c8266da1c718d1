"""The work queue hands each cell to exactly one worker: atomic claims, a lock-aware reaper, a worker that
lost its cell while it trained marks its run a duplicate (never FINISHED), and the report never counts one."""
from __future__ import annotations

import sqlite3
import threading
import time

import pandas as pd
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from harness import tracking
from harness.report import runs
from harness.suite import queue as q
from harness.suite.planning import Cell
from harness.train import run as training


def cells(n: int) -> list[Cell]:
    return [Cell("row", s, "hash") for s in range(n)]


@pytest.fixture
def storage(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'q.db'}"


def state_of(queue, claim):
    return queue._storage.get_trial(claim._trial_id).state


def attrs_of(queue, claim) -> dict:
    return queue._storage.get_trial(claim._trial_id).user_attrs


@pytest.fixture
def fast_beats(monkeypatch):
    monkeypatch.setattr(q, "HEARTBEAT_S", 1)
    monkeypatch.setattr(q, "GRACE_S", 1)


# --- claims -------------------------------------------------------------------------

def test_claiming_reads_the_waiting_trials_only_never_every_trial_of_the_study(storage, monkeypatch):
    """Optuna's cached `get_trials` loads every trial of the study on a process's first read: a claim
    that used it grew with the finished trials in the store."""
    first = q.open_queue(storage, "grown")
    q.enqueue(first, cells(30))
    for _ in range(25):
        q.claim(first, {c.key for c in cells(30)}).finish("COMPLETE")
    queue = q.open_queue(storage, "grown")  # a worker process that starts now
    monkeypatch.setattr(type(queue._storage._backend), "_get_trials",
                        lambda *a, **k: pytest.fail("read every trial of the study"))
    keys = {c.key for c in cells(32)}
    assert q.enqueue(queue, [Cell("row", s, "hash") for s in (30, 31)]) == 2
    got = [q.claim(queue, keys) for _ in range(7)]
    assert all(got) and len({g.cell for g in got}) == 7 and q.claim(queue, keys) is None
    assert sorted(number for _, number, _ in q.trials_in(queue, (TrialState.RUNNING,))) == sorted(g.number for g in got)
    got[0].finish("COMPLETE")  # as Optuna reads a finished trial: its state, value and end
    done = queue._storage.get_trial(got[0]._trial_id)
    assert done.state == TrialState.COMPLETE and done.values == [0.0] and done.datetime_complete >= done.datetime_start


def test_two_workers_claiming_at_once_never_both_get_one_cell(storage):
    """Worker 1 is held just before its first write to the trials table, after it has seen the first cell
    WAITING; worker 2 claims meanwhile. Optuna's own WAITING -> RUNNING reads, then writes, and let both
    take that cell; a claim decided under the row's lock gives worker 1 the next one."""
    one, two = q.open_queue(storage, "race"), q.open_queue(storage, "race")
    q.enqueue(one, cells(2))
    keys = {c.key for c in cells(2)}
    at_write, two_done = threading.Event(), threading.Event()

    def hold(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("UPDATE TRIALS") and not at_write.is_set():
            at_write.set()
            two_done.wait(timeout=20)

    sa.event.listen(one._storage._backend.engine, "before_cursor_execute", hold)
    got: dict = {}
    t = threading.Thread(target=lambda: got.setdefault("one", q.claim(one, keys)))
    t.start()
    assert at_write.wait(timeout=20)
    got["two"] = q.claim(two, keys)
    two_done.set()
    t.join(timeout=60)
    assert got["one"] is not None and got["two"] is not None
    assert got["one"]._trial_id != got["two"]._trial_id  # one cell, one worker
    assert {got["one"].cell, got["two"].cell} == keys


def test_a_cell_enqueued_twice_is_claimed_by_one_worker_at_a_time(storage):
    a, b = q.open_queue(storage, "twice"), q.open_queue(storage, "twice")
    cell = cells(1)
    a.enqueue_trial({"cell": cell[0].key})  # two `suite run` processes that enqueued the same cell together
    b.enqueue_trial({"cell": cell[0].key})
    first = q.claim(a, {cell[0].key})
    assert first is not None and q.claim(b, {cell[0].key}) is None  # its twin waits while it runs
    first.finish("COMPLETE")
    assert q.claim(b, {cell[0].key}) is not None  # then the twin may go (the runner skips a finished cell)


# --- reaping --------------------------------------------------------------------------

def test_a_dead_local_workers_cell_goes_back_at_once(storage, monkeypatch):
    queue = q.open_queue(storage, "dead")
    q.enqueue(queue, cells(1))
    c = q.claim(queue, {cells(1)[0].key})
    monkeypatch.setattr(q, "_pid_alive", lambda pid: False)
    assert q.Reaper()(queue) == 1
    assert state_of(queue, c) == TrialState.WAITING
    assert attrs_of(queue, c)["requeued"][0]["reason"].startswith("worker died")


def test_a_silent_remote_workers_cell_goes_back_after_the_grace_and_the_watch(storage, monkeypatch, fast_beats):
    queue = q.open_queue(storage, "remote")
    q.enqueue(queue, cells(1))
    monkeypatch.setattr(q, "HOST", "machine-a")
    c = q.claim(queue, {cells(1)[0].key})  # claimed on machine a, which then falls silent
    monkeypatch.setattr(q, "HOST", "machine-b")
    reap = q.Reaper()
    t0 = time.monotonic()
    while state_of(queue, c) == TrialState.RUNNING and time.monotonic() - t0 < 20:
        reap(queue)
        time.sleep(0.2)
    waited = time.monotonic() - t0
    assert state_of(queue, c) == TrialState.WAITING
    # stale after the grace (1 s, DB clock to the second), then watched unchanged for HEARTBEAT_S + 1 = 2 s
    assert waited >= 2.0
    assert "heartbeat older than" in attrs_of(queue, c)["requeued"][0]["reason"]


def test_a_live_local_worker_is_never_judged_by_its_heartbeat(storage, fast_beats):
    queue = q.open_queue(storage, "alive")
    q.enqueue(queue, cells(1))
    c = q.claim(queue, {cells(1)[0].key})  # this process: alive, though it never beats
    reap = q.Reaper()
    for _ in range(20):
        assert reap(queue) == 0
        time.sleep(0.2)
    assert state_of(queue, c) == TrialState.RUNNING


def test_the_reaper_decides_nothing_across_a_locked_database(storage, tmp_path, monkeypatch, fast_beats):
    """A third process holds the sqlite write lock for longer than the grace period while a remote
    worker's cell trains: its heartbeat cannot land, which is no evidence of death."""
    queue = q.open_queue(storage, "locked")
    q.enqueue(queue, cells(1))
    monkeypatch.setattr(q, "HOST", "machine-a")
    c = q.claim(queue, {cells(1)[0].key})
    owner = attrs_of(queue, c)["owner"]
    monkeypatch.setattr(q, "HOST", "machine-b")
    locker = sqlite3.connect(tmp_path / "q.db", isolation_level=None, timeout=60, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release_after(s: float) -> None:
        time.sleep(s)
        locker.execute("COMMIT")
        released.set()

    threading.Thread(target=release_after, args=(5.0,), daemon=True).start()
    reap = q.Reaper()
    t0 = time.monotonic()
    while not released.is_set() and time.monotonic() - t0 < 30:  # it sees the heartbeat go stale and tries
        assert reap(queue) == 0
        time.sleep(0.2)
    assert released.is_set()
    monkeypatch.setattr(q, "HOST", "machine-a")
    assert c._hold(commit=False)  # the owner's heartbeat lands as soon as the lock is gone
    monkeypatch.setattr(q, "HOST", "machine-b")
    for _ in range(5):
        assert reap(queue) == 0
        time.sleep(0.2)
    assert state_of(queue, c) == TrialState.RUNNING and attrs_of(queue, c)["owner"] == owner


# --- a worker that lost its cell -------------------------------------------------------

def test_a_worker_that_lost_its_cell_marks_its_run_a_duplicate_not_finished(storage, tiny, tracking_uri, experiment,
                                                                           tmp_path, monkeypatch):
    queue = q.open_queue(storage, "lost")
    q.enqueue(queue, cells(1))
    key = cells(1)[0].key
    monkeypatch.setattr(q, "HOST", "machine-a")
    mine = q.claim(queue, {key})
    q.Reaper._requeue(queue, mine._trial_id, attrs_of(queue, mine)["owner"], None, "judged dead")
    monkeypatch.setattr(q, "HOST", "machine-b")
    theirs = q.claim(q.open_queue(storage, "lost"), {key})  # handed to another worker while mine trains
    assert theirs is not None
    with pytest.raises(q.LostClaim):
        training.run(tiny(epochs=1), experiment=experiment, tracking_uri=tracking_uri, out_dir=tmp_path / "a",
                     before_finish=mine.commit)
    run = tracking.client(tracking_uri).search_runs(
        [tracking.client(tracking_uri).get_experiment_by_name(experiment).experiment_id])[0]
    assert run.info.status == "KILLED" and run.data.tags["harness.duplicate"] == "true"
    assert "handed to another worker" in run.data.tags["harness.failure_reason"]
    assert state_of(queue, theirs) == TrialState.RUNNING and attrs_of(queue, theirs)["owner"] == theirs.token


def test_a_worker_whose_cell_was_requeued_but_not_taken_takes_it_back(storage, tiny, tracking_uri, experiment,
                                                                     tmp_path):
    queue = q.open_queue(storage, "back")
    q.enqueue(queue, cells(1))
    mine = q.claim(queue, {cells(1)[0].key})
    q.Reaper._requeue(queue, mine._trial_id, attrs_of(queue, mine)["owner"], None, "judged dead")
    res = training.run(tiny(epochs=1), experiment=experiment, tracking_uri=tracking_uri, out_dir=tmp_path / "b",
                       before_finish=mine.commit)
    assert tracking.client(tracking_uri).get_run(res["run_id"]).info.status == "FINISHED"
    assert mine.committed and state_of(queue, mine) == TrialState.RUNNING
    assert attrs_of(queue, mine)["committed"] == mine.token
    mine.finish("COMPLETE")
    assert state_of(queue, mine) == TrialState.COMPLETE


# --- the report -------------------------------------------------------------------------

def test_the_report_counts_no_duplicate_and_names_a_cell_finished_twice():
    rows = pd.DataFrame({"run_id": ["p1"], "row": ["a"], "row_index": [0], "config_hash": ["h"], "claimed": [""],
                         "study": [""], "profile": [""], "start_time": [1]})
    cells_ = pd.DataFrame({"run_id": ["c1", "c2", "c3", "c4"], "status": ["FINISHED", "KILLED", "FINISHED", "FINISHED"],
                           "start_time": [2, 3, 4, 5], "seed": pd.array([0, 0, 1, 1], dtype="Int64"),
                           "row": ["a"] * 4, "config_hash": ["h"] * 4, "parent_id": ["p1"] * 4,
                           "duplicate": ["", "true", "", ""], "metrics.test_f1_macro": [0.5, 0.9, 0.6, 0.7]})
    sel = runs.select_cells(rows, cells_)
    assert list(sel.finished["run_id"]) == ["c1", "c4"]  # one per cell
    assert sel.failed.empty  # a duplicate is not a failure either
    assert "1 duplicate run(s) not counted (trained while another worker owned the cell): `a` seed 0" in sel.notes
    assert any("`a` seed 1: 2 finished runs" in n and "counted one, the latest (c4)" in n for n in sel.notes)
