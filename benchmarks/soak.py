"""Soak: every cell exactly once under many faults at random times, then a rerun.

    .venv/bin/python benchmarks/soak.py [--check] [--quick] [--backend sqlite|postgres|both]
                                        [--cells 40] [--kills 10] [--workers N] [--seed 0] [--time-limit S]

A suite of `--cells` cells (4 rows x cells/4 seeds; SmallCNN, 32 mels, 3-4 epochs, the synthetic corpus)
run by separate `python -m harness suite run` processes (one worker each, one torch thread), into a
temporary folder (feature cache, stores, artifacts; deleted at the end):

  sqlite    2 workers on local sqlite stores (MLflow and the queue), one machine: a killed worker's
            cell comes back at once (its pid is gone);
  postgres  where PostgreSQL is installed: 3 workers on PostgreSQL + an MLflow server (scripts/services.sh,
            loopback only, stopped at the end), each with its own HARNESS_HOST as on three machines, so a
            killed worker's cell comes back through its stale heartbeat; plus a tracking-server restart
            and a PostgreSQL restart mid-suite.

Faults: `--kills` SIGKILLs of a random worker among those training a cell at that moment, spread over
the suite's progress (kill k once k/(kills + 2) of the cells are done, after a random 0-1.5 s, so it
lands mid-cell at a random point however fast the machine is), each replaced by a fresh worker; HARNESS_HEARTBEAT_S=1, HARNESS_GRACE_S=3. When the queue
is drained, one more `suite run` (no faults) is the rerun. Figures, from MLflow after the rerun:
cells finished exactly once, cells lost (no FINISHED run), duplicate FINISHED runs, runs left RUNNING,
duplicate trainings stopped (runs tagged harness.duplicate), cells the rerun had to train, and the
compute wasted by the faults: training seconds of the killed runs / training seconds of all runs.
Goal: 0 lost, 0 duplicates, 0 left RUNNING, every planned fault done; `--check` exits 1 otherwise.
`--quick`: 12 cells, 3 kills (the restarts stay).
"""
from __future__ import annotations

import argparse
import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from common import load_average, machine_lines  # noqa: E402
from scaleout import sh_services  # noqa: E402

ROWS = [("plain", {}), ("weighted", {"class_weight_loss": True}), ("smoothing", {"label_smoothing": 0.1, "epochs": 4}),
        ("specaug", {"use_specaug": True, "specaug_freq": 4, "specaug_time": 8, "epochs": 4})]
