"""Suites: validated files, a dry-run plan, resume, failure isolation, kill -9 and shared workers."""
from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness import tracking
from harness.cli import main
from harness.errors import HarnessError
from harness.report import publish
from harness.report import render as render_mod
from harness.report.runs import select_cells
from harness.report.table import build_table
from harness.suite import planning
from harness.suite import runner as suite_mod
from harness.suite.file import load_suite
from harness.suite.runner import run_suite
from harness.train import run as training

REPO = Path(__file__).resolve().parent.parent


def write_suite(path: Path, synth_root: Path, rows: dict | None = None, seeds=(0, 1), **extra) -> Path:
    doc = {"name": path.stem, "seeds": list(seeds),
           "base": {"model": "smallcnn", "n_mels": 32, "epochs": 1, "batch_size": 64, "train_ratio": 0.6,
                    "val_ratio": 0.2},
           "rows": [{"name": n, "config": cfg, "claimed_f1": 0.5} for n, cfg in
                    (rows or {"plain": {}, "weighted": {"class_weight_loss": True}}).items()],
           **extra}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cells(tracking_uri: str, experiment: str) -> list:
    c = tracking.client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    return planning.search_runs(c, exp.experiment_id, "tags.`harness.kind` = 'cell'") if exp else []


def finished(runs) -> list[tuple[str, int]]:
    return sorted((r.data.tags["harness.row"], int(r.data.tags["harness.seed"]))
                  for r in runs if r.info.status == "FINISHED")


# --- the file ---------------------------------------------------------------------

def test_the_seed_table_has_every_row_of_the_seed():
    s = load_suite(REPO / "experiments" / "seed_table.yaml")
    assert [r.name for r in s.rows] == ["baseline-5ep", "cw-15ep", "cw-specaug-15ep", "cw-specaug-ls-30ep",
                                        "cw-specaug-30ep", "focal-specaug-30ep", "cw-specaug-aggressive-30ep",
                                        "smallcnn-25ep", "advanced-full-50ep"]
    assert s.seeds == (0, 1, 2, 3, 4)
    best = s.row("cw-specaug-30ep").config
    assert (best.model, best.epochs, best.class_weight_loss, best.use_specaug, best.specaug_freq, best.specaug_time) == \
        ("resnet18", 30, True, True, 8, 20)
    assert s.row("baseline-5ep").claimed_f1 == "0.732,0.532" and s.row("smallcnn-25ep").claimed_f1 == "0.4-0.5"
    quick = load_suite(REPO / "experiments" / "seed_table.yaml", "quick")
    assert [r.name for r in quick.rows] == [r.name for r in s.rows]  # every row kept
    assert quick.seeds == (0, 1, 2) and quick.row("cw-specaug-30ep").config.epochs == 6


@pytest.mark.parametrize("mutate, needles", [
    (lambda d: d["rows"][1]["config"].update(focal_gama=2), ["row 'weighted'", "'focal_gama'", "did you mean 'focal_gamma'"]),
    (lambda d: d["rows"][0].update(claimed=0.5), ["row 'plain'", "'claimed'", "did you mean 'claimed_f1'"]),
    (lambda d: d.update(seed=[1]), ["unknown key 'seed'", "did you mean 'seeds'"]),
    (lambda d: d["rows"][1].update(name="plain"), ["row 'plain'", "duplicate row name"]),
    (lambda d: d["rows"][1]["config"].update(lr=-1), ["row 'weighted'", "'lr'", "> 0"]),
    (lambda d: d["rows"][1]["config"].update(epochs="ten"), ["row 'weighted'", "'epochs'", "integer"]),
    (lambda d: d["rows"][0]["config"].update(seed=3), ["row 'plain'", "'seed'", "command line"]),
    (lambda d: d["rows"][0].update(claimed_f1="high"), ["row 'plain'", "claimed_f1"]),
    (lambda d: d.update(seeds=[0, 0]), ["seeds", "duplicate"]),
    (lambda d: d.update(profiles={"quick": {"epochs_scale": 0}}), ["profile 'quick'", "epochs_scale"]),
])
def test_bad_suite_files_are_named_before_any_run(tmp_path, synth_root, mutate, needles):
    path = write_suite(tmp_path / "bad.yaml", synth_root)
    doc = yaml.safe_load(path.read_text())
    mutate(doc)
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(HarnessError) as err:
        load_suite(path)
    assert str(path) in str(err.value)
    for n in needles:
        assert n in str(err.value)


