"""The stores of benchmarks/overhead.py: empty and full pairs (MLflow's, the work queue's) on local sqlite
files or on a PostgreSQL server of its own, and the filling of a full one (2,000 finished cell runs and
their completed queue trials, as SQL copies of one written through the clients)."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXPERIMENT = "bench-overhead"
FINAL_METRICS = ("best_epoch", "best_val_f1_macro", "n_train_clips", "n_val_clips", "n_test_clips", "epochs_run",
                 "wall_time_s", "test_f1_macro", "test_accuracy", "test_f1_negative", "test_f1_neutral",
                 "test_f1_positive")


# --- stores ---------------------------------------------------------------------------

class Stores:
    """Named pairs of stores (MLflow's, the work queue's) on one backend, each with a folder for its
    artifacts: `new` empty ones, `clone` a filled one, `drop`."""
    backend = "sqlite"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def folder(self, name: str) -> Path:
        return self.tmp / self.backend / name

    def urls(self, name: str) -> tuple[str, str]:
        return f"sqlite:///{self.folder(name) / 'mlflow.db'}", f"sqlite:///{self.folder(name) / 'optuna.db'}"

    def new(self, name: str) -> tuple[str, str]:
        self.folder(name).mkdir(parents=True)
        return self.urls(name)

    def clone(self, template: str, name: str) -> tuple[str, str]:
        shutil.copytree(self.folder(template), self.folder(name))
        return self.urls(name)

    def drop(self, name: str) -> None:
        shutil.rmtree(self.folder(name), ignore_errors=True)

    def settle(self) -> None:
        """Write out what making the stores left in memory (a copied file's dirty pages), so that the
        disk's catching up is not charged to the suite timed next."""
        os.sync()

    def close(self) -> None:
        pass


class PostgresStores(Stores):
    """Two databases per store on a PostgreSQL server of its own (scripts/services.sh into a /tmp folder,
    stopped at the end); a clone is `CREATE DATABASE ... TEMPLATE`."""
    backend = "postgres"

    def __init__(self, tmp: Path) -> None:
        import tempfile

        super().__init__(tmp)
        self.svc = Path(tempfile.mkdtemp(prefix="harness-services-", dir="/tmp"))
        self.svc.chmod(0o711)
        # `start pg` exits 3 (its status: the MLflow server, not needed here, is stopped): PostgreSQL must run
        out = self._services("start", "pg")
        if "postgresql: running" not in out:
            raise SystemExit(f"overhead benchmark: scripts/services.sh start pg failed:\n{out}")
        env = dict(line.removeprefix("export ").partition("=")[::2]
                   for line in (self.svc / "services.env").read_text().splitlines())
        self.base = env["HARNESS_STORAGE"].rsplit("/", 1)[0]
        print(f"postgres: a server of its own, in {self.svc}", flush=True)

    def _services(self, *args: str) -> str:
        import subprocess

        p = subprocess.run(["bash", str(HERE.parent / "scripts" / "services.sh"), *args], capture_output=True,
                           text=True, timeout=300, env={**os.environ, "HARNESS_SERVICES_DIR": str(self.svc),
                                                        "PYTHON": sys.executable})
        return p.stdout + p.stderr

    def urls(self, name: str) -> tuple[str, str]:
        return f"{self.base}/{name}_mlflow", f"{self.base}/{name}_optuna"

    def _admin(self, *statements: str) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(f"{self.base}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            for st in statements:
                conn.execute(sa.text(st))
        engine.dispose()

    def new(self, name: str) -> tuple[str, str]:
        self.folder(name).mkdir(parents=True)
        self._admin(*(f"CREATE DATABASE {name}_{db}" for db in ("mlflow", "optuna")))
        return self.urls(name)

    def clone(self, template: str, name: str) -> tuple[str, str]:
        self.folder(name).mkdir(parents=True)  # artifacts go where the template's experiment says, as on sqlite
        # a template may have no other session: end this process's pooled ones (the filling's clients)
        self._admin(*(st for db in ("mlflow", "optuna") for st in (
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{template}_{db}' "
            f"AND pid <> pg_backend_pid()", f"CREATE DATABASE {name}_{db} TEMPLATE {template}_{db}")))
        return self.urls(name)

    def settle(self) -> None:
        self._admin("CHECKPOINT")  # a database made from a template is written out by later checkpoints
        super().settle()

    def drop(self, name: str) -> None:
        self._admin(*(f"DROP DATABASE IF EXISTS {name}_{db} WITH (FORCE)" for db in ("mlflow", "optuna")))
        super().drop(name)

    def close(self) -> None:
        out = self._services("stop", "pg")  # plain `stop` exits at the MLflow server this never started
        if "postgresql: stopped" not in out:
            print(f"overhead benchmark: PostgreSQL in {self.svc} may still run:\n{out}")
            return
        shutil.rmtree(self.svc, ignore_errors=True)


_COLUMNS: dict[str, list[str]] = {}  # per table; the same schema on either backend


def _copy_rows(conn, table: str, key: str, new: Any, old: Any, returning: str | None = None) -> Any:
    """INSERT ... SELECT a copy of `table`'s rows whose `key` is `old`, with `new` in its place."""
    import sqlalchemy as sa

    q = conn.dialect.identifier_preparer.quote
    if table not in _COLUMNS:
        _COLUMNS[table] = [c["name"] for c in sa.inspect(conn).get_columns(table)]
    cols = [c for c in _COLUMNS[table] if c != returning]
    sel = ", ".join(":new" if c == key else q(c) for c in cols)
    tail = f" RETURNING {returning}" if returning else ""
    res = conn.execute(sa.text(f"INSERT INTO {table} ({', '.join(map(q, cols))}) SELECT {sel} FROM {table} "
                               f"WHERE {q(key)} = :old{tail}"), {"new": new, "old": old})
    return res.scalar() if returning else None


def fill(mlflow_url: str, optuna_url: str, folder: Path, n_runs: int, root: Path) -> float:
    """Stores holding n_runs finished cell runs of other rows (same experiment, same data) and their
    completed queue trials; returns the seconds it took.

    One run is written through MLflow, as a suite writes it (tags, params, final metrics, FINISHED);
    the others are SQL copies of its rows in MLflow's own tables (runs, tags, params, metrics,
    latest_metrics) with their own run id, row, seed and config hash, in one transaction; the queue's
    trials likewise in Optuna's. Through the clients, 2,000 runs and trials took 2-6 minutes on a
    loaded 2-core machine, and only the stores' size matters here."""
    import uuid

    import optuna
    import sqlalchemy as sa
    from mlflow.entities import Metric, Param

    from harness import tracking
    from harness.config import RunConfig
    from harness.suite.queue import open_queue
    from harness.train.data import scan_data

    t0 = time.perf_counter()
    fingerprint = scan_data(RunConfig(data_root=str(root))).fingerprint
    c = tracking.client(mlflow_url)
    exp_id = c.create_experiment(EXPERIMENT, artifact_location=(folder / "mlruns").as_uri())

    def cell(i: int) -> tuple[str, int, str]:
        row, seed = f"filler-{i // 10}", i % 10
        return row, seed, RunConfig(data_root=str(root), n_mels=32, epochs=1 + i // 10, seed=seed).config_hash

    row, seed, h = cell(0)
    cfg = RunConfig(data_root=str(root), n_mels=32, epochs=1, seed=0)
    tags = {**tracking.environment_tags(), "harness.kind": "cell", "harness.row": row, "harness.seed": str(seed),
            "harness.config_hash": h, "harness.data_fingerprint": fingerprint, "harness.data": "synthetic",
            "harness.suite": EXPERIMENT, "harness.profile": "full", "harness.device": "cpu",
            "harness.memory_format": "channels_last", "harness.torch_threads": "2"}
    ts = int(time.time() * 1000)
    tpl = c.create_run(exp_id, run_name=f"{row}/seed{seed}", tags=tags).info.run_id
    c.log_batch(tpl, params=[Param(k, v) for k, v in cfg.to_params().items()],
                metrics=[Metric(k, float(j), ts, 0) for j, k in enumerate(FINAL_METRICS)])
    c.set_terminated(tpl, status="FINISHED")

    engine = sa.create_engine(mlflow_url)
    with engine.begin() as db:
        for i in range(1, n_runs):
            row, seed, h = cell(i)
            new = uuid.uuid4().hex
            for table in ("runs", "tags", "params", "metrics", "latest_metrics"):
                _copy_rows(db, table, "run_uuid", new, tpl)
            db.execute(sa.text("UPDATE runs SET name = :n WHERE run_uuid = :r"), {"n": f"{row}/seed{seed}", "r": new})
            for key, value in (("harness.row", row), ("harness.seed", str(seed)), ("harness.config_hash", h),
                               ("mlflow.runName", f"{row}/seed{seed}")):
                db.execute(sa.text("UPDATE tags SET value = :v WHERE run_uuid = :r AND key = :k"),
                           {"v": value, "r": new, "k": key})
    engine.dispose()

    # The queue: one completed trial through Optuna, the others SQL copies in Optuna's tables, each with its cell.
    queue = open_queue(optuna_url, EXPERIMENT)
    row, seed, h = cell(0)
    queue.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=0.0,
                                              user_attrs={"row": row, "seed": seed},
                                              system_attrs={"fixed_params": {"cell": f"{row}|{seed}|{h}"}}))
    engine = sa.create_engine(optuna_url)
    with engine.begin() as db:
        (first,) = db.execute(sa.text("SELECT trial_id FROM trials")).fetchone()
        for i in range(1, n_runs):
            row, seed, h = cell(i)
            tid = _copy_rows(db, "trials", "number", i, 0, returning="trial_id")
            _copy_rows(db, "trial_values", "trial_id", tid, first, returning="trial_value_id")
            db.execute(sa.text("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (:t, :k, :v)"),
                       [{"t": tid, "k": "row", "v": json.dumps(row)}, {"t": tid, "k": "seed", "v": json.dumps(seed)}])
            db.execute(sa.text("INSERT INTO trial_system_attributes (trial_id, key, value_json) VALUES (:t, :k, :v)"),
                       {"t": tid, "k": "fixed_params", "v": json.dumps({"cell": f"{row}|{seed}|{h}"})})
    engine.dispose()
    if len(open_queue(optuna_url, EXPERIMENT).get_trials(deepcopy=False)) != n_runs:
        raise SystemExit("overhead benchmark: the full store's queue does not hold every trial")
    n = len(c.search_runs([exp_id], "tags.`harness.kind` = 'cell' and attributes.status = 'FINISHED'",
                          max_results=50000))
    if n != n_runs:
        raise SystemExit(f"overhead benchmark: the full store holds {n} finished cell runs, not {n_runs}")
    return time.perf_counter() - t0
