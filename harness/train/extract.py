"""Extracting many clips' features: in-process, or shared with spawned processes when that pays.

An extractor is a callable `path -> array`, built from a `Recipe` (a picklable "module:callable" and
its arguments) so that a spawned worker can build its own. The first few clips are extracted here;
when the rest would take longer than `PARALLEL_AFTER_SECONDS` at the rate just measured, up to
`HARNESS_EXTRACT_WORKERS` (default: the cores) processes share it: this process and spawned workers
(the `spawn` context: torch is not fork-safe), all at one torch thread, taking chunks of about a
quarter second of clips: this process from the front, the workers from the back through a queue that
holds a few, which this process takes back when it runs out first (a worker still starting). Workers
write each clip's entry into the cache themselves (atomically) and report nothing but errors; without
a cache they return the arrays. Small corpora (the tests') never pay for starting a process.

Every clip is extracted at one torch thread wherever it runs, so an entry's bits do not depend on
where it was made (and one thread is also the faster on 2 shared cores).
"""
from __future__ import annotations

import importlib
import os
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from harness.errors import DataError, HarnessError

PARALLEL_AFTER_SECONDS = 8.0  # a worker takes 2-7 s to start (importing torch) here: worth it past twice that
PROBE_CLIPS = 3  # extracted here first, to measure the rate
TAKE_BACK = True  # off (tests): the chunks queued for the workers are theirs, however long they take to start
QUEUED = 3  # chunks handed to each worker ahead: one in hand, more waiting while this process refills
CHUNK_SECONDS = 0.25  # a share of the work at a time: small enough to balance the end, large enough to batch


@dataclass(frozen=True)
class Recipe:
    """How to build an extractor in any process: `target` "module:callable", called with `args`."""
    target: str
    args: tuple = ()

    def build(self) -> Callable:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)(*self.args)


def workers_wanted() -> int:
    """Processes to extract with (this one included): HARNESS_EXTRACT_WORKERS, else the cores we may use;
    1 inside a daemonic process (a multiprocessing pool's worker may not have children)."""
    import multiprocessing

    raw = os.environ.get("HARNESS_EXTRACT_WORKERS", "").strip()
    if raw and not (raw.isdigit() and int(raw) >= 1):
        raise HarnessError(f"invalid HARNESS_EXTRACT_WORKERS={raw!r}: expected a number of processes >= 1 "
                           f"(1: extract in this process)")
    if multiprocessing.current_process().daemon:
        return 1
    if raw:
        return int(raw)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Progress:
    """Clips done, clips/s and time left: a tqdm bar on a terminal, else (with `lines`) a line every ~30 s
    on stderr and one at the end."""

    def __init__(self, what: str, total: int, show: bool, lines: bool = True):
        self.what, self.total, self.show, self.lines = what, total, show, lines
        self.t0 = self.last = time.time()
        self.done = 0
        self.processes = 1  # how many processes extracted (set by `extract`): recorded with the rate
        self.by_workers = 0  # of the clips done, those the spawned workers extracted
        self.bar = None
        if show and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=what, unit="clip", leave=False)

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.show and self.lines and (time.time() - self.last > 30 or self.done == self.total):
            self.last = time.time()
            rate = self.done / max(self.last - self.t0, 1e-9)
            print(f"{self.what}: {self.done}/{self.total} clips, {rate:.1f} clips/s, "
                  f"{(self.total - self.done) / rate:.0f} s left", file=sys.stderr, flush=True)

    def close(self) -> dict:
        if self.bar is not None:
            self.bar.close()
        secs = time.time() - self.t0
        if self.show and self.lines:
            print(f"{self.what}: {self.done} clips extracted in {secs:.1f} s "
                  f"({self.done / max(secs, 1e-9):.1f} clips/s), cached", file=sys.stderr, flush=True)
        return {"extract_seconds": secs, "clips_per_second": self.done / max(secs, 1e-9),
                "processes": self.processes, "clips_by_spawned_workers": self.by_workers}


def extract(clips: Sequence, make: Recipe | Callable, cache, bar: Progress, parallel: bool = True) -> dict:
    """Extract `clips` (distinct contents) with `make`'s extractor. With a cache (a `clipcache.ClipCache`)
    each clip's array is written to it and {} is returned; without, {sha1: array}. `parallel` needs a
    `Recipe`; an encoder on a GPU is extracted in-process (`make` a ready extractor, `parallel=False`)."""
    out: dict = {}
    if not clips:
        return out
    workers = min(workers_wanted(), len(clips)) if parallel else 1
    with _one_thread(parallel):
        extractor = make.build() if isinstance(make, Recipe) else make
        t0 = time.perf_counter()
        for i, clip in enumerate(clips):
            _keep(out, clip, _one(extractor, clip, cache))
            bar.step()
            if workers > 1 and i + 1 == PROBE_CLIPS:
                per_clip = (time.perf_counter() - t0) / (i + 1)
                if per_clip * (len(clips) - i - 1) > PARALLEL_AFTER_SECONDS:
                    _share(list(clips[i + 1:]), extractor, make, cache, bar, out, workers, per_clip)
                    break
    return out


