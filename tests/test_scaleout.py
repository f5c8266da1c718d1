"""Scale-out on real services: PostgreSQL (the work queue / study storage) and an MLflow tracking
server on it, started by scripts/services.sh; real worker processes, real SIGKILL, a restarted
server, services that are down at start, and the MLflow UI in headless Chromium.

The services are conftest's `services` fixture (shared with tests/test_slurm.py): a fresh folder under
/tmp for the session, always stopped at the end. Without PostgreSQL's server binaries these tests skip
with that reason; CI (.ci/run) installs them.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from harness import tracking
from harness.suite.planning import search_runs

REPO = Path(__file__).resolve().parent.parent
# Under pytest-xdist (--dist loadgroup) these run in one worker: one PostgreSQL + MLflow server per session.
pytestmark = pytest.mark.xdist_group("services")


# --- helpers -------------------------------------------------------------------------------------

def write_suite(path: Path, rows: dict, seeds=(0, 1), epochs: int = 1) -> Path:
    doc = {"name": path.stem, "seeds": list(seeds),
           "base": {"model": "smallcnn", "n_mels": 32, "epochs": epochs, "batch_size": 64, "train_ratio": 0.6,
                    "val_ratio": 0.2},
           "rows": [{"name": n, "config": cfg} for n, cfg in rows.items()]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def harness_cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "harness", *argv]


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def cell_runs(uri: str, experiment: str) -> list:
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    return search_runs(c, exp.experiment_id, "tags.`harness.kind` = 'cell'") if exp else []


def finished(runs) -> list[tuple[str, int]]:
    return sorted((r.data.tags["harness.row"], int(r.data.tags["harness.seed"]))
                  for r in runs if r.info.status == "FINISHED")


def wait_for(predicate, timeout: float, what: str, procs=()):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if procs and all(p.poll() is not None for p in procs):
            break
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def drain_output(proc: subprocess.Popen, sink: list[str]) -> threading.Thread:
    """Read a child's output as it comes (a full pipe would stall it)."""
    t = threading.Thread(target=lambda: sink.extend(proc.stdout), daemon=True)
    t.start()
    return t


def all_logged_text(uri: str, experiment: str) -> str:
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    runs = search_runs(c, exp.experiment_id, "")
    return "\n".join(f"{r.data.params}\n{r.data.tags}" for r in runs)


# --- (a) two workers drain one suite; one is killed with SIGKILL mid-cell -------------------------

