"""Studies in optuna-dashboard (`make dashboard`), seen in headless Chromium.

A small study runs the way a user runs one (`harness study run`, a tiny search on the synthetic
corpus) into a temporary sqlite storage; `optuna-dashboard` serves that storage on a free
127.0.0.1 port with the arguments `make dashboard` uses; Chromium finds the study in the study list
and on the study's own page. The screenshot of the study's page is written to
$HARNESS_DASHBOARD_SCREENSHOT when set (`docs/optuna-dashboard-study.png` is made that way, as
$HARNESS_UI_SCREENSHOT makes `docs/mlflow-ui-suite.png` in test_scaleout.py). Needs Debian's
chromium (`.ci/run` installs it); skips with that reason without it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml


STUDY = {"name": "dashboard-focal-lr",
         "description": "a tiny focal loss + lr search for the dashboard test",
         "base": {"config": {"model": "smallcnn", "n_mels": 32, "epochs": 3, "batch_size": 64, "train_ratio": 0.6,
                             "val_ratio": 0.2, "focal_loss": True, "use_specaug": True}},
         "params": {"focal_gamma": {"type": "float", "low": 0.0, "high": 5.0},
                    "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}},
         "sampler": {"name": "tpe", "seed": 0}, "pruner": "none", "budget": {"n_trials": 3}}


def dashboard_exe() -> str | None:
    beside = Path(sys.executable).with_name("optuna-dashboard")
    return str(beside) if beside.exists() else shutil.which("optuna-dashboard")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


@pytest.fixture
def study_storage(synth_root, tmp_path) -> str:
    """A finished 3-trial study in a fresh sqlite storage, run by `harness study run`."""
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY, sort_keys=False))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    p = subprocess.run([sys.executable, "-m", "harness", "study", "run", str(path), "--data_root", str(synth_root),
                        "--storage", storage, "--tracking_uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return storage


@pytest.fixture
def dashboard(tmp_path):
    """Start optuna-dashboard on a storage (as `make dashboard` does) and return its URL; stopped at the end."""
    procs: list[subprocess.Popen] = []

    def start(storage: str) -> str:
        port = free_port()
        log = open(tmp_path / "dashboard.log", "w")
        proc = subprocess.Popen([dashboard_exe(), storage, "--host", "127.0.0.1", "--port", str(port)],
                                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            if proc.poll() is not None:
                break
            try:
                get_json(f"{url}/api/studies")
                return url
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        raise AssertionError(f"optuna-dashboard did not answer on {url}:\n{(tmp_path / 'dashboard.log').read_text()}")

    yield start
    for proc in procs:  # its own session: the server and any workers it forked
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.slow
def test_a_harness_study_shows_in_optuna_dashboard_in_headless_chromium(chromium, study_storage, dashboard, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="Python playwright not installed")
    if dashboard_exe() is None:
        pytest.skip("optuna-dashboard is not installed (pip install -r requirements.txt)")
    name = STUDY["name"]
    url = dashboard(study_storage)
    (study,) = [s for s in get_json(f"{url}/api/studies")["study_summaries"] if s["study_name"] == name]

    with sync_api.sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=chromium.exe, args=chromium.args, headless=True)
        except Exception as e:  # no display libraries, a sandbox refusal, ...
            pytest.skip(f"Chromium at {chromium.exe} cannot be launched here: {' '.join(str(e).split())[:300]}")
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # The study list (the page `make dashboard` opens on): a React app, so wait for the name.
            page.goto(f"{url}/dashboard", wait_until="domcontentloaded", timeout=60_000)
            page.get_by_text(name).first.wait_for(timeout=60_000)  # "1. dashboard-focal-lr"
            assert name in page.inner_text("body")
            # The study's page: its name, and its trials in the optimization history.
            page.goto(f"{url}/dashboard/studies/{study['study_id']}", wait_until="domcontentloaded", timeout=60_000)
            page.get_by_text(f"{name} (id={study['study_id']})").first.wait_for(timeout=60_000)
            page.get_by_text("Best Trial").first.wait_for(timeout=60_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)  # the optimization history
            body = page.inner_text("body")
            assert "focal_gamma" in body  # the searched parameters are shown
            assert "val_f1_macro" in body and "Objective 0" not in body  # the objective by its name
            page.wait_for_timeout(2500)  # the plots draw after the data arrives
            shot = Path(os.environ.get("HARNESS_DASHBOARD_SCREENSHOT") or tmp_path / "optuna-dashboard-study.png")
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
