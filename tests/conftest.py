"""Shared fixtures: an isolated cache, tracking store and working folder per session,
a small synthetic corpus, and the real clips when RAVDESS_ROOT points at them."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import pytest

from harness.config import RunConfig

SERVICES_SH = Path(__file__).resolve().parent.parent / "scripts" / "services.sh"


@pytest.fixture(scope="session", autouse=True)
def _session_sandbox(tmp_path_factory):
    """Nothing a test does lands in the repo: cache, mlflow.db, mlruns/ and artifacts/ go to tmp."""
    work = tmp_path_factory.mktemp("work")
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_CACHE", str(work / ".cache"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Under `pytest -n N` the workers divide the cores: one torch thread each, and so for the processes
        # a test starts (N workers of 2 threads on 2 cores spend their time waiting on each other).
        import torch

        torch.set_num_threads(1)
        mp.setenv("OMP_NUM_THREADS", "1")
    mp.chdir(work)
    yield work
    mp.undo()


@pytest.fixture(scope="session")
def cache_dir(_session_sandbox) -> Path:
    return _session_sandbox / ".cache"


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """5 actors x 60 clips: enough for an actor-disjoint 3/1/1 split."""
    from harness.train.synth import generate_corpus

    return generate_corpus(tmp_path_factory.mktemp("synth") / "ravdess", n_actors=5, seed=0)


@pytest.fixture(scope="session")
def tracking_uri(_session_sandbox) -> str:
    return f"sqlite:///{_session_sandbox / 'mlflow.db'}"


@pytest.fixture
def tiny(synth_root):
    """A cheap config on the synthetic corpus; keyword arguments override."""
    def make(**overrides) -> RunConfig:
        base = dict(data_root=str(synth_root), n_mels=32, epochs=2, batch_size=32, device="cpu",
                    train_ratio=0.6, val_ratio=0.2)
        base.update(overrides)
        return RunConfig(**base)
    return make


def _real_folder(var: str, what: str) -> Path:
    """The folder an environment variable names, or a skip that says how to provide it."""
    root = os.environ.get(var)
    if not root:
        pytest.skip(f"real {what} not available: set {var} to its folder")
    if not Path(root).is_dir():
        pytest.skip(f"{var}={root} is not a folder")
    return Path(root)


@pytest.fixture(scope="session")
def ravdess_root() -> Path:
    return _real_folder("RAVDESS_ROOT", "RAVDESS clips (Actor_XX/ WAVs)")


@pytest.fixture(scope="session")
def turev_root() -> Path:
    return _real_folder("TUREV_ROOT", "TurEV-DB clips (Angry/ Calm/ Happy/ Sad/ WAVs)")


class Chromium(NamedTuple):
    exe: str
    args: list[str]


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    """The Chromium binary for the UI tests, or their skip: session-scoped, so it is checked before the
    suite or study a UI test would look at is trained (pytest sets up wider scopes first)."""
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    for p in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if p and Path(p).exists():
            return Chromium(p, args)
    pytest.skip("no Chromium at /usr/bin/chromium (apt-get install -y chromium; .ci/run does)")


@pytest.fixture
def experiment(request) -> str:
    """A fresh MLflow experiment name per test (one shared store is faster than one per test)."""
    return f"test-{request.node.name}"


# --- PostgreSQL + an MLflow server (scripts/services.sh): tests/test_scaleout.py, tests/test_slurm.py ---

class Services:
    def __init__(self, folder: Path):
        self.dir = folder
        self.env: dict[str, str] = {}

    def sh(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        # No MLflow job runner (its huey consumers: GenAI jobs, which nothing here uses), as `make ui`: each
        # server start (twice in the restart test) spawns and imports mlflow in a dozen processes otherwise.
        env = {**os.environ, "HARNESS_SERVICES_DIR": str(self.dir), "PYTHON": sys.executable,
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS": "false"}
        p = subprocess.run(["bash", str(SERVICES_SH), *args], env=env, capture_output=True, text=True, timeout=timeout)
        if (self.dir / "services.env").exists():
            for line in (self.dir / "services.env").read_text().splitlines():
                key, _, value = line.removeprefix("export ").partition("=")
                self.env[key] = value
        return p

    @property
    def tracking_uri(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    @property
    def storage(self) -> str:
        return self.env["HARNESS_STORAGE"]

    @property
    def password(self) -> str:
        return (self.dir / "password").read_text().strip()


def _pg_binaries() -> bool:
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"], "initdb").exists()
    return bool(glob.glob("/usr/lib/postgresql/*/bin/initdb"))


@pytest.fixture(scope="session")
def services():
    """Started once per session in a fresh folder under /tmp (PostgreSQL runs as the system user `postgres`
    when the tests run as root: the folder must be reachable by it, which pytest's own tmp folders are not)."""
    if not _pg_binaries():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin: "
                    "apt-get install -y postgresql (.ci/run does)")
    folder = Path(tempfile.mkdtemp(prefix="harness-services-", dir="/tmp"))
    folder.chmod(0o711)
    s = Services(folder)
    try:
        started = s.sh("start")
        assert started.returncode == 0, f"scripts/services.sh start failed:\n{started.stdout}\n{started.stderr}"
        yield s
    finally:
        stopped = s.sh("stop", timeout=120)
        shutil.rmtree(folder, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stderr
