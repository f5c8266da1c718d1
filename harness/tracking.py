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

    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL urllib can split (a malformed host): hide what looks like one
        import re

        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
    if parts.password:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    return url


# The tracking URIs MLflow 3 accepts (mlflow.tracking._tracking_service.utils registers them): a
# database through SQLAlchemy (the part before any "+driver"), an MLflow server, Databricks, and a
# local folder (the file store, which MLflow 3 refuses unless MLFLOW_ALLOW_FILE_STORE=true).
DB_TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
SERVER_SCHEMES = ("http", "https")
FILE_SCHEMES = ("", "file")
OTHER_TRACKING_SCHEMES = ("databricks", "databricks-uc", "uc")
EXPECTED_TRACKING_URI = ("sqlite:///PATH (a local file), http(s)://HOST:PORT (an MLflow server) or "
                         "postgresql://, mysql://, mssql:// (a database)")


def tracking_label(uri: str) -> str:
    """How to name a (resolved) tracking URI in a message: where it came from, password hidden."""
    source = "MLFLOW_TRACKING_URI" if uri == os.environ.get("MLFLOW_TRACKING_URI") else "--tracking_uri"
    return f"{source} {redact(uri)}"


def uri_scheme(uri: str) -> str:
    from urllib.parse import urlparse

    scheme = urlparse(uri).scheme.lower()
    return scheme.split("+", 1)[0]


def check_tracking_uri(tracking_uri: str | None, must_exist: bool = False) -> str:
    """The resolved tracking URI, or a HarnessError (one line) when MLflow cannot use it: an
    unsupported scheme, a sqlite file or folder in a place that cannot be created or written, or,
    with `must_exist`, a local store that is not there. Creates nothing; no network."""
    from harness.errors import HarnessError

    uri = resolve_tracking_uri(tracking_uri)
    label = tracking_label(uri)
    if uri in OTHER_TRACKING_SCHEMES:  # MLflow's bare "databricks", "uc"
        return uri
    try:
        scheme = uri_scheme(uri)
    except ValueError as e:
        raise HarnessError(f"{label}: not a valid URI ({e}); expected {EXPECTED_TRACKING_URI}") from None
    if scheme in FILE_SCHEMES:
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() not in ("true", "1"):
            raise HarnessError(f"{label}: a folder (MLflow's file store) is refused by MLflow 3 unless "
                               f"MLFLOW_ALLOW_FILE_STORE=true; expected {EXPECTED_TRACKING_URI}")
        folder = _file_store_path(uri)
        if must_exist and not folder.is_dir():
            raise HarnessError(f"{label}: no MLflow tracking store at {folder} (no such folder)")
        check_location(folder, label)
        return uri
    if scheme not in DB_TRACKING_SCHEMES + SERVER_SCHEMES + OTHER_TRACKING_SCHEMES:
        raise HarnessError(f"{label}: unsupported scheme {scheme!r}{scheme_hint(scheme)}; "
                           f"expected {EXPECTED_TRACKING_URI}")
    if scheme == "sqlite":
        check_sqlite_url(uri, label, must_exist=must_exist, what="MLflow tracking store")
    return uri


def scheme_hint(scheme: str) -> str:
    """SQLAlchemy 1.4 dropped the postgres:// alias that Heroku-style URLs still use."""
    return " (did you mean postgresql://?)" if scheme == "postgres" else ""


