"""One GPU per worker: `--workers N` pins worker i to GPU i mod (number of GPUs), and the SLURM job
array script runs such workers against shared stores. No GPU needed: the device count is faked."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import tracking
from harness.suite import planning, runner
from harness.suite import workers as suite_workers
from harness.suite.file import load_suite

REPO = Path(__file__).resolve().parent.parent
SBATCH = REPO / "scripts" / "slurm_suite.sbatch"


def suite_file(path: Path, seeds=(0, 1, 2, 3)) -> Path:
    path.write_text(yaml.safe_dump({
        "name": path.stem, "seeds": list(seeds),
        "base": {"model": "smallcnn", "n_mels": 32, "epochs": 1, "batch_size": 64, "train_ratio": 0.6,
                 "val_ratio": 0.2},
        "rows": [{"name": "plain", "config": {}}]}, sort_keys=False))
    return path


def cell_runs(uri: str, experiment: str) -> list:
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    return planning.search_runs(c, exp.experiment_id, "tags.`harness.kind` = 'cell'")


@pytest.mark.parametrize("workers, n_gpus, visible, expected", [
    (3, 0, None, [None, None, None]),            # no CUDA: nothing pinned
    (4, 2, None, ["0", "1", "0", "1"]),          # worker i -> GPU i mod 2
    (2, 4, None, ["0", "1"]),                    # fewer workers than GPUs: the first ones
    (3, 2, "5,7", ["5", "7", "5"]),              # under SLURM: the GPUs we were given, not 0..n-1
    (2, 2, "GPU-aa, GPU-bb", ["GPU-aa", "GPU-bb"]),  # UUIDs pass through
    (2, 2, "3", ["0", "1"]),                     # a list that does not match the count: plain indices
])
def test_worker_i_gets_gpu_i_mod_the_number_of_gpus(workers, n_gpus, visible, expected):
    assert suite_workers.worker_gpus(workers, n_gpus, visible) == expected


@pytest.mark.slow
def test_spawned_workers_are_pinned_one_gpu_each_and_their_runs_say_which(tmp_path, synth_root, monkeypatch):
    monkeypatch.setattr(suite_workers, "cuda_device_count", lambda: 2)  # the parent decides; the workers only obey
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    seen = []

    class Spy:  # what each spawned process is started with
        def __init__(self, ctx):
            self.ctx = ctx

        def __getattr__(self, name):
            return getattr(self.ctx, name)

        def Process(self, target, args, **kw):
            seen.append(args[-1])
            return self.ctx.Process(target=target, args=args, **kw)

    import multiprocessing as mp
    real_get = mp.get_context
    monkeypatch.setattr(mp, "get_context", lambda kind: Spy(real_get(kind)))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = runner.run_suite(load_suite(suite_file(tmp_path / "pinned.yaml")), workers=2,
                               data_root=str(synth_root), tracking_uri=uri, out_dir=str(tmp_path / "art"),
                               progress=False)
    assert summary.done == 4 and summary.failed == 0
    assert seen == ["0", "1"]
    runs = cell_runs(uri, "pinned")
    by_worker: dict[str, set[str]] = {}
    for r in runs:
        by_worker.setdefault(r.data.tags["harness.worker"], set()).add(r.data.tags["harness.worker_gpu"])
    assert all(len(g) == 1 for g in by_worker.values())  # a worker stays on its GPU
    gpus = [next(iter(g)) for g in by_worker.values()]
    assert len(set(gpus)) == len(gpus) and set(gpus) <= {"0", "1"}  # distinct workers, distinct GPUs


def test_one_worker_in_process_is_not_pinned(tmp_path, synth_root, monkeypatch):
    monkeypatch.setattr(suite_workers, "cuda_device_count", lambda: 2)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runner.run_suite(load_suite(suite_file(tmp_path / "single.yaml", seeds=(0,))), data_root=str(synth_root),
                     tracking_uri=uri, out_dir=str(tmp_path / "art"), progress=False)
    (run,) = cell_runs(uri, "single")
    assert "harness.worker_gpu" not in run.data.tags  # it uses whatever CUDA_VISIBLE_DEVICES it was started with


def sbatch_env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "CUDA_VISIBLE_DEVICES"}
    env.update(PYTHON=sys.executable, HARNESS_REPO=str(REPO), PYTHONPATH=str(REPO), TMPDIR=str(tmp_path),
               PYTHONUNBUFFERED="1", **extra)
    return env


def test_the_slurm_script_names_a_missing_store_in_one_line(tmp_path):
    env = sbatch_env(tmp_path, HARNESS_STORAGE=f"sqlite:///{tmp_path / 'optuna.db'}")
    env.pop("MLFLOW_TRACKING_URI", None)
    p = subprocess.run(["bash", str(SBATCH), "experiments/seed_table.yaml"], env=env, capture_output=True, text=True,
                       cwd=tmp_path, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "MLFLOW_TRACKING_URI is not set" in p.stderr
    assert not list(tmp_path.glob("*.db"))


@pytest.mark.slow
def test_the_slurm_array_task_runs_one_worker_per_gpu_against_the_shared_stores(tmp_path, synth_root):
    """The job script's own command, run here as SLURM would run one array task with 2 GPUs."""
    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'optuna.db'}"
    path = suite_file(tmp_path / "slurm.yaml", seeds=(0, 1))  # a cell for each of the task's 2 workers
    env = sbatch_env(tmp_path, MLFLOW_TRACKING_URI=uri, HARNESS_STORAGE=storage, HARNESS_DATA_ROOT=str(synth_root),
                     SLURM_ARRAY_JOB_ID="42", SLURM_ARRAY_TASK_ID="3", SLURM_JOB_ID="45", SLURM_SUBMIT_DIR=str(REPO),
                     CUDA_VISIBLE_DEVICES="0,1")  # no real GPU here: torch sees none and the workers use the CPU
    p = subprocess.run(["bash", str(SBATCH), str(path)], env=env, capture_output=True, text=True, cwd=tmp_path,
                       timeout=400)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "task 42_3" in p.stdout and "2 worker(s)" in p.stdout
    runs = cell_runs(uri, "slurm")
    assert sorted(int(r.data.tags["harness.seed"]) for r in runs if r.info.status == "FINISHED") == [0, 1]
    assert (tmp_path / "harness-42_3").is_dir()  # checkpoints in the task's own scratch folder
    # A second (or requeued) task finding nothing left to do is tests/test_slurm.py's resubmission, under SLURM.