def test_cli_reports_a_bad_file_in_one_line_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "broken.yaml"
    bad.write_text("rows: [\n")
    assert main(["suite", "run", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.yaml" in err[0] and "YAML" in err[0]
    assert main(["suite", "run", str(REPO / "experiments" / "seed_table.yaml"), "--profile", "quik"]) == 2
    assert "did you mean 'quick'" in capsys.readouterr().err


# --- running ------------------------------------------------------------------------

def test_dry_run_plans_without_running(tmp_path, synth_root, tracking_uri, experiment, capsys):
    path = write_suite(tmp_path / "plan.yaml", synth_root)
    run_suite(load_suite(path), data_root=str(synth_root), tracking_uri=tracking_uri, experiment=experiment,
              dry_run=True, progress=False)
    out = capsys.readouterr().out
    assert "4 cells: 0 already done, 4 to run (4 training epochs)" in out
    assert "plain" in out and "weighted" in out
    assert cells(tracking_uri, experiment) == []


def test_a_dry_run_creates_nothing_where_no_store_is_yet(tmp_path, synth_root, monkeypatch, capsys):
    # the defaults: ./mlflow.db for MLflow, optuna.db beside it for the work queue
    path = write_suite(tmp_path / "plan.yaml", synth_root)
    work = tmp_path / "fresh"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["suite", "run", str(path), "--data_root", str(synth_root), "--dry-run"]) == 0
    assert "4 cells: 0 already done, 4 to run" in capsys.readouterr().out
    assert list(work.iterdir()) == []  # no mlflow.db, no .init-lock, no mlruns/, no optuna.db
    # nor in a store folder named by the flags
    assert main(["suite", "run", str(path), "--data_root", str(synth_root), "--dry-run", "--tracking_uri",
                 f"sqlite:///{work / 'db' / 'mlflow.db'}", "--storage", f"sqlite:///{work / 'q' / 'q.db'}"]) == 0
    assert list(work.iterdir()) == []


def test_resume_skips_finished_cells_and_a_changed_row_reruns_alone(tmp_path, synth_root, tracking_uri, experiment,
                                                                    capsys):
    path = write_suite(tmp_path / "resume.yaml", synth_root)
    kw = dict(data_root=str(synth_root), tracking_uri=tracking_uri, experiment=experiment,
              storage=f"sqlite:///{tmp_path / 'q.db'}", progress=False, out_dir=str(tmp_path / "art"))
    first = run_suite(load_suite(path), **kw)
    assert (first.done, first.skipped, first.failed) == (4, 0, 0)
    assert finished(cells(tracking_uri, experiment)) == [("plain", 0), ("plain", 1), ("weighted", 0), ("weighted", 1)]

    again = run_suite(load_suite(path), **kw)
    assert (again.done, again.skipped) == (0, 4)
    run_suite(load_suite(path), dry_run=True, **{k: v for k, v in kw.items() if k != "out_dir"})
    assert "4 already done, 0 to run" in capsys.readouterr().out

    write_suite(path, synth_root, rows={"plain": {}, "weighted": {"class_weight_loss": True, "lr": 0.003}})
    changed = run_suite(load_suite(path), **kw)
    assert (changed.done, changed.skipped) == (2, 2)
    runs = cells(tracking_uri, experiment)
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs)
    # Every child sits under its row's parent, and parents carry the row's summary.
    c = tracking.client(tracking_uri)
    for r in runs:
        parent = c.get_run(r.data.tags["mlflow.parentRunId"])
        assert parent.data.tags["harness.kind"] == "row" and parent.data.tags["harness.row"] == r.data.tags["harness.row"]
        assert parent.data.tags["harness.config_hash"] == r.data.tags["harness.config_hash"]
        assert parent.data.metrics["n_seeds"] == 2


