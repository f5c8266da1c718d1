"""Start-up preflight for remote services: fail in seconds with one line, never hang.

`suite run` and `study run` call `preflight(tracking_uri, storage_url)` before any
other work. An MLflow tracking server (http/https URI) must answer `GET /health`;
a database URL (the Optuna storage, or a database-backed tracking URI) must accept
a connection. Each check has a short timeout (`HARNESS_PREFLIGHT_TIMEOUT_S`,
default 5 s), so a stopped PostgreSQL or an unreachable server is one clear
`HarnessError` (exit status 2) instead of MLflow's minutes of HTTP retries or a
connection that waits forever. Before any of that, both URLs are checked offline:
a scheme MLflow (tracking URI) or SQLAlchemy/Optuna (storage) cannot use, or a
sqlite file in a folder that cannot be created or written, is one line too, and
nothing is created. Passwords never appear in the messages (`tracking.redact`).
"""
from __future__ import annotations

import os
import re

from harness import tracking
from harness.errors import HarnessError

_DB_SCHEMES = ("postgresql", "postgres", "mysql", "mssql", "oracle")


def timeout_s() -> float:
    return float(os.environ.get("HARNESS_PREFLIGHT_TIMEOUT_S", "5"))


# Optuna's RDBStorage takes any SQLAlchemy URL; these are the databases SQLAlchemy ships dialects for.
STORAGE_BACKENDS = ("sqlite", "postgresql", "mysql", "mariadb", "mssql", "oracle")
EXPECTED_STORAGE = ("a SQLAlchemy database URL: sqlite:///PATH (a local file), "
                    "postgresql://USER:PASSWORD@HOST:PORT/DB or mysql://USER:PASSWORD@HOST:PORT/DB")


def preflight(tracking_uri: str | None, storage_url: str | None) -> None:
    """Raise HarnessError naming the first URL that cannot work or service that does not answer."""
    uri = tracking.check_tracking_uri(tracking_uri)
    if storage_url:
        check_storage_url(storage_url)
    if uri.startswith(("http://", "https://")):
        check_tracking_server(uri)
    elif _scheme(uri).startswith(_DB_SCHEMES):
        check_database(uri, "the MLflow tracking database")
    if storage_url and _scheme(storage_url).startswith(_DB_SCHEMES):
        check_database(storage_url, "the coordination storage (--storage)")


def check_storage_url(url: str) -> None:
    """The Optuna storage (--storage) is a database URL SQLAlchemy can open and, for sqlite, a
    file in a folder that can be created or written. Offline; creates nothing."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    label = f"--storage {tracking.redact(url)}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise HarnessError(f"{label}: not a database URL; expected {EXPECTED_STORAGE}") from None
    backend = parsed.get_backend_name()
    if backend not in STORAGE_BACKENDS:
        raise HarnessError(f"{label}: unsupported scheme {backend!r}{tracking.scheme_hint(backend)}; "
                           f"expected {EXPECTED_STORAGE}")
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise HarnessError(f"{label}: unknown database driver {parsed.drivername!r}; expected "
                           f"{EXPECTED_STORAGE}") from None
    if backend == "sqlite":
        tracking.check_sqlite_url(url, label, what="Optuna storage")


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].lower() if ":" in url else ""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__


def check_tracking_server(uri: str) -> None:
    import requests

    url = uri.rstrip("/") + "/health"
    where = f"cannot reach the MLflow tracking server at {tracking.redact(uri)}"
    try:
        r = requests.get(url, timeout=timeout_s())
    except requests.exceptions.RequestException as e:
        if isinstance(e, requests.exceptions.Timeout):
            reason = f"no answer within {timeout_s():g}s"
        else:  # requests nests the cause deep in its message: keep the OS error ("[Errno 111] Connection refused")
            m = re.search(r"\[Errno -?\d+\] [^'\")]*", str(e))
            reason = f"{type(e).__name__}: {m.group(0)}" if m else _one_line(e)
        raise HarnessError(f"{where}: {reason} (is it running? scripts/services.sh status)") from None
    if r.status_code != 200:
        raise HarnessError(f"{where}: GET /health answered HTTP {r.status_code} (is this an MLflow server?)")


def check_database(url: str, what: str) -> None:
    import sqlalchemy

    where = f"cannot reach {what} at {tracking.redact(url)}"
    scheme = _scheme(url)
    connect_args = {"connect_timeout": max(1, round(timeout_s()))}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
    except ModuleNotFoundError as e:
        raise HarnessError(f"{where}: the database driver for {scheme!r} is not installed ({e.name}; "
                           f"PostgreSQL needs psycopg: pip install -r requirements.txt)") from None
    except Exception as e:
        raise HarnessError(f"invalid database URL for {what} {tracking.redact(url)}: {_one_line(e)}") from None
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
    except Exception as e:
        cause = getattr(e, "orig", None) or e
        raise HarnessError(f"{where}: {_one_line(cause)} (is it running? scripts/services.sh status)") from None
    finally:
        engine.dispose()


def existing_client(tracking_uri: str | None):
    """An MlflowClient for commands that read a store and never create one: a server or database
    behind the URI must answer first (one line, exit 2, within the preflight timeout)."""
    uri = tracking.check_tracking_uri(tracking_uri, must_exist=True)
    if tracking.sqlite_path(uri) is None and tracking.uri_scheme(uri) in tracking.DB_TRACKING_SCHEMES + tracking.SERVER_SCHEMES:
        preflight(uri, None)
    return tracking.client(uri, must_exist=True)
