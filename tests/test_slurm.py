"""SLURM for real: a one-node cluster on 127.0.0.1 (munged, slurmctld and slurmd from Debian's slurm-wlm
and munge, in a temporary folder) runs scripts/slurm_suite.sbatch as a job array against PostgreSQL and an
MLflow server (conftest's `services`): every cell of the suite is FINISHED exactly once, also after
`scancel` of one array task in the middle of a cell and a resubmission of that task.

The daemons run as root (slurmd must) in the foreground as this test's children, with plugins that need
no cgroups (proctrack/linuxproc, task/none) and munge on its own socket and key; all of them and every
job are stopped at the end. The node has no GPUs: the jobs are submitted with `--gres=none
--cpus-per-task=1`, as on a CPU-only cluster. Without the binaries (.ci/run installs them), not as root,
or where the daemons cannot start on this machine, the test skips with that reason.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from test_scaleout import cell_runs, finished, wait_for, write_suite

REPO = Path(__file__).resolve().parent.parent
# Under pytest-xdist (--dist loadgroup) these run in one worker: one PostgreSQL + MLflow server per session.
pytestmark = pytest.mark.xdist_group("services")
SBATCH = REPO / "scripts" / "slurm_suite.sbatch"
NODE = "harness-node"
TOOLS = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sbatch", "scancel", "squeue", "scontrol", "sinfo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fields(line: str) -> dict[str, str]:
    """`scontrol -o show job` prints one record a line: Key=Value pairs."""
    return dict(re.findall(r"(\w+)=(\S*)", line))


class Cluster:
    """munged + slurmctld + slurmd in `folder`, each this process's child in its own session."""

    def __init__(self, folder: Path, tools: dict[str, str]):
        self.dir, self.tools = folder, tools
        self.conf = folder / "slurm.conf"
        self.socket = folder / "munge" / "munge.socket"
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> None:
        """Starts the daemons; raises RuntimeError saying why where SLURM cannot run here."""
        d = self.dir
        for sub in ("munge", "key", "state", "spool", "log", "jobs"):
            (d / sub).mkdir()
        (d / "munge").chmod(0o755)  # munged: every client must reach its socket
        (d / "key").chmod(0o700)
        key = d / "key" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self._daemon("munged", "munged", "-F", f"--socket={self.socket}", f"--key-file={key}",
                     f"--pid-file={d / 'munge' / 'munged.pid'}", f"--log-file={d / 'log' / 'munged.log'}",
                     f"--seed-file={d / 'munge' / 'munged.seed'}")
        self._until(lambda: self.socket.exists(), 20, "munged's socket")
        cred = subprocess.run([self.tools["munge"], "-S", str(self.socket), "-n"], capture_output=True, text=True,
                              timeout=20)
        check = subprocess.run([self.tools["unmunge"], "-S", str(self.socket)], input=cred.stdout,
                               capture_output=True, text=True, timeout=20)
        if check.returncode != 0:
            raise RuntimeError(f"munge cannot encode and decode a credential here: {check.stderr.strip()}")
        self.conf.write_text(self._config())
        self._daemon("slurmctld", "slurmctld", "-D", "-f", str(self.conf))
        self._daemon("slurmd", "slurmd", "-D", "-N", NODE, "-f", str(self.conf))

        def idle():
            p = self.run("sinfo", "-h", "-n", NODE, "-o", "%T", check=False)
            return p.returncode == 0 and p.stdout.strip() == "idle"
        self._until(idle, 60, f"node {NODE} to be idle")

    def _config(self) -> str:
        d = self.dir
        return "\n".join([
            "ClusterName=harness-test",
            "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={self.socket}",
            f"StateSaveLocation={d / 'state'}", f"SlurmdSpoolDir={d / 'spool'}",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}", f"SlurmdPidFile={d / 'slurmd.pid'}",
            f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={d / 'log' / 'slurmd.log'}",
            "SlurmctldDebug=info", "SlurmdDebug=info",
            # Nothing that needs cgroups or accounting daemons: runs inside a container.
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none", "MpiDefault=none",
            "MailProg=/bin/true", "SchedulerType=sched/builtin",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
            "ReturnToService=2", "MinJobAge=600",
            f"NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={socket.gethostname()} "
            f"CPUs={os.cpu_count() or 1} State=UNKNOWN",
            f"PartitionName=test Nodes={NODE} Default=YES MaxTime=INFINITE State=UP", ""])

    def _daemon(self, name: str, tool: str, *args: str) -> None:
        out = open(self.dir / "log" / f"{name}.out", "wb")
        self.procs[name] = subprocess.Popen([self.tools[tool], *args], env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        out.close()

    def _until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}: {self.first_error(dead)}")
            if predicate():
                return
            time.sleep(0.25)
        raise RuntimeError(f"no {what} within {timeout:.0f} s: {self.first_error(list(self.procs))}")

    def first_error(self, names) -> str:
        """The first fatal line of the daemons' logs, else the first error that is not routine here (no
        PMIx library, no state files yet on a first start)."""
        lines = [f"{f.name}: {line.strip()}" for n in names for f in sorted((self.dir / "log").glob(f"{n}.*"))
                 for line in f.read_text(errors="replace").splitlines()]
        routine = re.compile(r"pmix|mpi:|state file|trying backup", re.I)
        for pattern in ("fatal", "error"):
            for line in lines:
                if re.search(pattern, line, re.I) and not routine.search(line):
                    return line
        return "no error in the daemons' logs"

    def run(self, tool: str, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        p = subprocess.run([self.tools[tool], *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, cwd=REPO)
        if check and p.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
        return p

    def tasks(self, job: str) -> dict[str, dict[str, str]]:
        """The array tasks of `job` that slurmctld knows, by task id: JobState, ExitCode, ..."""
        p = self.run("scontrol", "-o", "show", "job", job)
        return {f["ArrayTaskId"]: f for f in map(_fields, p.stdout.splitlines()) if f.get("ArrayJobId") == job}

    def queued(self) -> list[str]:
        """Every job and array task still pending or running, as JOBID_TASK."""
        return self.run("squeue", "-h", "-o", "%i").stdout.split()

    def logs(self, *more: Path) -> str:
        """The daemons' logs, the jobs' output and `more` files, each its last 40 lines (for a failure)."""
        parts = []
        for f in [*sorted((self.dir / "log").iterdir()), *sorted((self.dir / "jobs").iterdir()), *more]:
            if not f.exists():
                continue
            text = f.read_text(errors="replace").splitlines()
            parts.append(f"--- {f.name} (last 40 lines)\n" + "\n".join(text[-40:]))
        return "\n".join(parts)

    def stop(self) -> list[str]:
        """Cancels every job, stops the daemons (TERM, then KILL); the names of any that would not stop."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--user", "root", check=False)
            deadline = time.time() + 60
            while time.time() < deadline and self.run("squeue", "-h", "-o", "%i", check=False).stdout.strip():
                time.sleep(0.5)
        stuck = []
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    stuck.append(name)
        return stuck


@pytest.fixture(scope="session")
def slurm_tools() -> dict[str, str]:
    """The binaries, checked before any service starts (a session fixture, listed first)."""
    found = {t: shutil.which(t) for t in TOOLS}
    missing = [t for t, p in found.items() if not p]
    if missing:
        pytest.skip(f"SLURM/munge binaries not found: {', '.join(missing)} "
                    "(apt-get install -y slurm-wlm munge; .ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("a one-node SLURM cluster needs root here (slurmd runs jobs as their users)")
    return found


@pytest.fixture
def slurm(slurm_tools):
    folder = Path(tempfile.mkdtemp(prefix="harness-slurm-", dir="/tmp"))
    folder.chmod(0o755)  # munged checks that every client can reach its socket
    cluster = Cluster(folder, slurm_tools)
    try:
        try:
            cluster.start()
        except RuntimeError as e:
            print(cluster.logs())
            pytest.skip(f"SLURM cannot start on this machine: {e}")
        yield cluster
    finally:
        stuck = cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
        assert not stuck, f"would not stop: {stuck}"


def submit(cluster: Cluster, services, synth_root: Path, work: Path, suite: Path, experiment: str,
           array: str) -> str:
    """`sbatch` from the checkout as a user would, with the stores in the environment; the job id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MLFLOW_HTTP_REQUEST_"))}
    env.update(MLFLOW_TRACKING_URI=services.tracking_uri, HARNESS_STORAGE=services.storage,
               HARNESS_DATA_ROOT=str(synth_root), PYTHON=sys.executable, PYTHONPATH=str(REPO), TMPDIR=str(work),
               PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", SLURM_CONF=str(cluster.conf))
    p = subprocess.run([cluster.tools["sbatch"], "--parsable", f"--array={array}", "--gres=none",
                        "--cpus-per-task=1", f"--output={cluster.dir / 'jobs'}/%A_%a.out", str(SBATCH),
                        str(suite), "--experiment", experiment], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().split(";")[0]


def task_environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


@pytest.mark.slow
def test_a_slurm_job_array_finishes_every_cell_once_also_after_scancel_mid_cell_and_a_resubmission(
        slurm_tools, services, slurm, synth_root, tmp_path, monkeypatch):
    # This process's polls fail within seconds if a server is gone (the jobs keep MLflow's default retries).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    rows = {"plain": {}, "weighted": {"class_weight_loss": True}}
    quick = write_suite(tmp_path / "slurm.yaml", rows, seeds=(0, 1, 2, 3), epochs=2)
    longer = write_suite(tmp_path / "slurm_cancel.yaml", rows, seeds=(0, 1, 2, 3), epochs=8)  # time to cancel in
    every_cell = sorted((row, s) for row in ("plain", "weighted") for s in range(4))
    tag = uuid.uuid4().hex[:8]
    try:
        # 1. Three array tasks drain one queue: each cell is trained by exactly one of them.
        first = f"slurm-array-{tag}"
        job = submit(slurm, services, synth_root, tmp_path, quick, first, "0-2")
        wait_for(lambda: not [j for j in slurm.queued() if j.split("_")[0] == job], 420, f"job array {job}")
        tasks = slurm.tasks(job)
        assert sorted(tasks) == ["0", "1", "2"]
        assert {t["JobState"] for t in tasks.values()} == {"COMPLETED"}
        assert {t["ExitCode"] for t in tasks.values()} == {"0:0"}
        runs = cell_runs(services.tracking_uri, first)
        assert finished(runs) == every_cell and len(runs) == len(every_cell)
        for i in tasks:
            assert f"task {job}_{i} on" in (slurm.dir / "jobs" / f"{job}_{i}.out").read_text()

        # 2. One task cancelled mid-cell, then resubmitted: its cell is finished once, by someone.
        second = f"slurm-scancel-{tag}"
        job = submit(slurm, services, synth_root, tmp_path, longer, second, "0-2")

        def a_task_mid_cell():
            runs = cell_runs(services.tracking_uri, second)
            if not finished(runs):
                return None
            for r in runs:
                pid = int(r.data.tags.get("harness.worker", ":0").rsplit(":", 1)[1])
                env = task_environ(pid)
                # Started under 1.5 s ago: the cancel lands well before its 8 epochs end.
                if r.info.status == "RUNNING" and env.get("SLURM_ARRAY_JOB_ID") == job and \
                        time.time() - r.info.start_time / 1000 < 1.5:
                    return r, pid, env["SLURM_ARRAY_TASK_ID"]
            return None
        victim_run, pid, victim = wait_for(a_task_mid_cell, 300, "a finished cell and an array task mid-cell")
        slurm.run("scancel", f"{job}_{victim}")
        wait_for(lambda: f"{job}_{victim}" not in slurm.queued() and not Path(f"/proc/{pid}").exists(), 60,
                 f"task {job}_{victim} to end")
        again = submit(slurm, services, synth_root, tmp_path, longer, second, victim)
        wait_for(lambda: not [j for j in slurm.queued() if j.split("_")[0] in (job, again)], 420,
                 f"job arrays {job} and {again}")

        tasks = slurm.tasks(job)
        assert tasks[victim]["JobState"] == "CANCELLED"
        for i, t in [*((i, t) for i, t in tasks.items() if i != victim), *slurm.tasks(again).items()]:
            assert (t["JobState"], t["ExitCode"]) == ("COMPLETED", "0:0"), f"task {t['JobId']} ({i})"
        runs = cell_runs(services.tracking_uri, second)
        assert finished(runs) == every_cell  # every cell exactly once
        assert not [r for r in runs if r.info.status == "RUNNING"]
        killed = [r for r in runs if r.info.status == "KILLED"]
        assert [r.info.run_id for r in killed] == [victim_run.info.run_id]
        assert "worker died" in killed[0].data.tags["harness.failure_reason"]
    except BaseException:
        print(slurm.logs(services.dir / "pg" / "postgres.log", services.dir / "mlflow.log"))
        raise
