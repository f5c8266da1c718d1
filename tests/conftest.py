"""Shared fixtures: an isolated cache, tracking store and working folder per session,
a small synthetic corpus, and the real clips when RAVDESS_ROOT points at them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.config import RunConfig


@pytest.fixture(scope="session", autouse=True)
def _session_sandbox(tmp_path_factory):
    """Nothing a test does lands in the repo: cache, mlflow.db, mlruns/ and artifacts/ go to tmp."""
    work = tmp_path_factory.mktemp("work")
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_CACHE", str(work / ".cache"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
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


@pytest.fixture(scope="session")
def ravdess_root() -> Path:
    root = os.environ.get("RAVDESS_ROOT")
    if not root:
        pytest.skip("real RAVDESS clips not available: set RAVDESS_ROOT to a folder of Actor_XX/ WAVs")
    if not Path(root).is_dir():
        pytest.skip(f"RAVDESS_ROOT={root} is not a folder")
    return Path(root)


@pytest.fixture(scope="session")
def turev_root() -> Path:
    root = os.environ.get("TUREV_ROOT")
    if not root:
        pytest.skip("real TurEV-DB clips not available: set TUREV_ROOT to a folder of Angry/ Calm/ Happy/ Sad/ WAVs")
    if not Path(root).is_dir():
        pytest.skip(f"TUREV_ROOT={root} is not a folder")
    return Path(root)


@pytest.fixture
def experiment(request) -> str:
    """A fresh MLflow experiment name per test (one shared store is faster than one per test)."""
    return f"test-{request.node.name}"