@pytest.mark.slow
def test_two_workers_one_killed_mid_cell_survivor_and_rerun_finish_every_cell_once(services, synth_root, tmp_path):
    experiment = f"scaleout-kill-{uuid.uuid4().hex[:8]}"
    path = write_suite(tmp_path / "kill.yaml", seeds=(0, 1), epochs=6,
                       rows={"plain": {}, "weighted": {"class_weight_loss": True}})
    argv = harness_cmd("suite", "run", str(path), "--data_root", str(synth_root), "--experiment", experiment,
                       "--tracking_uri", services.tracking_uri, "--storage", services.storage,
                       "--out", str(tmp_path / "art"))
    outs: list[list[str]] = [[], []]
    # One torch thread each: two workers on a 2-core machine, as `--workers 2` would divide them.
    procs = [subprocess.Popen(argv, cwd=tmp_path, env=child_env(OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    readers = [drain_output(p, o) for p, o in zip(procs, outs)]
    victim, survivor = procs
    try:
        # Kill once a cell is finished and the victim is early in a cell (its run RUNNING, tagged with its pid,
        # at most half its epochs logged): a run seen RUNNING near its end could finish before the signal lands
        # (seen once in CI: the victim died between cells, and no run was left to mark KILLED).
        c = tracking.client(services.tracking_uri)

        def victim_mid_cell():
            runs = cell_runs(services.tracking_uri, experiment)
            return finished(runs) and any(r.info.status == "RUNNING" and
                                          r.data.tags.get("harness.worker", "").endswith(f":{victim.pid}") and
                                          len(c.get_metric_history(r.info.run_id, "val_loss")) <= 3
                                          for r in runs)
        wait_for(victim_mid_cell, 240, "a finished cell and the victim mid-cell", procs)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        before = cell_runs(services.tracking_uri, experiment)
        assert any(r.info.status == "RUNNING" for r in before)  # the victim's cell was left RUNNING
        survivor.wait(timeout=400)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for t in readers:
        t.join(timeout=10)
    assert survivor.returncode == 0, "".join(outs[1])
    # The survivor took the dead worker's cell back (same host: its PID is gone) and finished the suite.
    runs = cell_runs(services.tracking_uri, experiment)
    every_cell = [(row, s) for row in ("plain", "weighted") for s in (0, 1)]
    assert finished(runs) == every_cell
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert len(killed) == 1 and "worker died" in killed[0].data.tags["harness.failure_reason"]
    assert not [r for r in runs if r.info.status == "RUNNING"]

    rerun = subprocess.run(argv, cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "0 to run" in rerun.stdout and "summary: 0 done, 4 skipped" in rerun.stdout
    assert finished(cell_runs(services.tracking_uri, experiment)) == every_cell  # still exactly once each

    # Artifacts went through the server into its artifact store; no password anywhere it logs.
    c = tracking.client(services.tracking_uri)
    done = [r for r in runs if r.info.status == "FINISHED"][0]
    assert "best_model.pt" in {a.path for a in c.list_artifacts(done.info.run_id)}
    assert services.password not in all_logged_text(services.tracking_uri, experiment)
    assert services.password not in "".join(outs[1]) + rerun.stdout + rerun.stderr


# --- (b) a study: a worker killed mid-trial, the stale trial is retried ----------------------------

@pytest.mark.slow
def test_a_killed_study_workers_trial_is_retried_on_postgres(services, synth_root, tmp_path):
    import optuna
    from optuna.trial import TrialState

    name = f"scaleout-study-{uuid.uuid4().hex[:8]}"
    doc = {"name": name,
           "base": {"config": {"model": "smallcnn", "n_mels": 32, "epochs": 8, "batch_size": 32, "train_ratio": 0.6,
                               "val_ratio": 0.2, "focal_loss": True, "use_specaug": True}},
           "params": {"focal_gamma": {"type": "float", "low": 0.0, "high": 5.0},
                      "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}},
           "sampler": {"name": "tpe", "seed": 0}, "pruner": "none", "budget": {"n_trials": 3}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    argv = harness_cmd("study", "run", str(path), "--data_root", str(synth_root), "--tracking_uri",
                       services.tracking_uri, "--storage", services.storage)
    env = child_env(HARNESS_HEARTBEAT_S="1", HARNESS_GRACE_S="3")
    out: list[str] = []
    victim = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    reader = drain_output(victim, out)
    try:
        def trial_running():
            c = tracking.client(services.tracking_uri)
            exp = c.get_experiment_by_name(name)
            return exp and search_runs(c, exp.experiment_id,
                                   "tags.`harness.kind` = 'trial' and attributes.status = 'RUNNING'")
        wait_for(trial_running, 180, "a trial mid-training", [victim])
        time.sleep(1.0)  # a few epochs in
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    reader.join(timeout=10)
    time.sleep(4)  # past the grace period: the trial's heartbeat is stale
    rerun = subprocess.run([*argv, "--n-trials", "1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    trials = optuna.load_study(study_name=name, storage=services.storage).trials
    dead = [t for t in trials if t.state == TrialState.FAIL]
    retried = [t for t in trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t)
               is not None]
    assert len(dead) == 1 and len(retried) == 1
    assert retried[0].state == TrialState.COMPLETE and retried[0].params == dead[0].params
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    c = tracking.client(services.tracking_uri)
    exp = c.get_experiment_by_name(name)
    trial_runs = search_runs(c, exp.experiment_id, "tags.`harness.kind` = 'trial'")
    assert not [r for r in trial_runs if r.info.status == "RUNNING"]
    assert any(r.info.status == "KILLED" for r in trial_runs)
    assert services.password not in all_logged_text(services.tracking_uri, name)


# --- (c) the tracking server restarted mid-suite ---------------------------------------------------

@pytest.mark.slow
def test_a_tracking_server_restart_mid_suite_loses_nothing(services, synth_root, tmp_path):
    experiment = f"scaleout-restart-{uuid.uuid4().hex[:8]}"
    path = write_suite(tmp_path / "restart.yaml", seeds=(0,), epochs=4,
                       rows={"plain": {}, "weighted": {"class_weight_loss": True}})
    argv = harness_cmd("suite", "run", str(path), "--data_root", str(synth_root), "--experiment", experiment,
                       "--tracking_uri", services.tracking_uri, "--storage", services.storage,
                       "--out", str(tmp_path / "art"))
    # MLflow's own HTTP retries (urllib3, exponential backoff) ride out the restart: 1, 2, 4, 8, 16 ... s.
    env = child_env(MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1", MLFLOW_HTTP_REQUEST_MAX_RETRIES="8")
    out: list[str] = []
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reader = drain_output(proc, out)
    try:
        def one_done_one_running():
            runs = cell_runs(services.tracking_uri, experiment)
            return finished(runs) and any(r.info.status == "RUNNING" for r in runs) and runs
        before = wait_for(one_done_one_running, 180, "a finished cell and one mid-training", [proc])
        finished_before = {r.info.run_id for r in before if r.info.status == "FINISHED"}
        stop = services.sh("stop", "mlflow")
        assert stop.returncode == 0, stop.stderr
        time.sleep(3)  # the worker's requests fail and back off meanwhile
        start = services.sh("start", "mlflow")
        assert start.returncode == 0, start.stdout + start.stderr
        proc.wait(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    text = "".join(out)
    assert proc.returncode == 0, text
    runs = cell_runs(services.tracking_uri, experiment)
    assert finished(runs) == [("plain", 0), ("weighted", 0)]
    assert finished_before <= {r.info.run_id for r in runs if r.info.status == "FINISHED"}  # nothing lost
    assert not [r for r in runs if r.info.status == "RUNNING"]


# --- (d) services down at start: one clear line, exit 2, within 15 s -------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def black_hole():
    """A port that accepts TCP connections and never answers (a hung server, a firewall that drops)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


def _fails_fast(argv: list[str], capsys) -> str:
    """In-process (`harness.cli.main`), timed: exit 2 and one line on stderr, well within 15 s."""
    from harness.cli import main

    capsys.readouterr()
    t0 = time.time()
    rc = main(argv)
    took = time.time() - t0
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert rc == 2, out.out + out.err
    assert len(err) == 1, out.err
    assert took < 15, f"took {took:.1f}s"
    return err[0]


@pytest.mark.parametrize("command", ["suite", "study"])
def test_an_unreachable_tracking_server_is_one_line_exit_2(command, tmp_path, synth_root, black_hole, capsys):
    f = write_suite(tmp_path / "s.yaml", rows={"plain": {}}) if command == "suite" else REPO / "studies" / "focal_specaug_lr.yaml"
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    closed = f"http://127.0.0.1:{_free_port()}"
    line = _fails_fast((command, "run", str(f), "--data_root", str(synth_root), "--tracking_uri", closed,
                                   "--storage", storage), capsys)
    assert f"cannot reach the MLflow tracking server at {closed}" in line and "Connection refused" in line
    hung = f"http://127.0.0.1:{black_hole}"
    line = _fails_fast((command, "run", str(f), "--data_root", str(synth_root), "--tracking_uri", hung,
                                   "--storage", storage), capsys)
    assert f"cannot reach the MLflow tracking server at {hung}" in line and "no answer within" in line
    assert not (tmp_path / "q.db").exists()  # nothing started


def test_postgresql_down_at_start_is_one_line_exit_2_without_the_password(tmp_path, synth_root, black_hole, capsys):
    f = write_suite(tmp_path / "s.yaml", rows={"plain": {}})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for port in (_free_port(), black_hole):
        url = f"postgresql://harness:s3cret-pw@127.0.0.1:{port}/optuna"
        line = _fails_fast(("suite", "run", str(f), "--data_root", str(synth_root), "--tracking_uri", uri,
                                       "--storage", url), capsys)
        assert "cannot reach the coordination storage" in line and "s3cret-pw" not in line
        assert f"postgresql://harness:***@127.0.0.1:{port}/optuna" in line


def test_a_wrong_database_password_is_one_line_exit_2(services, tmp_path, synth_root, capsys):
    f = write_suite(tmp_path / "s.yaml", rows={"plain": {}})
    wrong = services.storage.replace(services.password, "not-the-password")
    line = _fails_fast(("suite", "run", str(f), "--data_root", str(synth_root), "--tracking_uri",
                                   services.tracking_uri, "--storage", wrong), capsys)
    assert "cannot reach the coordination storage" in line and "password authentication failed" in line
    assert "not-the-password" not in line


def test_services_status_names_the_urls_and_keeps_the_password_private(services):
    p = services.sh("status")
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"export MLFLOW_TRACKING_URI={services.tracking_uri}" in p.stdout
    assert "postgresql://harness:***@127.0.0.1:" in p.stdout and services.password not in p.stdout
    assert services.tracking_uri.startswith("http://127.0.0.1:")
    for name in ("password", "services.env"):
        assert (services.dir / name).stat().st_mode & 0o777 == 0o600
    assert services.storage.endswith("/optuna") and services.env["MLFLOW_BACKEND_STORE_URI"].endswith("/mlflow")


# --- the MLflow UI in a real browser -----------------------------------------------------------------

@pytest.fixture(scope="module")
def ui_suite(services, synth_root, tmp_path_factory):
    """A finished 2-row x 3-seed suite on the services (4 epochs: enough to leave one-class guessing)."""
    tmp = tmp_path_factory.mktemp("ui")
    experiment = f"scaleout-ui-{uuid.uuid4().hex[:6]}"
    path = write_suite(tmp / "ui.yaml", rows={"baseline": {}, "class-weights": {"class_weight_loss": True}},
                       seeds=(0, 1, 2), epochs=4)
    p = subprocess.run(harness_cmd("suite", "run", str(path), "--data_root", str(synth_root), "--experiment",
                                   experiment, "--tracking_uri", services.tracking_uri, "--storage", services.storage,
                                   "--out", str(tmp / "art")),
                       cwd=tmp, env=child_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return experiment


# What a new user sees, with nothing set up by hand: the MLflow front page lists the suite's experiment, its
# description starts with the decisions; the experiment page shows the report's main table (rows, mean [CI],
# Δ [CI], decision, what Δ's CI rules out) above the runs, and the row runs with their seeds nested under them.

@pytest.mark.slow
def test_the_suite_shows_in_the_mlflow_ui_in_headless_chromium(chromium, services, ui_suite, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="Python playwright not installed")
    c = tracking.client(services.tracking_uri)
    exp = c.get_experiment_by_name(ui_suite)
    parents = {r.data.tags["harness.row"]: r for r in search_runs(c, exp.experiment_id, "tags.`harness.kind` = 'row'")}
    assert set(parents) == {"baseline", "class-weights"}
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    decision = parents["class-weights"].data.tags["harness.decision"]
    assert decision in ("better", "worse", "equivalent", "undecided")
    with sync_api.sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=chromium.exe, args=chromium.args, headless=True)
        except Exception as e:  # no display libraries, a sandbox refusal, ...
            pytest.skip(f"Chromium at {chromium.exe} cannot be launched here: {' '.join(str(e).split())[:300]}")
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            # MLflow 3 opens its assistant panel on a first visit: keep it closed, the runs table gets the width.
            page.add_init_script("localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
                                 "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');")
            page.goto(f"{services.tracking_uri}/", wait_until="domcontentloaded", timeout=60_000)
            # The front page: the experiment, its description opening with the report's bottom line.
            page.get_by_text(ui_suite, exact=True).first.wait_for(timeout=60_000)
            page.get_by_text("compared with", exact=False).first.wait_for(timeout=30_000)
            # MLflow 3.17 picks an experiment's page from its sidebar switch (GenAI by default), not from the
            # experimentKind tag: the one click a user makes is "Model training"; no column is set up.
            page.get_by_text("Model training", exact=True).first.click()
            page.get_by_text(ui_suite, exact=True).first.click()
            page.wait_for_url("**/runs*", timeout=60_000)
            # Above the runs: the report's main table with the decision and what Δ's CI rules out.
            page.get_by_text("rules out (Δ)", exact=True).first.wait_for(timeout=30_000)
            row = page.locator("tr", has_text="class-weights").filter(has_text="a gain above").first
            row.wait_for(timeout=30_000)
            assert decision in row.inner_text()
            for name in ("baseline", "class-weights"):
                page.locator(f'[row-id="{parents[name].info.run_id}"]').first.wait_for(timeout=60_000)
            # One row opened: its seed runs show nested under it.
            base = parents["baseline"].info.run_id
            page.locator(f'[row-id="{base}"] [col-id="attributes.`Run Name`"] button').first.click()
            for seed in (0, 1, 2):
                page.get_by_text(f"baseline/seed{seed}", exact=True).first.wait_for(timeout=30_000)
            # The picture shows the description opened (its chevron, right of the edit pencil, on its first line).
            top = page.get_by_text("compared with").first.bounding_box()["y"]
            beside = [b for b in page.locator("button").all() if (box := b.bounding_box()) and abs(box["y"] - top) < 25]
            if beside:
                max(beside, key=lambda b: b.bounding_box()["x"]).click()
                page.get_by_text("rules out (Δ)", exact=True).first.wait_for(timeout=30_000)
            page.mouse.move(5, 995)  # no hover tooltip in the picture
            page.wait_for_timeout(1500)
            shot = Path(os.environ.get("HARNESS_UI_SCREENSHOT") or tmp_path / "mlflow-ui-suite.png")
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