def _file_store_path(uri: str) -> Path:
    if uri.lower().startswith("file:"):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        return Path(url2pathname(urlparse(uri).path)).absolute()
    return Path(uri).absolute()


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:///PATH URL (a relative PATH is relative to the current folder);
    None for any other URL and for an in-memory database (sqlite://, sqlite:///:memory:)."""
    scheme, _, rest = url.partition(":")
    if scheme.split("+", 1)[0].lower() != "sqlite" or not rest.startswith("///"):
        return None
    path = rest[3:].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def check_sqlite_url(url: str, label: str, must_exist: bool = False, what: str = "database") -> None:
    """A sqlite URL is sqlite:///PATH (or in memory) and its file can be created or written;
    with `must_exist` the file must already hold a database. Creates nothing."""
    from harness.errors import HarnessError

    rest = url.partition(":")[2]
    if rest != "//" and not rest.startswith("///"):
        raise HarnessError(f"{label}: a sqlite URL is sqlite:///RELATIVE/PATH or sqlite:////ABSOLUTE/PATH "
                           f"(three or four slashes)")
    db = sqlite_path(url)
    if db is None:
        return
    db = db.absolute()
    if must_exist and not (db.is_file() and db.stat().st_size > 0):
        why = "no such file" if not db.exists() else "not a file" if not db.is_file() else "the file is empty"
        raise HarnessError(f"{label}: no {what} at {db} ({why}; a relative sqlite:/// path is relative to "
                           f"the current folder, {Path.cwd()})")
    if db.is_dir():
        raise HarnessError(f"{label}: {db} is a folder, not a sqlite database file")
    check_location(db.parent, label)
    if db.exists() and not os.access(db, os.R_OK | os.W_OK):
        raise HarnessError(f"{label}: {db} cannot be written (permission denied)")


def check_location(folder: Path, label: str) -> None:
    """`folder` exists and can be written in, or can be created: one line otherwise. Creates
    nothing (the probe is an anonymous temporary file in the nearest existing folder)."""
    import tempfile

    from harness.errors import HarnessError

    folder = Path(os.path.abspath(folder))
    existing = folder
    try:
        while not existing.exists():
            existing = existing.parent
    except OSError as e:
        raise HarnessError(f"{label}: cannot use the folder {folder} ({e.strerror or e})") from None
    if not existing.is_dir():
        raise HarnessError(f"{label}: cannot create the folder {folder}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        where = f"write in the folder {folder}" if existing == folder else \
            f"create the folder {folder}: nothing can be written in {existing}"
        raise HarnessError(f"{label}: cannot {where} ({e.strerror or e})") from None


def client(tracking_uri: str | None, must_exist: bool = False):
    """An MlflowClient on the tracking URI (the flag, else $MLFLOW_TRACKING_URI, else ./mlflow.db).

    A URI MLflow cannot use is a HarnessError (one line, exit 2), not a traceback. A new sqlite
    store (and its folder) is created on first use, unless `must_exist` (readers such as
    `report`): then a store that is not there is a HarnessError and nothing is created
    (`services.existing_client` also asks a server or database to answer first).
    """
    from mlflow.tracking import MlflowClient

    from harness.errors import HarnessError

    uri = check_tracking_uri(tracking_uri, must_exist=must_exist)
    db = sqlite_path(uri)
    if db is None or must_exist:  # an existing sqlite store has its tables: nothing to initialise
        return MlflowClient(tracking_uri=uri)
    # Opening a sqlite store runs its migrations; two processes doing that at once
    # on a new file fail ("table ... already exists"), so they take turns.
    import fcntl

    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        lock = open(db.with_name(db.name + ".init-lock"), "w")
    except OSError as e:
        raise HarnessError(f"{tracking_label(uri)}: cannot create the store in {db.parent.absolute()} "
                           f"({e.strerror or e})") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return MlflowClient(tracking_uri=uri)


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # MLflow 3 opens it on its training runs


def get_or_create_experiment(c, name: str) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return c.create_experiment(name, tags=EXPERIMENT_KIND)
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


def log_metrics(c, run_id: str, metrics: Mapping[str, float], step: int | None = None,
                tags: Mapping[str, str] | None = None) -> None:
    """Metrics (and `tags`) in one batch: one write to the store, not one per kind."""
    from mlflow.entities import Metric, RunTag

    ts = int(time.time() * 1000)
    c.log_batch(run_id, metrics=[Metric(k, float(v), ts, step or 0) for k, v in metrics.items()],
                tags=[RunTag(k, str(v)[:MAX_TAG_LEN]) for k, v in (tags or {}).items()])


def set_tags(c, run_id: str, tags: Mapping[str, str]) -> None:
    from mlflow.entities import RunTag

    c.log_batch(run_id, tags=[RunTag(k, str(v)[:MAX_TAG_LEN]) for k, v in tags.items()])


def set_experiment_tags(c, exp_id: str, tags: Mapping[str, str], attempts: int = 5) -> None:
    """Set the experiment's tags, safe against another process setting the same new tag at once.

    MLflow's SQL store sets an experiment tag by look-up then insert (`session.merge`), so two suite
    processes that finish together and both write a tag the experiment does not have yet (its
    description) race: the loser's insert fails with a unique-constraint error. Run tags go through
    `log_batch`, which upserts, and do not race. The lost write is retried: the row exists now, so
    the retry updates it; both processes write the same report, so either value is right."""
    for k, v in tags.items():
        for attempt in range(attempts):
            try:
                c.set_experiment_tag(exp_id, k, v)
                break
            except Exception as e:
                if attempt == attempts - 1 or not _lost_insert_race(e):
                    raise
                time.sleep(0.05 * (attempt + 1))


def _lost_insert_race(e: Exception) -> bool:
    text = str(e)
    return any(s in text for s in ("UNIQUE constraint failed", "IntegrityError", "duplicate key value"))


def log_params(c, run_id: str, params: Mapping[str, str]) -> None:
    from mlflow.entities import Param

    c.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])


@contextmanager
def tracked_run(c, experiment_id: str, run_name: str, tags: Mapping[str, str] | None = None,
                parent_run_id: str | None = None) -> Iterator[str]:
    """Open a run; FINISHED on success, FAILED (with the reason as a tag) on error.

    An exception may carry `mlflow_status` (e.g. a pruned trial ends FINISHED
    or KILLED rather than FAILED) and `mlflow_tags`; KeyboardInterrupt ends the run KILLED.
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
            set_tags(c, run_id, {**({f"{TAG_PREFIX}failure_reason": reason} if status != "FINISHED" else {}),
                                 **getattr(e, "mlflow_tags", {})})
            c.set_terminated(run_id, status=status)
        except Exception:
            pass  # the store itself failed; the original error matters more
        raise
    else:
        c.set_terminated(run_id, status="FINISHED")
