"""Optuna studies: the file is checked whole, sampled values are what trains, the test split
is never scored, pruning/failures/resume/workers behave, and MLflow holds the study's layout."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from harness import tracking
from harness.cli import main
from harness.errors import DataError, HarnessError
from harness.study import search as st
from harness.suite import queue
from harness.suite.file import load_suite
from harness.train import run as training

REPO = Path(__file__).resolve().parent.parent
TINY = {"model": "smallcnn", "n_mels": 32, "epochs": 2, "batch_size": 32, "train_ratio": 0.6, "val_ratio": 0.2,
        "focal_loss": True, "use_specaug": True}
SPACE = {"focal_gamma": {"type": "float", "low": 0.0, "high": 5.0},
         "specaug_freq": {"type": "int", "low": 0, "high": 16},
         "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}}


def study_doc(**top) -> dict:
    doc = {"name": "tiny", "base": {"config": dict(TINY)}, "params": SPACE, "sampler": {"name": "tpe", "seed": 0},
           "pruner": "none", "budget": {"n_trials": 2}}
    doc.update(top)
    return doc


def write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def spec_of(tmp_path: Path, synth_root: Path, **top) -> st.StudySpec:
    return st.load_spec(write(tmp_path / "study.yaml", study_doc(**top)), data_root=str(synth_root))


def storage_of(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def trials_of(spec: st.StudySpec, storage: str) -> list:
    return optuna.load_study(study_name=spec.name, storage=storage).trials


def runs(tracking_uri: str, experiment: str, kind: str) -> list:
    c = tracking.client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    return c.search_runs([exp.experiment_id], filter_string=f"tags.`harness.kind` = '{kind}'",
                         order_by=["attributes.start_time"])


# --- one study, two invocations on one storage (shared by the tests below) ----------------

@pytest.fixture(scope="module")
def resumed(tmp_path_factory, synth_root, tracking_uri):
    """Two `study run`s of 2 trials each; records every config fit() trained and any test scoring."""
    tmp = tmp_path_factory.mktemp("resumed")
    spec = spec_of(tmp, synth_root)
    storage = storage_of(tmp)
    trained, scored = [], []
    real_fit = training.fit
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "fit", lambda cfg, *a, **k: trained.append(cfg) or real_fit(cfg, *a, **k))
        mp.setattr(training, "score_test", lambda *a, **k: scored.append(1))
        outcomes = [st.run_study(spec, storage=storage, tracking_uri=tracking_uri, experiment="test-study-resumed")
                    for _ in range(2)]
    return spec, storage, outcomes, trained, scored


def test_resume_adds_trials_to_the_same_study(resumed, tracking_uri):
    spec, storage, outcomes, _, _ = resumed
    assert [t.number for t in trials_of(spec, storage)] == [0, 1, 2, 3]
    assert [o.trials for o in outcomes] == [(0, 1), (2, 3)]
    parents = runs(tracking_uri, "test-study-resumed", "study")
    assert [p.info.run_id for p in parents] == [o.parent_run_id for o in outcomes]
    assert all(p.data.metrics["trials_complete"] == n for p, n in zip(parents, (2, 4)))
    # A changed file under the same name is refused rather than mixed into the study.
    with pytest.raises(HarnessError, match="different search space"):
        st.run_study(dataclasses.replace(spec, params=spec.params[:2]), storage=storage, tracking_uri=tracking_uri,
                     experiment="test-study-resumed")


def test_sampled_values_are_what_trains(resumed):
    spec, storage, _, trained, _ = resumed
    trials = trials_of(spec, storage)
    assert len(trained) == len(trials) == 4
    for cfg, t in zip(trained, trials):
        assert set(t.params) == set(SPACE)
        assert {k: getattr(cfg, k) for k in t.params} == t.params
        assert cfg == spec.base.replace(**t.params)  # and nothing else changed
    assert len({cfg.lr for cfg in trained}) == 4


def test_the_objective_never_scores_the_test_split(resumed, tracking_uri):
    _, _, _, _, scored = resumed
    assert scored == []
    for r in runs(tracking_uri, "test-study-resumed", "trial"):
        assert not any(k.startswith("test_") for k in r.data.metrics)


def test_mlflow_layout(resumed, tracking_uri):
    spec, storage, outcomes, trained, _ = resumed
    parents = runs(tracking_uri, "test-study-resumed", "study")
    trials = runs(tracking_uri, "test-study-resumed", "trial")
    for p in parents:
        t = p.data.tags
        assert p.info.status == "FINISHED" and p.info.run_name == spec.name
        assert (t["harness.study"], t["harness.profile"], t["harness.storage"]) == (spec.name, "full", storage)
    assert len(trials) == 4
    for i, r in enumerate(trials):
        t = r.data.tags
        assert r.info.status == "FINISHED" and r.info.run_name == f"trial-{i}"
        assert t["mlflow.parentRunId"] == parents[i // 2].info.run_id
        assert (t["harness.study"], t["harness.trial_number"], t["harness.trial_state"]) == (spec.name, str(i),
                                                                                              "COMPLETE")
        assert r.data.params == trained[i].to_params()
        assert [m.step for m in tracking.client(tracking_uri).get_metric_history(r.info.run_id, "val_f1_macro")] \
            == [1, 2]
    best = optuna.load_study(study_name=spec.name, storage=storage).best_trial
    last = parents[-1]
    assert last.data.params == {f"best.{k}": str(v) for k, v in best.params.items()}
    assert last.data.metrics["best_value"] == best.value == outcomes[-1].best_value
    assert last.data.tags["harness.best_run_id"] == trials[best.number].info.run_id
    assert {f"importance.{k}" for k in SPACE} <= set(last.data.metrics)
    plots = {a.path for a in tracking.client(tracking_uri).list_artifacts(last.info.run_id, "plots")}
    assert plots == {"plots/optimization_history.png", "plots/param_importances.png",
                     "plots/intermediate_values.png"}


# --- pruning, failures, workers, crashed workers ----------------------------------------------

def test_trials_below_the_median_are_pruned(tmp_path, synth_root, tracking_uri, experiment, monkeypatch):
    """The first two trials report 0.9 per epoch, later ones 0.1: those stop at the first epoch allowed."""
    real_fit, calls = training.fit, []

    def rigged(cfg, data, out_dir=None, on_epoch=None, device=None):
        calls.append(1)
        value = 0.9 if len(calls) <= 2 else 0.1
        return real_fit(cfg, data, out_dir, lambda e, row: on_epoch(e, {**row, "val_f1_macro": value}), device)
    monkeypatch.setattr(training, "fit", rigged)
    spec = spec_of(tmp_path, synth_root, base={"config": {**TINY, "epochs": 3}},
                   pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 2})
    out = st.run_study(spec, n_trials=4, storage=storage_of(tmp_path), tracking_uri=tracking_uri,
                       experiment=experiment)
    trials = trials_of(spec, storage_of(tmp_path))
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED] * 2
    assert [len(t.intermediate_values) for t in trials] == [3, 3, 2, 2]
    assert out.states == {"COMPLETE": 2, "PRUNED": 2, "FAIL": 0}
    c = tracking.client(tracking_uri)
    for r in runs(tracking_uri, experiment, "trial")[2:]:
        assert r.info.status == "KILLED" and r.data.tags["harness.trial_state"] == "PRUNED"
        assert "pruned at epoch 2" in r.data.tags["harness.failure_reason"]
        assert [m.step for m in c.get_metric_history(r.info.run_id, "val_f1_macro")] == [1, 2]


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path, synth_root, tracking_uri, experiment,
                                                           monkeypatch):
    real_fit, calls = training.fit, []

    def second_fails(cfg, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom in trial 1")
        return real_fit(cfg, *a, **k)
    monkeypatch.setattr(training, "fit", second_fails)
    spec = spec_of(tmp_path, synth_root)
    out = st.run_study(spec, n_trials=3, storage=storage_of(tmp_path), tracking_uri=tracking_uri,
                       experiment=experiment)
    trials = trials_of(spec, storage_of(tmp_path))
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert "boom in trial 1" in trials[1].user_attrs["failure"]
    assert out.best_trial in (0, 2)
    failed = runs(tracking_uri, experiment, "trial")[1]
    assert failed.info.status == "FAILED" and failed.data.tags["harness.trial_state"] == "FAIL"
    assert "RuntimeError: boom in trial 1" in failed.data.tags["harness.failure_reason"]


def test_bad_input_inside_a_trial_stops_the_study(tmp_path, synth_root, tracking_uri, experiment, monkeypatch):
    def gone(*a, **k):
        raise DataError("corpus vanished")
    monkeypatch.setattr(training, "fit", gone)
    spec = spec_of(tmp_path, synth_root)
    with pytest.raises(DataError, match="vanished"):
        st.run_study(spec, n_trials=3, storage=storage_of(tmp_path), tracking_uri=tracking_uri,
                     experiment=experiment)
    assert [t.state for t in trials_of(spec, storage_of(tmp_path))] == [TrialState.FAIL]
    assert runs(tracking_uri, experiment, "study")[0].info.status == "FAILED"


@pytest.mark.slow
def test_worker_processes_share_the_study_and_the_parent_run(tmp_path, synth_root, tracking_uri, experiment):
    spec = spec_of(tmp_path, synth_root)
    out = st.run_study(spec, n_trials=2, workers=2, storage=storage_of(tmp_path), tracking_uri=tracking_uri,
                       experiment=experiment)
    assert out.trials == (0, 1) and out.states["COMPLETE"] == 2
    trial_runs = runs(tracking_uri, experiment, "trial")
    assert {r.data.tags["mlflow.parentRunId"] for r in trial_runs} == {out.parent_run_id}
    assert sorted(r.data.tags["harness.trial_number"] for r in trial_runs) == ["0", "1"]
    # Different sampler seeds per worker: the two start points differ.
    assert len({tuple(t.params.items()) for t in trials_of(spec, storage_of(tmp_path))}) == 2


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning",
                            "ignore::optuna.exceptions.ExperimentalWarning")
def test_a_dead_workers_trial_is_retried_with_its_params(tmp_path, synth_root, tracking_uri, experiment,
                                                         monkeypatch):
    monkeypatch.setattr(queue, "HEARTBEAT_S", 1)
    monkeypatch.setattr(queue, "GRACE_S", 1)
    spec = spec_of(tmp_path, synth_root)
    storage = st.open_storage(storage_of(tmp_path))
    study = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize")
    dead = study.ask({p.name: optuna.distributions.FloatDistribution(p.low, p.high, log=p.log) if p.type == "float"
                      else optuna.distributions.IntDistribution(p.low, p.high) for p in spec.params})
    storage.record_heartbeat(dead._trial_id)  # then its worker "dies": no more beats
    c = tracking.client(tracking_uri)
    orphan = c.create_run(tracking.get_or_create_experiment(c, experiment), run_name="trial-0",
                          tags={"harness.kind": "trial", "harness.study": spec.name, "harness.trial_number": "0"})
    time.sleep(2.5)
    st.run_study(spec, n_trials=1, storage=storage_of(tmp_path), tracking_uri=tracking_uri, experiment=experiment)
    first, retry = trials_of(spec, storage_of(tmp_path))
    assert first.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.params == first.params
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
    orphan = c.get_run(orphan.info.run_id)
    assert orphan.info.status == "KILLED" and orphan.data.tags["harness.trial_state"] == "FAIL"


# --- study confirm ---------------------------------------------------------------------

def test_confirm_runs_the_best_config_as_a_suite_row(tmp_path, synth_root, tracking_uri, capsys):
    suite_file = write(tmp_path / "suite.yaml", {
        "name": "test-confirm-suite", "seeds": [0, 1, 2], "base": dict(TINY),
        "rows": [{"name": "baseline", "config": {"epochs": 2}}]})
    path = write(tmp_path / "study.yaml", study_doc(base={"suite": str(suite_file), "row": "baseline"}))
    spec = st.load_spec(path)
    assert spec.base == load_suite(suite_file).row("baseline").config
    storage = storage_of(tmp_path)
    flags = ["--storage", storage, "--tracking_uri", tracking_uri, "--data_root", str(synth_root)]
    assert main(["study", "confirm", str(path), "--n-seeds", "2", *flags]) == 2
    assert "no study 'tiny'" in capsys.readouterr().err
    assert main(["study", "run", str(path), "--experiment", "test-confirm-study", *flags]) == 0
    assert main(["study", "confirm", str(path), "--n-seeds", "2", *flags]) == 0
    best = optuna.load_study(study_name="tiny", storage=storage).best_trial
    (row,) = runs(tracking_uri, "test-confirm-suite", "row")
    assert row.info.run_name == st.CONFIRM_ROW and row.data.tags["harness.study"] == "tiny"
    cells = runs(tracking_uri, "test-confirm-suite", "cell")
    assert sorted(r.data.params["seed"] for r in cells) == ["0", "1"]
    for r in cells:
        assert r.info.status == "FINISHED" and "test_f1_macro" in r.data.metrics
        assert {k: r.data.params[k] for k in best.params} == {k: str(v) for k, v in best.params.items()}


# --- the study file -------------------------------------------------------------------

def test_the_shipped_study_reproduces_the_seeds_focal_specaug_row():
    path = REPO / "studies" / "focal_specaug_lr.yaml"
    full = st.load_spec(path)
    row = load_suite(REPO / "experiments" / "seed_table.yaml").row("focal-specaug-30ep").config
    searched = {p.name: getattr(full.base, p.name) for p in full.params}
    assert full.base == row.replace(**searched)
    assert (full.name, full.direction, full.sampler[0], full.pruner[0]) == ("focal_specaug_lr", "maximize", "tpe",
                                                                            "median")
    quick = st.load_spec(path, "quick")
    assert quick.name == "focal_specaug_lr-quick" and quick.profile == "quick"
    assert (quick.base.model, quick.base.focal_loss, quick.n_trials) == ("resnet18", True, 12)
    # `study confirm --profile quick` compares like with like: the quick suite's row, trained the same way.
    quick_row = load_suite(REPO / "experiments" / "seed_table.yaml", "quick").row("focal-specaug-30ep").config
    assert quick.base == quick_row.replace(**{p.name: getattr(quick.base, p.name) for p in quick.params})
    # The mask widths keep their share of the smaller spectrogram (a quarter of the mel bins).
    ranges = {p.name: (p.low, p.high) for p in quick.params}
    full_ranges = {p.name: (p.low, p.high) for p in full.params}
    assert ranges["specaug_freq"][1] / quick.base.n_mels == full_ranges["specaug_freq"][1] / full.base.n_mels
    assert ranges["lr"] == full_ranges["lr"] and ranges["focal_gamma"] == full_ranges["focal_gamma"]


def test_a_profile_changes_the_ranges_of_the_searched_params_only(tmp_path):
    path = write(tmp_path / "s.yaml", study_doc(profiles={"quick": {"params": {"specaug_freq": {"high": 4}}}}))
    full, quick = st.load_spec(path), st.load_spec(path, "quick")
    assert [(p.name, p.low, p.high) for p in quick.params] == \
        [(p.name, p.low, 4 if p.name == "specaug_freq" else p.high) for p in full.params]
    for prof, needles in [({"params": {"dropout": {"low": 0, "high": 0.5}}}, ["'profiles.quick.params.dropout'",
                                                                              "not searched"]),
                          ({"params": {"lr": {"low": 0}}}, ["'profiles.quick.params.lr.low'", "log"]),
                          ({"params": {"specaug_freq": {"high": 64}}}, ["'params.specaug_freq.high'", "n_mels"])]:
        bad = write(tmp_path / "bad.yaml", study_doc(profiles={"quick": prof}))
        with pytest.raises(HarnessError) as e:
            st.load_spec(bad)
        for n in needles:
            assert n in str(e.value), str(e.value)


@pytest.mark.parametrize("change, needles", [
    (dict(nmae="x"), ["'nmae'", "did you mean 'name'"]),
    (dict(params={"lrr": SPACE["lr"]}), ["'params.lrr'", "did you mean 'lr'"]),
    (dict(params={"model": {"low": 0, "high": 1}}), ["'params.model'", "numeric"]),
    (dict(params={"seed": {"low": 0, "high": 9}}), ["'params.seed'", "cannot be searched"]),
    (dict(params={"lr": {"type": "float", "low": 0.1, "high": 0.01}}), ["'params.lr'", "low (0.1) must be <= high"]),
    (dict(params={"lr": {"type": "float", "low": 0, "high": 0.01, "log": True}}), ["'params.lr.low'", "log"]),
    (dict(params={"specaug_freq": {"type": "int", "low": 0.5, "high": 8}}), ["'params.specaug_freq.low'", "integer"]),
    (dict(params={"specaug_freq": {"type": "float", "low": 0, "high": 8}}), ["'params.specaug_freq.type'", "'int'"]),
    (dict(params={"lr": {"type": "float", "low": 1e-3, "hgh": 1e-2}}), ["'params.lr.hgh'", "did you mean 'high'"]),
    (dict(params={"specaug_freq": {"type": "int", "low": 0, "high": 64}}), ["'params.specaug_freq.high'", "n_mels"]),
    (dict(sampler="cmaes"), ["'sampler.name'", "tpe"]),
    (dict(pruner={"name": "median", "n_startup": 3}), ["'pruner.n_startup'", "did you mean 'n_startup_trials'"]),
    (dict(pruner="percentile"), ["'pruner.name'", "median, hyperband, none"]),
    (dict(pruner={"name": "median", "n_warmup_steps": -1}), ["'pruner'", "negative"]),
    (dict(budget={"n_trials": 0}), ["'budget.n_trials'", ">= 1"]),
    (dict(base={"config": {**TINY, "epohcs": 3}}), ["'base.config.epohcs'", "did you mean 'epochs'"]),
    (dict(base={"config": {**TINY, "lr": -1.0}}), ["'base'", "lr: must be > 0"]),
    (dict(base={"config": {**TINY, "data_root": "/x"}}), ["'base.config.data_root'", "command line"]),
    (dict(base={"suite": "experiments/seed_table.yaml"}), ["'base'", "`row:`"]),
    (dict(objective="test_f1_macro"), ["'objective'", "val_f1_macro"]),
    (dict(profiles={"quick": {"config": {"modle": "smallcnn"}}}), ["'profiles.quick.config.modle'", "did you mean"]),
    (dict(profiles={"quick": {"n_trials": 3}}), ["'profiles.quick.n_trials'", "budget"]),
    (dict(profiles={"quick": {"config": {"n_mels": 8}}}), ["'params.specaug_freq.high'", "profile quick", "n_mels"]),
])
def test_invalid_study_files_name_the_file_and_key(tmp_path, change, needles):
    path = write(tmp_path / "bad.yaml", study_doc(**change))
    with pytest.raises(HarnessError) as e:
        st.load_spec(path)
    for n in [str(path), *needles]:
        assert n in str(e.value), str(e.value)


def test_unknown_profile_and_bad_cli_input_are_one_line_exit_2(tmp_path, capsys):
    path = write(tmp_path / "s.yaml", study_doc(profiles={"quick": {"config": {"epochs": 1}}}))
    with pytest.raises(HarnessError, match="no profile 'quik'.*did you mean 'quick'"):
        st.load_spec(path, "quik")
    assert main(["study", "run", str(path), "--profile", "quik"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]
    assert main(["study", "run", str(path), "--storage", "sqlite:///mlflow.db"]) == 2
    assert "MLflow's database" in capsys.readouterr().err


def test_a_storage_password_never_reaches_messages():
    with pytest.raises(HarnessError) as e:
        st.open_storage("postgresql://user:s3cret@nohost.invalid:1/db")
    assert "s3cret" not in str(e.value) and "user:***@nohost.invalid" in str(e.value)