def _one(extractor: Callable, clip, cache) -> np.ndarray | None:
    x = extractor(clip.path)
    if cache is None:
        return x
    cache.save(clip.sha1, x)
    return None


def _keep(out: dict, clip, x: np.ndarray | None) -> None:
    if x is not None:
        out[clip.sha1] = x


def _share(rest: list, extractor: Callable, recipe: Recipe, cache, bar: Progress, out: dict, workers: int,
           per_clip: float) -> None:
    """Extract `rest` here and in `workers - 1` spawned processes, a chunk at a time. This process takes chunks
    from the front; a queue holds a few from the back for the workers, and what no worker has taken yet when
    this process runs out (a worker still starting) it takes back, so no clip waits for a process's start."""
    import itertools
    import multiprocessing
    import queue
    from concurrent.futures import ProcessPoolExecutor

    size = max(1, min(64, round(CHUNK_SECONDS / max(per_clip, 1e-6))))
    chunks = deque(rest[j:j + size] for j in range(0, len(rest), size))
    spawn = min(workers - 1, len(chunks) - 1)
    if spawn < 1:
        for clip in rest:
            _keep(out, clip, _one(extractor, clip, cache))
            bar.step()
        return
    bar.processes = 1 + spawn
    ctx = multiprocessing.get_context("spawn")
    tasks, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    pool = ProcessPoolExecutor(spawn, mp_context=ctx, initializer=_worker_init,
                               initargs=(recipe, cache, tasks, results, stop))
    loops = [pool.submit(_worker_loop) for _ in range(spawn)]
    queued: dict[int, list] = {}  # handed to the workers' queue, not reported yet
    ids = itertools.count()

    def feed() -> None:
        while chunks and len(queued) < QUEUED * spawn:
            chunk, cid = chunks.pop(), next(ids)
            queued[cid] = chunk
            tasks.put((cid, [(c.path, c.sha1) for c in chunk]))

    def take_back() -> list | None:
        try:
            return queued.pop(tasks.get_nowait()[0])
        except queue.Empty:
            return None

    def collect(block: bool) -> None:
        while queued:
            try:
                cid, error, arrays = results.get(timeout=0.5) if block else results.get_nowait()
            except queue.Empty:
                for f in loops:
                    if f.done():
                        f.result()  # a worker that died (not a clip's error): its exception, as it is
                return
            chunk = queued.pop(cid)
            if error is not None:
                raise DataError(error)  # the worker's one line (an unreadable clip), not a pool's traceback
            for clip, x in zip(chunk, arrays):
                _keep(out, clip, x)
            bar.by_workers += len(chunk)
            bar.step(len(chunk))
            if block:
                return

    try:
        feed()
        while chunks or queued:
            chunk = chunks.popleft() if chunks else take_back() if TAKE_BACK else None
            if chunk is None:
                collect(block=True)
                continue
            for clip in chunk:
                _keep(out, clip, _one(extractor, clip, cache))
                bar.step()
                collect(block=False)
                feed()
    finally:
        stop.set()
        for _ in loops:
            tasks.put(None)
        tasks.cancel_join_thread()
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _one_thread(on: bool):
    if not on:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_WORKER: dict = {}  # in a worker: its extractor, cache and queues


def _worker_init(recipe: Recipe, cache, tasks, results, stop) -> None:
    import torch

    torch.set_num_threads(1)
    # A worker's last results may go unread when this process stops early (an unreadable clip, Ctrl-C): its
    # exit must not wait on the pipe's reader (multiprocessing's join-thread pitfall), or shutdown hangs.
    results.cancel_join_thread()
    _WORKER.update(recipe=recipe, cache=cache, tasks=tasks, results=results, stop=stop)


def _worker_loop() -> None:
    """In a worker: chunks of (path, sha1) from the queue until told to stop, each reported as (id, None,
    arrays or Nones); an unreadable clip as (id, its error's line, None), after which the worker stops."""
    from types import SimpleNamespace

    w = _WORKER
    extractor = None
    while not w["stop"].is_set():
        task = w["tasks"].get()
        if task is None:
            return
        cid, items = task
        try:
            extractor = extractor or w["recipe"].build()
            arrays = [_one(extractor, SimpleNamespace(path=p, sha1=s), w["cache"]) for p, s in items]
        except HarnessError as e:
            w["results"].put((cid, str(e), None))
            return
        w["results"].put((cid, None, arrays))
