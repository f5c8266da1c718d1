"""Scale-out throughput: cells per hour with 1 vs 2 workers against PostgreSQL + an MLflow
tracking server, and the tracking overhead per cell (server vs a local sqlite store), in one run.

    .venv/bin/python benchmarks/scaleout.py [--cells 8] [--epochs 3] [--check]
    .venv/bin/python benchmarks/scaleout.py --quick     # 2 cells of 1 epoch per configuration: a smoke run

Starts its own services (scripts/services.sh into a /tmp folder, stopped at the end), a synthetic
corpus and a feature cache in a temporary folder; your .services/, mlflow.db and .cache/ are never
touched. Three configurations run the same suite (SmallCNN, n_mels 32, 2 rows x cells/2 seeds), each
into a fresh experiment, as separate `python -m harness suite run` processes:

  local-1   1 worker,  --tracking_uri sqlite:///..., --storage sqlite:///...   (the default set-up)
  server-1  1 worker,  --tracking_uri http://127.0.0.1:PORT, --storage postgresql://...
  server-2  2 `suite run` processes (as on two machines), one torch thread each, same services

Figures: wall time of the whole command(s) (process start included), cells/hour, and seconds per cell
outside training (wall / cells - median of the runs' own `wall_time_s`), whose difference between
server-1 and local-1 is the tracking overhead per cell of the server set-up. `--check` exits 1 when
server-2 / server-1 < 1.3 (2 cores: two workers should not be slower than one).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def sh_services(folder: Path, *args: str) -> dict[str, str]:
    env = {**os.environ, "HARNESS_SERVICES_DIR": str(folder), "PYTHON": sys.executable}
    p = subprocess.run(["bash", str(REPO / "scripts" / "services.sh"), *args], env=env, capture_output=True,
                       text=True, timeout=300)
    if p.returncode != 0 and args[0] == "start":
        sys.exit(f"scripts/services.sh start failed:\n{p.stdout}\n{p.stderr}")
    out = {}
    envfile = folder / "services.env"
    if envfile.exists():
        for line in envfile.read_text().splitlines():
            k, _, v = line.removeprefix("export ").partition("=")
            out[k] = v
    return out


def run_config(name: str, suite: Path, root: Path, work: Path, uri: str, storage: str, procs: int,
               env: dict) -> tuple[float, list[float]]:
    experiment = f"bench-{name}-{int(time.time())}"
    argv = [sys.executable, "-m", "harness", "suite", "run", str(suite), "--data_root", str(root), "--experiment",
            experiment, "--tracking_uri", uri, "--storage", storage, "--out", str(work / "art" / name)]
    penv = {**env, **({"OMP_NUM_THREADS": "1"} if procs > 1 else {})}
    t0 = time.perf_counter()
    ps = [subprocess.Popen(argv, cwd=work, env=penv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
          for _ in range(procs)]
    outs = [p.communicate()[0] for p in ps]
    wall = time.perf_counter() - t0
    if any(p.returncode for p in ps):
        sys.exit(f"{name}: suite run failed:\n" + "\n".join(outs))
    from harness import tracking
    from harness.suite.planning import search_runs

    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    runs = [r for r in search_runs(c, exp.experiment_id, "tags.`harness.kind` = 'cell'") if r.info.status == "FINISHED"]
    return wall, [r.data.metrics["wall_time_s"] for r in runs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=8, help="cells per configuration (even; default 8)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 cells of 1 epoch per configuration, no warm-up run (local-1 pays the features)")
    a = ap.parse_args()
    if a.quick:
        a.cells, a.epochs = 2, 1
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), load {os.getloadavg()[0]:.2f}")
    tmp = Path(tempfile.mkdtemp(prefix="harness-bench-scaleout-"))
    svc = Path(tempfile.mkdtemp(prefix="harness-services-", dir="/tmp"))
    svc.chmod(0o711)
    env = {**os.environ, "HARNESS_CACHE": str(tmp / ".cache"), "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    os.environ["HARNESS_CACHE"] = env["HARNESS_CACHE"]
    try:
        from harness.train.synth import generate_corpus

        root = generate_corpus(tmp / "ravdess", n_actors=5, seed=0)
        seeds = list(range(max(1, a.cells // 2)))
        suite = tmp / "bench.yaml"
        suite.write_text(yaml.safe_dump({
            "name": "bench", "seeds": seeds,
            "base": {"model": "smallcnn", "n_mels": 32, "epochs": a.epochs, "batch_size": 64, "train_ratio": 0.6,
                     "val_ratio": 0.2},
            "rows": [{"name": "plain"}, {"name": "weighted", "config": {"class_weight_loss": True}}]}))
        n = 2 * len(seeds)
        t0 = time.perf_counter()
        s = sh_services(svc, "start")
        print(f"services started in {time.perf_counter() - t0:.1f}s: MLflow at {s['MLFLOW_TRACKING_URI']}, "
              f"PostgreSQL on 127.0.0.1:{s['PG_PORT']}")
        if not a.quick:  # warm the feature cache once so that no configuration pays for it
            run_config("warmup", suite, root, tmp, f"sqlite:///{tmp / 'warm.db'}", f"sqlite:///{tmp / 'warmq.db'}", 1,
                       env)
        results = {}
        configs = [("local-1", f"sqlite:///{tmp / 'mlflow.db'}", f"sqlite:///{tmp / 'optuna.db'}", 1),
                   ("server-1", s["MLFLOW_TRACKING_URI"], s["HARNESS_STORAGE"], 1),
                   ("server-2", s["MLFLOW_TRACKING_URI"], s["HARNESS_STORAGE"], 2)]
        for name, uri, storage, procs in configs:
            wall, train = run_config(name, suite, root, tmp, uri, storage, procs, env)
            assert len(train) == n, f"{name}: {len(train)} of {n} cells finished"
            results[name] = (wall, statistics.median(train))
            print(f"{name:<9} {n} cells in {wall:6.1f}s  -> {3600 * n / wall:6.0f} cells/hour; median run "
                  f"wall_time_s {statistics.median(train):.2f}s; per cell outside training "
                  f"{wall / n * procs - statistics.median(train):.2f}s (process start and plan included)")
        (wl, tl), (ws, ts), (w2, _) = results["local-1"], results["server-1"], results["server-2"]
        speedup = ws / w2
        overhead = (ws - wl) / n
        print("\nsummary (one run, same machine):")
        print(f"  cells/hour, server, 1 worker: {3600 * n / ws:.0f}; 2 workers: {3600 * n / w2:.0f}; "
              f"ratio 2/1 = {speedup:.2f}  goal >= 1.3  {'PASS' if speedup >= 1.3 else 'MISS'}")
        print(f"  tracking overhead per cell, server (HTTP + PostgreSQL) vs local sqlite: {overhead:+.2f}s "
              f"(whole-command wall / cells); inside the run (median wall_time_s): {ts - tl:+.2f}s")
        return 1 if a.check and speedup < 1.3 else 0
    finally:
        sh_services(svc, "stop")
        shutil.rmtree(svc, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