FAULT_ENV = {"HARNESS_HEARTBEAT_S": "1", "HARNESS_GRACE_S": "3", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@dataclass
class Soak:
    name: str
    uri: str
    storage: str
    n_workers: int
    hosts: bool  # each worker its own HARNESS_HOST (as on separate machines)
    env: dict
    argv: list[str]
    logs: Path
    procs: list = field(default_factory=list)  # (Popen, host)
    kills: list = field(default_factory=list)  # (pid, time.time())
    events: list = field(default_factory=list)  # (time.time(), text)
    started: int = 0

    def start_worker(self) -> None:
        self.started += 1
        host = f"soak-{self.name}-w{self.started}"
        env = {**self.env, **({"HARNESS_HOST": host} if self.hosts else {})}
        log = open(self.logs / f"{self.name}-w{self.started}.log", "w")
        p = subprocess.Popen(self.argv, cwd=self.logs, env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append((p, host))

    def live(self) -> list:
        return [p for p, _ in self.procs if p.poll() is None]

    def kill_one(self, rng: random.Random, busy: set[int]) -> bool:
        """SIGKILL a random worker among those training a cell now (the fault that matters); False if none is."""
        training = [p for p in self.live() if p.pid in busy]
        if not training:
            return False
        victim = rng.choice(training)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.kills.append((victim.pid, time.time()))
        self.events.append((time.time(), f"kill -9 worker pid {victim.pid} (mid-cell)"))
        return True


def finished_cells(c, exp_name: str) -> tuple[int, list]:
    from harness.suite.planning import search_runs

    exp = c.get_experiment_by_name(exp_name)
    if exp is None:
        return 0, []
    runs = search_runs(c, exp.experiment_id, "tags.`harness.kind` = 'cell'")
    done = {(r.data.tags["harness.row"], r.data.tags["harness.seed"]) for r in runs if r.info.status == "FINISHED"}
    return len(done), runs


def soak(s: Soak, n_cells: int, n_kills: int, rng: random.Random, deadline: float, restarts: list) -> dict:
    """Run the suite to the end under faults; the rerun; the figures."""
    from harness import tracking

    c = tracking.client(s.uri)
    t0 = time.time()
    for _ in range(s.n_workers):
        s.start_worker()
    pending_restarts = list(restarts)  # (fraction of cells done, what, function)
    next_kill = None
    done = 0
    while s.live() and time.time() < deadline:
        time.sleep(0.5)
        try:
            done, runs = finished_cells(c, "soak")
        except Exception:
            continue  # the tracking server is restarting
        busy = {int(r.data.tags.get("harness.worker", ":0").rsplit(":", 1)[1] or 0) for r in runs
                if r.info.status == "RUNNING"}
        if pending_restarts and done >= pending_restarts[0][0] * n_cells:
            _, what, fn = pending_restarts.pop(0)
            s.events.append((time.time(), f"{what}: begin ({done} cells done)"))
            fn()
            s.events.append((time.time(), f"{what}: back"))
        if len(s.kills) < n_kills and done < n_cells:
            now = time.time()
            # By progress, not by the clock: a fast machine finishes before clock-planned kills come due.
            due = done >= int(n_cells * (len(s.kills) + 1) / (n_kills + 2))
            if next_kill is None and due:
                next_kill = now + rng.uniform(0.0, 1.5)
            if next_kill is not None and now >= next_kill and s.kill_one(rng, busy):
                s.start_worker()
                next_kill = None
    timed_out = bool(s.live())
    for p in s.live():
        p.kill()
        p.wait()
    faulted_s = time.time() - t0
    exits = dict(sorted(Counter(p.returncode for p, _ in s.procs).items()))  # status -> workers
    before, _ = finished_cells(c, "soak")
    rerun_log = s.logs / f"{s.name}-rerun.log"
    t1 = time.time()
    with open(rerun_log, "w") as log:
        rr = subprocess.run(s.argv, cwd=s.logs, env={**s.env, **({"HARNESS_HOST": f"soak-{s.name}-rerun"}
                                                                  if s.hosts else {})},
                            stdout=log, stderr=subprocess.STDOUT, timeout=max(60.0, deadline - time.time() + 300))
    rerun_s = time.time() - t1
    return {"faulted_s": faulted_s, "timed_out": timed_out, "before_rerun": before, "rerun_rc": rr.returncode,
            "rerun_s": rerun_s, "exits": exits, **figures(s, c, n_cells)}


def figures(s: Soak, c, n_cells: int) -> dict:
    _, runs = finished_cells(c, "soak")
    per_cell: dict = {}
    for r in runs:
        per_cell.setdefault((r.data.tags["harness.row"], r.data.tags["harness.seed"]), []).append(r)
    n_fin = {k: sum(r.info.status == "FINISHED" for r in v) for k, v in per_cell.items()}
    killed_at = {pid: t for pid, t in s.kills}

    def seconds(r) -> float:
        """Training seconds of a run: its own wall_time_s, else until its worker was killed, else until it ended."""
        if "wall_time_s" in r.data.metrics:
            return r.data.metrics["wall_time_s"]
        pid = int(r.data.tags.get("harness.worker", ":0").rsplit(":", 1)[1] or 0)
        end = killed_at.get(pid, (r.info.end_time or r.info.start_time) / 1000)
        return max(0.0, end - r.info.start_time / 1000)

    fault_runs = [r for r in runs if r.info.status == "KILLED" and r.data.tags.get("harness.duplicate") != "true"]
    dup_runs = [r for r in runs if r.data.tags.get("harness.duplicate") == "true"]
    total = sum(seconds(r) for r in runs)
    return {"exactly_once": sum(1 for k in n_fin.values() if k == 1),
            "lost": n_cells - sum(1 for k in n_fin.values() if k >= 1),
            "duplicates": sum(k - 1 for k in n_fin.values() if k > 1),
            "running": sum(r.info.status == "RUNNING" for r in runs),
            "failed_runs": sum(r.info.status == "FAILED" for r in runs),
            "killed_runs": len(fault_runs), "duplicate_runs": len(dup_runs),
            "wasted": sum(seconds(r) for r in fault_runs) / total if total else 0.0,
            "dup_wasted": sum(seconds(r) for r in dup_runs) / total if total else 0.0, "runs": len(runs)}


def suite_file(tmp: Path, n_cells: int) -> Path:
    seeds = list(range(max(1, n_cells // len(ROWS))))
    path = tmp / "soak.yaml"
    path.write_text(yaml.safe_dump({
        "name": "soak", "seeds": seeds,
        # 3-4 epochs: a cell must last long enough to be killed mid-cell (a cell costs well under a second
        # outside training since issue 26, and at 1-2 epochs a quiet CI machine finished before a kill landed).
        "base": {"model": "smallcnn", "n_mels": 32, "epochs": 3, "batch_size": 64, "train_ratio": 0.6, "val_ratio": 0.2},
        "rows": [{"name": n, "config": cfg} for n, cfg in ROWS]}, sort_keys=False))
    return path


def report(name: str, s: Soak, r: dict, n_cells: int, n_kills: int, restarts: int) -> bool:
    ok = (r["lost"] == 0 and r["duplicates"] == 0 and r["running"] == 0 and len(s.kills) >= n_kills
          and not r["timed_out"] and len([e for e in s.events if e[1].endswith(": back")]) == restarts)
    print(f"\n--- {name}: {s.n_workers} workers, {n_cells} cells, {len(s.kills)} kills of {n_kills} planned"
          f"{f', {restarts} service restarts' if restarts else ''} ---")
    t0 = s.events[0][0] if s.events else 0
    for t, text in s.events:
        print(f"  t+{t - t0:6.1f}s  {text}")
    print(f"  faulted phase {r['faulted_s']:.0f} s{' (TIMED OUT: workers killed)' if r['timed_out'] else ''}; "
          f"{s.started} worker processes in all; {r['before_rerun']} of {n_cells} cells finished before the rerun; "
          f"rerun {r['rerun_s']:.0f} s, exit {r['rerun_rc']}, trained {n_cells - r['before_rerun'] - r['lost']} cell(s); "
          f"worker exit status: count {r['exits']} (-9: killed by the soak; 2: refused to start, e.g. storage down)")
    print(f"  cells finished exactly once   {r['exactly_once']:>4} of {n_cells}")
    print(f"  cells lost                    {r['lost']:>4}   goal 0  {'PASS' if r['lost'] == 0 else 'MISS'}")
    print(f"  duplicate FINISHED runs       {r['duplicates']:>4}   goal 0  {'PASS' if r['duplicates'] == 0 else 'MISS'}")
    print(f"  runs left RUNNING             {r['running']:>4}   goal 0  {'PASS' if r['running'] == 0 else 'MISS'}")
    print(f"  kills done / planned          {len(s.kills):>4} / {n_kills}  {'PASS' if len(s.kills) >= n_kills else 'MISS'}")
    print(f"  runs: {r['runs']} ({r['killed_runs']} KILLED by the faults, {r['duplicate_runs']} duplicate trainings "
          f"stopped before FINISHED, {r['failed_runs']} FAILED)")
    print(f"  compute wasted by the faults  {r['wasted']:.3f} of all training seconds "
          f"(duplicates stopped: {r['dup_wasted']:.3f})")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 unless 0 lost, 0 duplicates, 0 left RUNNING")
    ap.add_argument("--quick", action="store_true", help="12 cells, 3 kills")
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both",
                    help="both (default): sqlite, and PostgreSQL where it is installed")
    ap.add_argument("--cells", type=int, default=None, help="cells (default 40; --quick 12)")
    ap.add_argument("--kills", type=int, default=None, help="kill -9s per backend (default 10; --quick 3)")
    ap.add_argument("--workers", type=int, default=None, help="workers (default: sqlite 2, postgres 3)")
    ap.add_argument("--seed", type=int, default=0, help="the fault schedule's random seed")
    ap.add_argument("--time-limit", type=float, default=None, help="seconds per backend (default 1800; quick 600)")
    a = ap.parse_args(argv)
    n_cells = a.cells or (12 if a.quick else 40)
    n_kills = a.kills if a.kills is not None else (3 if a.quick else 10)
    limit = a.time_limit or (600 if a.quick else 1800)
    has_pg = bool(os.environ.get("PG_BIN") or glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    backends = ["sqlite", "postgres"] if a.backend == "both" else [a.backend]
    if "postgres" in backends and not has_pg:
        if a.backend == "postgres":
            sys.exit("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: apt-get install -y postgresql")
        backends.remove("postgres")
        print("PostgreSQL not installed: the postgres soak is skipped")
    print("\n".join(machine_lines()))
    tmp = Path(tempfile.mkdtemp(prefix="harness-bench-soak-"))
    svc = None
    env = {**os.environ, **FAULT_ENV, "HARNESS_CACHE": str(tmp / ".cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    os.environ["HARNESS_CACHE"] = env["HARNESS_CACHE"]
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "1"  # this process only: its polls skip a restart, workers ride it
    ok = True
    try:
        from harness.train.synth import generate_corpus

        root = generate_corpus(tmp / "ravdess", n_actors=5, seed=0)
        suite = suite_file(tmp, n_cells)
        n_cells = len(ROWS) * max(1, n_cells // len(ROWS))
        for backend in backends:
            folder = tmp / backend
            folder.mkdir()
            restarts = []
            if backend == "sqlite":
                uri, storage, hosts = f"sqlite:///{folder / 'mlflow.db'}", f"sqlite:///{folder / 'optuna.db'}", False
            else:
                svc = Path(tempfile.mkdtemp(prefix="harness-services-", dir="/tmp"))
                svc.chmod(0o711)
                services = sh_services(svc, "start")
                uri, storage, hosts = services["MLFLOW_TRACKING_URI"], services["HARNESS_STORAGE"], True
                restarts = [(1 / 3, "tracking-server restart", lambda: (sh_services(svc, "stop", "mlflow"),
                                                                        sh_services(svc, "start", "mlflow"))),
                            (2 / 3, "PostgreSQL restart", lambda: (sh_services(svc, "stop", "pg"),
                                                                   sh_services(svc, "start", "pg")))]
            argv_ = [sys.executable, "-m", "harness", "suite", "run", str(suite), "--data_root", str(root),
                     "--tracking_uri", uri, "--storage", storage, "--out", str(folder / "art")]
            s = Soak(backend, uri, storage, a.workers or (2 if backend == "sqlite" else 3), hosts, env, argv_, folder)
            print(f"\n{backend}: {s.n_workers} workers, {n_cells} cells, {n_kills} kills planned, load {load_average()}",
                  flush=True)
            r = soak(s, n_cells, n_kills, random.Random(a.seed), time.time() + limit, restarts)
            ok &= report(backend, s, r, n_cells, n_kills, len(restarts))
            if svc is not None:
                sh_services(svc, "stop")
                shutil.rmtree(svc, ignore_errors=True)
                svc = None
        print(f"\nload avg at end: {load_average()} (1/5/15 min); {'PASS' if ok else 'MISS'}")
        return 1 if a.check and not ok else 0
    finally:
        if svc is not None:
            sh_services(svc, "stop")
            shutil.rmtree(svc, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