def test_a_cell_logs_its_test_confusion_as_numbers_and_draws_no_figure(tmp_path, synth_root, tracking_uri,
                                                                        experiment):
    path = write_suite(tmp_path / "numbers.yaml", synth_root, rows={"plain": {}}, seeds=(0,))
    assert run_suite(load_suite(path), data_root=str(synth_root), tracking_uri=tracking_uri, experiment=experiment,
                     out_dir=str(tmp_path / "art"), progress=False).done == 1
    (run,) = cells(tracking_uri, experiment)
    # the report draws the confusion per row from the tag; the names others script against stay
    assert {a.path for a in tracking.client(tracking_uri).list_artifacts(run.info.run_id)} == {
        "best_model.pt", training.PREDICTIONS}
    confusion = ast.literal_eval(run.data.tags["harness.test_confusion"])
    assert sum(map(sum, confusion)) == run.data.metrics["n_test_clips"]
    assert not list((tmp_path / "art").rglob("*.png"))


def test_a_suites_corpus_scans_do_not_grow_with_its_cells(tmp_path, synth_root, tracking_uri, monkeypatch):
    scans = []
    from harness.train import data

    real = data.scan_data
    monkeypatch.setattr(data, "scan_data", lambda *a, **k: scans.append(1) or real(*a, **k))
    counts = []
    for seeds in ((0,), (0, 1, 2)):  # two seeds: two splits of one scan, one set of features
        scans.clear()
        path = write_suite(tmp_path / f"scan{len(seeds)}.yaml", synth_root, rows={"plain": {}}, seeds=seeds)
        assert run_suite(load_suite(path), data_root=str(synth_root), tracking_uri=tracking_uri,
                         experiment=f"scans-{len(seeds)}", out_dir=str(tmp_path / "art"), progress=False,
                         storage=f"sqlite:///{tmp_path / f'q{len(seeds)}.db'}").done == len(seeds)
        counts.append(len(scans))
    assert counts[0] >= 1 and counts[0] == counts[1]  # the scans were counted, and as many for 3 seeds as for 1


def test_a_failing_cell_is_isolated_and_reported(tmp_path, synth_root, tracking_uri, experiment, monkeypatch, capsys):
    path = write_suite(tmp_path / "fail.yaml", synth_root)
    real_fit = training.fit

    def flaky(cfg, *a, **k):
        if cfg.class_weight_loss and cfg.seed == 1:
            raise RuntimeError("simulated crash")
        return real_fit(cfg, *a, **k)
    monkeypatch.setattr(training, "fit", flaky)
    summary = run_suite(load_suite(path), data_root=str(synth_root), tracking_uri=tracking_uri,
                        experiment=experiment, storage=f"sqlite:///{tmp_path / 'q.db'}", progress=False,
                        out_dir=str(tmp_path / "art"))
    assert (summary.done, summary.failed) == (3, 1)
    assert "simulated crash" in capsys.readouterr().out
    (bad,) = [r for r in cells(tracking_uri, experiment) if r.info.status == "FAILED"]
    assert bad.data.tags["harness.row"] == "weighted" and "simulated crash" in bad.data.tags["harness.failure_reason"]
    monkeypatch.setattr(training, "fit", real_fit)
    rerun = run_suite(load_suite(path), data_root=str(synth_root), tracking_uri=tracking_uri,
                      experiment=experiment, storage=f"sqlite:///{tmp_path / 'q.db'}", progress=False,
                      out_dir=str(tmp_path / "art"))
    assert (rerun.done, rerun.skipped, rerun.failed) == (1, 3, 0)


