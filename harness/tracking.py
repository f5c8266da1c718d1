"""MLflow: where runs go, what every run records, and how a run ends.

Runs are driven through `MlflowClient` with explicit run ids rather than the
fluent `mlflow.start_run()` stack: several runs (a suite's parent row run and
its seed children, an Optuna study and its trials) are open at once, and a
process-global "active run" is what breaks peers (optuna#4088, optuna#5148).
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Iterator, Mapping

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TAG_PREFIX = "harness."
PARENT_TAG = "mlflow.parentRunId"
MAX_TAG_LEN = 5000  # MLflow's limit on tag values is 8000; keep reasons short

_PACKAGES = ("torch", "torchaudio", "torchvision", "mlflow", "optuna", "numpy", "scikit-learn", "soundfile")


def resolve_tracking_uri(uri: str | None) -> str:
    """The flag wins, then MLFLOW_TRACKING_URI, then ./mlflow.db."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def redact(url: str) -> str:
    """A URL fit for logs and tags: any password replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    return url


def client(tracking_uri: str | None):
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri)
    # Opening a sqlite store runs its migrations; two processes doing that at once
    # on a new file fail ("table ... already exists"), so they take turns.
    import fcntl

    db = Path(uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".init-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return MlflowClient(tracking_uri=uri)


def get_or_create_experiment(c, name: str) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return c.create_experiment(name)
    except Exception:
        # Another worker created it between our look-up and create.
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


@functools.lru_cache(maxsize=1)
def environment_tags() -> dict[str, str]:
    """Git commit and package versions: enough to rebuild the environment."""
    tags = {f"{TAG_PREFIX}git_commit": _git("rev-parse", "HEAD") or "unknown",
            f"{TAG_PREFIX}git_dirty": str(bool(_git("status", "--porcelain", "--untracked-files=no"))).lower(),
            f"{TAG_PREFIX}python": platform.python_version(),
            f"{TAG_PREFIX}host": platform.node()}
    for pkg in _PACKAGES:
        try:
            tags[f"{TAG_PREFIX}version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return tags


def _git(*args: str) -> str:
    # The commit of the harness code itself, wherever the user runs it from.
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def log_metrics(c, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    c.log_batch(run_id, metrics=[Metric(k, float(v), ts, step or 0) for k, v in metrics.items()])


def set_tags(c, run_id: str, tags: Mapping[str, str]) -> None:
    from mlflow.entities import RunTag

    c.log_batch(run_id, tags=[RunTag(k, str(v)[:MAX_TAG_LEN]) for k, v in tags.items()])


def log_params(c, run_id: str, params: Mapping[str, str]) -> None:
    from mlflow.entities import Param

    c.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])


@contextmanager
def tracked_run(c, experiment_id: str, run_name: str, tags: Mapping[str, str] | None = None,
                parent_run_id: str | None = None) -> Iterator[str]:
    """Open a run; FINISHED on success, FAILED (with the reason as a tag) on error.

    An exception may carry `mlflow_status` (e.g. a pruned trial ends FINISHED
    or KILLED rather than FAILED); KeyboardInterrupt ends the run KILLED.
    """
    all_tags = dict(environment_tags())
    all_tags.update(tags or {})
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = c.create_run(experiment_id, run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    try:
        yield run_id
    except BaseException as e:
        status = getattr(e, "mlflow_status", "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        reason = f"{type(e).__name__}: {e}"
        try:
            set_tags(c, run_id, {f"{TAG_PREFIX}failure_reason": reason} if status != "FINISHED" else {})
            c.set_terminated(run_id, status=status)
        except Exception:
            pass  # the store itself failed; the original error matters more
        raise
    else:
        c.set_terminated(run_id, status="FINISHED")
