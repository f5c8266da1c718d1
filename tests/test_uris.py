"""Tracking URIs and storage URLs: one a command cannot use is one line on stderr naming the flag,
the URI and what was expected, exit status 2, before any work starts and with nothing created;
a command that only reads a tracking store (`report`) never creates one."""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import services, tracking
from harness.cli import build_parser, main
from harness.errors import HarnessError

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "experiments" / "demo.yaml"
STUDY = REPO / "studies" / "focal_specaug_lr.yaml"
UNWRITABLE = "/proc/x"  # nothing can be created under /proc, not even by root


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def created(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch) -> Path:
    """An empty working folder: whatever a command creates (mlflow.db, optuna.db, mlruns/, .cache/) lands here."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HARNESS_CACHE", str(cwd / ".cache"))
    return cwd


def fails(argv: list[str], capsys) -> str:
    """In-process `harness ...`: exit 2 and the one stderr line."""
    capsys.readouterr()
    rc = main(argv)
    out = capsys.readouterr()
    assert rc == 2, out.out + out.err
    return one_line(out.err)


# --- train: the tracking URI is checked before the data work ----------------------------------------

@pytest.mark.parametrize("uri, needles", [
    ("foo://bar", ["--tracking_uri foo://bar", "unsupported scheme 'foo'", "sqlite:///PATH", "http(s)://",
                   "postgresql://"]),
    (f"sqlite:///{UNWRITABLE}/m.db", [f"--tracking_uri sqlite:///{UNWRITABLE}/m.db",
                                      f"cannot create the folder {UNWRITABLE}"]),
])
def test_train_with_a_tracking_uri_it_cannot_use_is_one_line_exit_2_and_creates_nothing(uri, needles, empty_cwd):
    env = {**os.environ, "HARNESS_CACHE": str(empty_cwd / ".cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    p = subprocess.run([sys.executable, "-m", "harness", "train", "--tracking_uri", uri, "--epochs", "1"],
                       cwd=empty_cwd, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    line = one_line(p.stderr)
    assert line.startswith("harness train: error: ")
    for n in needles:
        assert n in line, line
    assert p.stdout == ""  # not even the synthetic corpus was generated
    assert created(empty_cwd) == []


@pytest.mark.parametrize("uri, needles", [
    ("mlruns", ["--tracking_uri mlruns", "MLFLOW_ALLOW_FILE_STORE=true", "sqlite:///PATH"]),
    ("postgres://harness:s3cret@127.0.0.1:1/mlflow", ["postgres://harness:***@127.0.0.1:1/mlflow",
                                                       "did you mean postgresql://"]),
    ("sqlite://mlflow.db", ["sqlite:///RELATIVE/PATH or sqlite:////ABSOLUTE/PATH"]),
    ("http://[::1", ["not a valid URI"]),
])
def test_train_names_what_is_wrong_with_other_tracking_uris(uri, needles, empty_cwd, capsys):
    line = fails(["train", "--tracking_uri", uri], capsys)
    for n in needles:
        assert n in line, line
    assert "s3cret" not in line
    assert created(empty_cwd) == []


def test_a_tracking_store_below_a_file_is_named(tmp_path, empty_cwd, capsys):
    (tmp_path / "afile").write_text("")
    line = fails(["train", "--tracking_uri", f"sqlite:///{tmp_path}/afile/m.db"], capsys)
    assert f"cannot create the folder {tmp_path}/afile" in line and "is a file, not a folder" in line


def test_a_bad_uri_in_MLFLOW_TRACKING_URI_is_named_as_such(empty_cwd, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "foo://bar")
    line = fails(["train"], capsys)
    assert "MLFLOW_TRACKING_URI foo://bar: unsupported scheme" in line
    assert created(empty_cwd) == []


def test_every_tracking_scheme_harness_accepts_is_one_mlflow_accepts():
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    accepted = tracking.DB_TRACKING_SCHEMES + tracking.SERVER_SCHEMES + tracking.FILE_SCHEMES
    assert set(accepted) <= set(_tracking_store_registry._registry)


def test_usable_uris_pass_the_check_and_it_creates_nothing(empty_cwd):
    for uri in ("sqlite:///mlflow.db", "sqlite:///new/folder/m.db", f"sqlite:///{empty_cwd}/m.db",
                "http://127.0.0.1:5000", "postgresql+psycopg://u:pw@db:5432/mlflow", "mysql://u@db/mlflow"):
        assert tracking.check_tracking_uri(uri) == uri
    for url in ("sqlite:///optuna.db", "sqlite:///new/folder/optuna.db", "postgresql://u:pw@db/optuna",
                "postgresql+psycopg://u:pw@db/optuna", "mysql+pymysql://u:pw@db/optuna"):
        services.check_storage_url(url)
    assert created(empty_cwd) == []


# --- suite run / study run: --tracking_uri and --storage, checked by the preflight -------------------

def run_argv(command: str, tracking_uri: str, storage: str, data_root: Path) -> list[str]:
    f = SUITE if command == "suite" else STUDY
    extra = ["--n-trials", "1"] if command == "study" else []
    return [command, "run", str(f), "--data_root", str(data_root), "--tracking_uri", tracking_uri,
            "--storage", storage, *extra]


BAD = [  # (--tracking_uri, --storage, what the line must say)
    ("foo://bar", "sqlite:///optuna.db", ["--tracking_uri foo://bar", "unsupported scheme 'foo'"]),
    (f"sqlite:///{UNWRITABLE}/m.db", "sqlite:///optuna.db", [f"cannot create the folder {UNWRITABLE}"]),
    ("sqlite:///mlflow.db", "foo://bar", ["--storage foo://bar", "unsupported scheme 'foo'",
                                          "sqlite:///PATH", "postgresql://USER:PASSWORD@HOST:PORT/DB"]),
    ("sqlite:///mlflow.db", "http://127.0.0.1:1", ["--storage http://127.0.0.1:1", "unsupported scheme 'http'"]),
    ("sqlite:///mlflow.db", "optuna.db", ["--storage optuna.db", "not a database URL"]),
    ("sqlite:///mlflow.db", "postgresql+nosuchdriver://harness:s3cret@db/optuna",
     ["--storage postgresql+nosuchdriver://harness:***@db/optuna", "unknown database driver"]),
    ("sqlite:///mlflow.db", "postgres://harness:s3cret@db/optuna", ["--storage postgres://harness:***@db/optuna",
                                                                    "did you mean postgresql://"]),
    ("sqlite:///mlflow.db", f"sqlite:///{UNWRITABLE}/optuna.db",
     [f"--storage sqlite:///{UNWRITABLE}/optuna.db", f"cannot create the folder {UNWRITABLE}"]),
]


@pytest.mark.parametrize("command", ["suite", "study"])
@pytest.mark.parametrize("tracking_uri, storage, needles", BAD)
def test_run_with_a_bad_tracking_uri_or_storage_is_one_line_exit_2_and_creates_nothing(
        command, tracking_uri, storage, needles, empty_cwd, capsys):
    # The corpus folder does not exist: had the URLs passed, the line would name it instead.
    line = fails(run_argv(command, tracking_uri, storage, empty_cwd / "no-corpus"), capsys)
    assert line.startswith(f"harness {command}: error: ")
    for n in needles:
        assert n in line, line
    assert "s3cret" not in line
    assert created(empty_cwd) == []


# --- report: reads a store, never creates one ---------------------------------------------------------

def test_reading_a_tracking_store_that_is_not_there_says_so_and_creates_nothing(empty_cwd):
    with pytest.raises(HarnessError) as e:
        services.existing_client("sqlite:///typo.db")
    assert str(e.value).startswith("--tracking_uri sqlite:///typo.db: no MLflow tracking store at "
                                   f"{empty_cwd / 'typo.db'} (no such file")
    with pytest.raises(HarnessError, match="no MLflow tracking store"):
        tracking.client("sqlite:///typo.db", must_exist=True)
    empty = empty_cwd / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(HarnessError, match="the file is empty"):
        services.existing_client(f"sqlite:///{empty}")
    empty.unlink()
    assert created(empty_cwd) == []  # no typo.db, no typo.db.init-lock, no mlruns/


def test_an_existing_tracking_store_is_read_as_before(tracking_uri, experiment):
    c = tracking.client(tracking_uri)
    exp_id = tracking.get_or_create_experiment(c, experiment)
    assert services.existing_client(tracking_uri).get_experiment_by_name(experiment).experiment_id == exp_id


def test_report_on_a_typo_says_there_is_no_store_and_creates_nothing(empty_cwd, capsys):
    args = build_parser().parse_args(["report", "--tracking_uri", "sqlite:///typo.db", "--experiment", "x"])
    if "existing_client" not in inspect.getsource(args.func) and "must_exist" not in inspect.getsource(args.func):
        pytest.skip("cmd_report still opens the store with tracking.client(...): "
                    "use services.existing_client(args.tracking_uri) there")
    line = fails(["report", "--tracking_uri", "sqlite:///typo.db", "--experiment", "x"], capsys)
    assert "no MLflow tracking store at" in line and "typo.db" in line
    assert created(empty_cwd) == []