def test_adaptive_seeds_add_seeds_until_the_ci_is_narrow_enough(tmp_path, synth_root, tracking_uri, experiment,
                                                                 monkeypatch):
    # A stand-in CI whose half-width shrinks like 0.2/sqrt(n): the target 0.11 is met at n = 4.
    monkeypatch.setattr(suite_mod, "row_ci", lambda v: (0.5, 0.2 / len(v) ** 0.5))
    path = write_suite(tmp_path / "adaptive.yaml", synth_root, rows={"plain": {}})
    kw = dict(data_root=str(synth_root), tracking_uri=tracking_uri, experiment=experiment,
              storage=f"sqlite:///{tmp_path / 'q.db'}", progress=False, out_dir=str(tmp_path / "art"))
    run_suite(load_suite(path), target_ci=0.11, max_seeds=6, **kw)
    assert finished(cells(tracking_uri, experiment)) == [("plain", s) for s in range(4)]
    run_suite(load_suite(path), target_ci=0.01, max_seeds=5, **kw)  # the cap wins over the target
    assert finished(cells(tracking_uri, experiment)) == [("plain", s) for s in range(5)]


# --- processes ------------------------------------------------------------------------

def cli(*argv: str) -> tuple[list[str], dict]:
    return [sys.executable, "-m", "harness", *argv], {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_kill_9_mid_suite_then_rerun_finishes_every_cell_exactly_once(tmp_path, synth_root):
    # 6 epochs: a cell trains for seconds, so the 0.3 s poll lands the kill inside one, not between two.
    path = write_suite(tmp_path / "kill.yaml", synth_root, seeds=(0, 1),
                       rows={"plain": {"epochs": 6}, "weighted": {"class_weight_loss": True, "epochs": 6}})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv, env = cli("suite", "run", str(path), "--data_root", str(synth_root), "--tracking_uri", uri,
                    "--out", str(tmp_path / "art"))
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:  # kill once a cell is finished and another mid-training
        runs = cells(uri, "kill") if (tmp_path / "mlflow.db").exists() else []
        if finished(runs) and any(r.info.status == "RUNNING" for r in runs):
            break
        time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = cells(uri, "kill")
    assert any(r.info.status == "RUNNING" for r in before), "the kill did not land mid-cell"

    rerun = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    runs = cells(uri, "kill")
    assert finished(runs) == [(row, s) for row in ("plain", "weighted") for s in (0, 1)]  # each exactly once
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert killed and all("worker died" in r.data.tags["harness.failure_reason"] for r in killed)
    assert not any(r.info.status == "RUNNING" for r in runs)


@pytest.mark.slow
def test_workers_share_one_sqlite_store_without_losing_or_duplicating_cells(tmp_path, synth_root):
    # 4 cells for 3 workers: every worker contends for the queue and the store, and one finds the last cell taken.
    path = write_suite(tmp_path / "shared.yaml", synth_root, seeds=(0, 1),
                       rows={"a": {}, "b": {"class_weight_loss": True}})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Two `suite run` processes (as on two machines), one of them with 2 worker processes.
    argv1, env = cli("suite", "run", str(path), "--data_root", str(synth_root), "--tracking_uri", uri,
                     "--workers", "2", "--out", str(tmp_path / "art"))
    argv2, _ = cli("suite", "run", str(path), "--data_root", str(synth_root), "--tracking_uri", uri,
                   "--out", str(tmp_path / "art"))
    procs = [subprocess.Popen(a, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for a in (argv1, argv2)]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "database is locked" not in "".join(outs)
    runs = cells(uri, "shared")
    assert finished(runs) == [(row, s) for row in "ab" for s in (0, 1)]
    assert len(runs) == 4  # nothing ran twice


@pytest.mark.slow
def test_a_queue_locked_longer_than_the_grace_period_trains_no_cell_twice(tmp_path, synth_root):
    """Two `suite run` processes as on two machines (HARNESS_HOST), one cell: while one trains it, a third
    process holds the queue's sqlite write lock past the grace period. The owner's heartbeat cannot land;
    before the fix the idle worker failed the trial as stale, trained its retry, and the cell finished twice."""
    import sqlite3

    path = write_suite(tmp_path / "locked.yaml", synth_root, seeds=(0,), rows={"only": {"epochs": 12}})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv, env = cli("suite", "run", str(path), "--data_root", str(synth_root), "--tracking_uri", uri,
                    "--out", str(tmp_path / "art"))
    env.update(HARNESS_HEARTBEAT_S="1", HARNESS_GRACE_S="2")
    procs = [subprocess.Popen(argv, cwd=tmp_path, env={**env, "HARNESS_HOST": f"machine-{m}"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for m in "ab"]
    deadline = time.time() + 400
    while True:  # hold the lock once the cell is an epoch in
        runs = cells(uri, "locked") if (tmp_path / "mlflow.db").exists() else []
        if runs and runs[0].info.status == "RUNNING" and \
                tracking.client(uri).get_metric_history(runs[0].info.run_id, "val_f1_macro"):
            break
        assert all(p.poll() is None for p in procs), [p.communicate()[0] for p in procs]
        assert time.time() < deadline, "the cell did not start training within 400 s"
        time.sleep(0.3)
    locker = sqlite3.connect(tmp_path / "optuna.db", isolation_level=None, timeout=60)
    locker.execute("BEGIN IMMEDIATE")
    time.sleep(6.0)  # > grace (2 s) + the reaper's watch (HEARTBEAT_S + 1 s)
    still_training = cells(uri, "locked")[0].info.status == "RUNNING"
    locker.execute("COMMIT")
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for m, out in zip("ab", outs):  # whole, in the failure's captured stdout (an assertion message is cut)
        print(f"--- machine-{m} ---\n{out}")
    assert still_training, "the lock did not land while the cell trained"
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = cells(uri, "locked")
    assert [r.info.status for r in runs] == ["FINISHED"], outs  # trained once: no retry, no duplicate


_PUBLISHER = """
import sys, time
from pathlib import Path
from mlflow import MlflowClient
from harness import tracking
uri, exp, sync = sys.argv[1], sys.argv[2], Path(sys.argv[3])
c = MlflowClient(uri)
c.get_experiment(exp)  # the store is open
(sync / f"ready-{sys.argv[4]}").touch()
while not (sync / "go").exists():
    time.sleep(0.01)
t0 = float((sync / "go").read_text())
for k in range(30):  # the same new tag from both processes in the same millisecond, 30 times
    time.sleep(max(0.0, t0 + 0.1 * k - time.time()))
    tracking.set_experiment_tags(c, exp, {f"harness.k{k}": f"from {sys.argv[4]}"})
"""


def test_two_suite_processes_finishing_together_both_publish_the_experiment_description(tmp_path):
    """Both `suite run` processes of a two-machine suite publish the report when the queue runs dry, often
    in the same instant. MLflow's SQL store sets a new experiment tag by look-up then insert, so the slower
    insert failed on the unique key and that process exited 1 after the suite had finished (seen in CI on
    the locked-queue test below). The lost write is retried; each of the 30 tags lands."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = MlflowClient(uri).create_experiment("race")
    procs = [subprocess.Popen([sys.executable, "-c", _PUBLISHER, uri, exp, str(tmp_path), name],
                              stderr=subprocess.PIPE, text=True) for name in "ab"]
    deadline = time.time() + 120
    while not all((tmp_path / f"ready-{n}").exists() for n in "ab"):
        assert all(p.poll() is None for p in procs), [p.communicate()[1] for p in procs]
        assert time.time() < deadline, "the publishers did not start within 120 s"
        time.sleep(0.05)
    (tmp_path / "go").write_text(str(time.time() + 0.5))
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    tags = MlflowClient(uri).get_experiment(exp).tags
    assert all(tags.get(f"harness.k{k}") in ("from a", "from b") for k in range(30))


def test_cli_selects_rows_and_seeds(tmp_path, synth_root, tracking_uri, experiment, capsys):
    path = write_suite(tmp_path / "select.yaml", synth_root)
    common = ["--data_root", str(synth_root), "--tracking_uri", tracking_uri, "--experiment", experiment, "--dry-run"]
    assert main(["suite", "run", str(path), "--rows", "weighted", "--seeds", "3,5", *common]) == 0
    out = capsys.readouterr().out
    assert "2 cells: 0 already done, 2 to run" in out and "3,5" in out and "plain " not in out
    assert main(["suite", "run", str(path), "--n-seeds", "3", *common]) == 0
    assert "6 cells" in capsys.readouterr().out
    assert main(["suite", "run", str(path), "--rows", "weigthed", *common]) == 2
    assert "did you mean 'weighted'" in capsys.readouterr().err
    assert main(["suite", "run", str(path), "--seeds", "0,x", *common]) == 2
    assert "invalid --seeds" in capsys.readouterr().err


def test_parent_runs_carry_a_note_with_mean_ci_n_and_the_paired_delta(tmp_path, synth_root, tracking_uri, experiment):
    path = write_suite(tmp_path / "note.yaml", synth_root, rows={"plain": {}, "baseline-cw": {"class_weight_loss": True},
                                                                 "ls": {"label_smoothing": 0.1}})
    run_suite(load_suite(path), data_root=str(synth_root), tracking_uri=tracking_uri, experiment=experiment,
              storage=f"sqlite:///{tmp_path / 'q.db'}", progress=False, out_dir=str(tmp_path / "art"))
    c = tracking.client(tracking_uri)
    runs = cells(tracking_uri, experiment)
    f1 = {(r.data.tags["harness.row"], int(r.data.tags["harness.seed"])): r.data.metrics["test_f1_macro"] for r in runs}
    exp = c.get_experiment_by_name(experiment)
    row_runs = {r.data.tags["harness.row"]: r for r in planning.search_runs(
        c, exp.experiment_id, "tags.`harness.kind` = 'row'")}
    notes = {row: p.data.tags[publish.NOTE_TAG] for row, p in row_runs.items()}
    for row, note in notes.items():
        m = row_runs[row].data.metrics
        lines = note.splitlines()
        assert 2 <= len(lines) <= 4, note
        # the first line (the runs table's Description column shows 50 characters): mean [95% CI], Δ [95% CI]
        assert lines[0].startswith(f"{m['test_f1_macro_mean']:.3f} "
                                   f"[{m['test_f1_macro_ci95_low']:.3f}, {m['test_f1_macro_ci95_high']:.3f}]")
        assert len(lines[0].rstrip()) <= 50 and "test macro-F1: mean over 2 seeds" in lines[1]
    # The baseline is the first row named baseline*, not the first row; Δ pairs seed with seed.
    assert notes["baseline-cw"].splitlines()[0].rstrip().endswith(", baseline")
    assert row_runs["baseline-cw"].data.tags[publish.DECISION_TAG] == "baseline"
    for row in ("plain", "ls"):
        delta = sum(f1[(row, s)] - f1[("baseline-cw", s)] for s in (0, 1)) / 2
        assert f", Δ {delta:+.3f} [" in notes[row].splitlines()[0]
        assert "Δ = this row − `baseline-cw`, paired over 2 resamples" in notes[row]
        # the decision, as a tag the UI filters on and in words with what the data rules out
        decision = row_runs[row].data.tags[publish.DECISION_TAG]
        assert decision in ("better", "worse", "equivalent", "undecided")
        assert notes[row].splitlines()[2].startswith(f"**{decision}**: ") and "rules out" in notes[row]
    # The experiment opens on its training runs in MLflow 3 and describes itself with the report's main table.
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    description = exp.tags[publish.NOTE_TAG]
    assert "| `plain` |" in description and "rules out (Δ)" in description and "baseline-cw" in description
    # it opens with the report's bottom line, word for word
    md = render_mod.render_markdown(render_mod.suite_report(c, exp))
    assert description.splitlines()[0] == md.splitlines()[2]
    assert md.splitlines()[2].startswith("Of 2 rows compared with `baseline-cw` on `test_f1_macro`: ")


def test_the_note_pairs_resamples_on_seed_and_fold_and_names_what_the_profile_changed():
    rows = pd.DataFrame({"run_id": ["p1", "p2"], "row": ["base", "r"], "row_index": [0, 1], "config_hash": ["h", "g"],
                         "claimed": ["", ""], "study": ["", ""], "profile": ["", ""], "start_time": [1, 1]})
    cells = pd.DataFrame({"run_id": list("abcdef"), "status": ["FINISHED"] * 6, "start_time": range(6),
                          "seed": pd.array([0, 0, 1, 0, 0, 1], dtype="Int64"),
                          "fold": pd.array([0, 1, 0, 0, 1, 1], dtype="Int64"),
                          "row": ["r"] * 3 + ["base"] * 3, "config_hash": ["g"] * 3 + ["h"] * 3,
                          "parent_id": ["p2"] * 3 + ["p1"] * 3, "ratio": [1 / 3] * 6, "cv_folds": [2] * 6,
                          "data": ["synthetic"] * 6, "metrics.test_f1_macro": [0.6, 0.7, 0.5, 0.5, 0.5, 0.9]})
    sel = select_cells(rows, cells)  # (1, 0) of r and (1, 1) of base do not pair
    t = build_table(sel, "test_f1_macro", "base", "corrected")
    note = publish.row_note(t.loc["r"], "base", "corrected", "epochs 30 → 6", "quick")
    assert t.loc["r", "n_pairs"] == 2 and t.loc["r", "delta"] == pytest.approx(0.15)
    assert "mean over 3 resamples (2 × 2-fold CV)" in note and ", Δ +0.150 [" in note and "paired over 2" in note
    assert "Profile `quick` changes the training (epochs 30 → 6)" in note and len(note.splitlines()) == 4
    one = build_table(select_cells(rows, cells[cells["run_id"].isin(["a", "f"])]), "test_f1_macro", "base")
    assert ", Δ n/a" in publish.row_note(one.loc["r"], "base", "corrected")


def test_the_cpu_profile_keeps_every_rows_training_and_the_share_each_mask_covers():
    full = load_suite(REPO / "experiments" / "seed_table.yaml")
    cpu = load_suite(REPO / "experiments" / "seed_table.yaml", "cpu")
    assert [r.name for r in cpu.rows] == [r.name for r in full.rows] and cpu.seeds == full.seeds
    for f, c in zip(full.rows, cpu.rows):
        same = ("model", "epochs", "batch_size", "lr", "class_weight_loss", "focal_loss", "focal_gamma",
                "label_smoothing", "use_specaug", "mixup_alpha", "dropout", "use_bn", "balanced_sampler", "sr")
        assert {k: getattr(c.config, k) for k in same} == {k: getattr(f.config, k) for k in same}, f.name
        assert c.config.n_mels / c.config.hop_length < f.config.n_mels / f.config.hop_length  # mels x frames: smaller
        assert c.config.n_fft == 2 * c.config.hop_length  # frames overlap by half, as in the seed
        if f.config.use_specaug:  # each mask covers the same share of the (smaller) spectrogram
            assert c.config.specaug_freq / c.config.n_mels == f.config.specaug_freq / f.config.n_mels
            assert c.config.specaug_time * c.config.hop_length == f.config.specaug_time * f.config.hop_length
        assert "epochs" not in c.profile_changes
    assert (cpu.row("cw-specaug-aggressive-30ep").config.specaug_freq,
            cpu.row("cw-specaug-aggressive-30ep").config.specaug_time) == (6, 15)


def test_scale_masks_keeps_a_width_the_profile_sets_and_must_be_a_boolean(tmp_path, synth_root):
    rows = {"aug": {"use_specaug": True, "specaug_freq": 8, "specaug_time": 20}, "plain": {}}
    profiles = {"small": {"override": {"n_mels": 16, "specaug_time": 7}, "scale_masks": True}}
    path = write_suite(tmp_path / "masks.yaml", synth_root, rows=rows, profiles=profiles)
    small = load_suite(path, "small")
    aug = small.row("aug").config
    assert (aug.specaug_freq, aug.specaug_time) == (4, 7)  # 8 of 32 mels -> 4 of 16; the profile's own 7 kept
    assert small.row("plain").config.specaug_freq == 8  # no SpecAugment: nothing to scale
    path = write_suite(tmp_path / "masks.yaml", synth_root, rows=rows,
                       profiles={"small": {"override": {"n_mels": 16}, "scale_masks": "yes"}})
    with pytest.raises(HarnessError, match="profile 'small': key 'scale_masks': expected true or false"):
        load_suite(path)


def test_a_worker_looks_up_its_cell_by_tags_and_reads_the_experiment_once_per_suite(tmp_path, synth_root, tracking_uri,
                                                                                  experiment, monkeypatch, capsys):
    path = write_suite(tmp_path / "lookup.yaml", synth_root, rows={"plain": {}})
    assert run_suite(load_suite(path), data_root=str(synth_root), tracking_uri=tracking_uri, experiment=experiment,
                     out_dir=str(tmp_path / "art"), progress=False).done == 2
    reads = []
    real = render_mod.read_suite
    # The plan sees nothing done (as when another machine finished the cells after this one planned):
    # each worker's own look-up of its cell must find the finished run and skip it.
    monkeypatch.setattr(suite_mod, "finished_cells", lambda *a: reads.append(a) or {})
    monkeypatch.setattr(render_mod, "read_suite", lambda *a: reads.append(a) or real(*a))  # the parents' summary
    summary = run_suite(load_suite(path), seeds=(0, 1, 2), data_root=str(synth_root), tracking_uri=tracking_uri,
                        experiment=experiment, out_dir=str(tmp_path / "art"), progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (1, 2, 0)
    assert finished(cells(tracking_uri, experiment)) == [("plain", 0), ("plain", 1), ("plain", 2)]
    assert len(reads) == 2  # once to plan, once to summarise the parents: not once per cell
    monkeypatch.undo()
    runs = cells(tracking_uri, experiment)
    assert all(0 < r.data.metrics["cpu_time_s"] for r in runs)  # the run's CPU-seconds beside its wall time
    capsys.readouterr()
    assert main(["suite", "run", str(path), "--n-seeds", "5", "--data_root", str(synth_root), "--tracking_uri",
                 tracking_uri, "--experiment", experiment, "--dry-run"]) == 0
    share = sum(r.data.metrics["cpu_time_s"] for r in runs) / sum(r.data.metrics["wall_time_s"] for r in runs)
    assert f"(the timed cells got {share:.2f} CPU-seconds per second)" in capsys.readouterr().out


def test_a_row_reading_other_data_than_the_first_is_resumed_not_trained_twice(tmp_path, synth_root, tracking_uri,
                                                                             experiment):
    # a label filter makes the row's data (and its fingerprint) other than the first row's
    path = write_suite(tmp_path / "filtered.yaml", synth_root, seeds=(0,),
                       rows={"plain": {}, "three": {"labels": "neutral,happy,sad"}})
    kw = dict(data_root=str(synth_root), tracking_uri=tracking_uri, experiment=experiment,
              storage=f"sqlite:///{tmp_path / 'q.db'}", progress=False, out_dir=str(tmp_path / "art"))
    first = run_suite(load_suite(path), **kw)
    assert (first.done, first.skipped, first.failed) == (2, 0, 0)
    runs = cells(tracking_uri, experiment)
    assert len({r.data.tags["harness.data_fingerprint"] for r in runs}) == 2
    again = run_suite(load_suite(path), **kw)
    assert (again.done, again.skipped) == (0, 2)
    assert len(cells(tracking_uri, experiment)) == 2
