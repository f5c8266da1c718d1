"""Using a trained row (issue 41): `harness predict` on new audio and on another labelled corpus, `harness register`
as an MLflow pyfunc model, loaded back in a fresh process and served over HTTP, and every bad input answered
in one line with exit status 2 and nothing created."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml

from harness import metrics, tracking
from harness.cli import main
from harness.config import RunConfig
from harness.suite.file import load_suite
from harness.suite.runner import run_suite

EXPERIMENT = "predict-demo"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_root, tracking_uri):
    """A demo-like suite: one emotion row, 2 seeds of a SmallCNN on the synthetic corpus (8 emotions, no boredom)."""
    folder = tmp_path_factory.mktemp("predict")
    doc = {"name": EXPERIMENT, "seeds": [0, 1],
           "base": {"model": "smallcnn", "mode": "emotion", "n_mels": 32, "epochs": 2, "batch_size": 64,
                    "train_ratio": 0.6, "val_ratio": 0.2},
           "rows": [{"name": "baseline", "config": {}, "note": "SmallCNN, plain cross-entropy."}]}
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    summary = run_suite(load_suite(path), data_root=str(synth_root), tracking_uri=tracking_uri, experiment=EXPERIMENT,
                        out_dir=str(folder / "artifacts"), progress=False)
    assert summary.failed == 0 and summary.done == 2
    return folder


def predict(*argv: str, capsys) -> tuple[int, list[str], str]:
    rc = main(["predict", *argv])
    out = capsys.readouterr()
    return rc, [line for line in out.err.splitlines() if line.strip()], out.out


def runs_of(c, experiment: str) -> list:
    exp = c.get_experiment_by_name(experiment)
    return c.search_runs([exp.experiment_id], max_results=1000) if exp else []


def cells(c) -> list:
    return [r for r in runs_of(c, EXPERIMENT) if r.data.tags.get("harness.kind") == "cell"]


def probs(table: pd.DataFrame) -> np.ndarray:
    return table[[col for col in table.columns if col.startswith("prob_")]].to_numpy(dtype=float)


# --- what a prediction is -----------------------------------------------------------

def test_a_run_predicts_its_own_test_clips_as_its_training_run_scored_them(trained, synth_root, tracking_uri,
                                                                            tmp_path, capsys):
    c = tracking.client(tracking_uri)
    run = cells(c)[0]
    scored = pd.read_csv(c.download_artifacts(run.info.run_id, "test_predictions.csv", str(tmp_path)))
    manifest = tmp_path / "test_clips.csv"
    pd.DataFrame({"path": [str(synth_root / clip) for clip in scored["clip"]]}).to_csv(manifest, index=False)
    rc, err, _ = predict("--run", run.info.run_id, str(manifest), "--out", str(tmp_path / "p.csv"),
                         "--tracking_uri", tracking_uri, capsys=capsys)
    assert rc == 0, err
    got = pd.read_csv(tmp_path / "p.csv")
    assert "spread" not in got  # one model: no spread to speak of
    assert list(got["label"]) == list(scored["pred"])
    np.testing.assert_allclose(probs(got), probs(scored), atol=2e-6)  # both written with 6 decimals
    assert any("one model (seed" in line for line in err)


@pytest.mark.slow
def test_a_rows_models_answer_alike_from_the_cli_the_registry_and_the_server(trained, synth_root, tracking_uri,
                                                                               tmp_path, capsys):
    """Predicted, registered, loaded back in a fresh process and served: the same probabilities all three ways."""
    clips = sorted((synth_root / "Actor_01").glob("*.wav"))[:6]
    folder = tmp_path / "clips"
    folder.mkdir()
    for p in clips:
        (folder / p.name).write_bytes(p.read_bytes())
    rc, err, _ = predict("--experiment", EXPERIMENT, "--row", "baseline", str(folder), "--out",
                         str(tmp_path / "cli.csv"), "--tracking_uri", tracking_uri, capsys=capsys)
    assert rc == 0, err
    assert any("split design: 2 models (seeds 0, 1), probabilities averaged" in line for line in err), err
    cli = pd.read_csv(tmp_path / "cli.csv").sort_values("path").reset_index(drop=True)
    assert len(cli) == 6 and (cli["spread"] >= 0).all() and (cli["spread"] > 0).any()
    np.testing.assert_allclose(probs(cli).sum(1), 1.0, atol=1e-5)

    assert main(["register", "--experiment", EXPERIMENT, "--row", "baseline", "--tracking_uri", tracking_uri]) == 0
    name = f"harness-{EXPERIMENT}-baseline"
    c = tracking.client(tracking_uri)
    version = max(int(v.version) for v in c.search_model_versions(f"name = '{name}'"))
    described = c.get_registered_model(name).description
    assert "SmallCNN, plain cross-entropy." in described and "mode=emotion" in described

    paths = [str(p) for p in cli["path"]]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": ""}  # the model brings its own code
    loaded = subprocess.run(
        [sys.executable, "-c", "import json, sys, mlflow, pandas as pd, soundfile as sf\n"
         f"m = mlflow.pyfunc.load_model('models:/{name}/{version}')\n"
         "paths = json.loads(sys.argv[1])\n"
         "by_path = m.predict(pd.DataFrame({'path': paths}))\n"
         "audio = [sf.read(p, dtype='float32') for p in paths]\n"
         "by_samples = m.predict(pd.DataFrame({'audio': [a.tolist() for a, _ in audio], 'sample_rate': [r for _, r in audio]}))\n"
         "print(json.dumps([by_path.to_dict('list'), by_samples.to_dict('list')]))", json.dumps(paths)],
        env=env, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    by_path, by_samples = (pd.DataFrame(t) for t in json.loads(loaded.stdout.strip().splitlines()[-1]))
    for table in (by_path, by_samples):
        assert list(table["label"]) == list(cli["label"])
        np.testing.assert_allclose(probs(table), probs(cli), atol=2e-6)
        np.testing.assert_allclose(table["spread"], cli["spread"], atol=2e-6)

    served = serve_and_ask(f"models:/{name}/{version}", env, paths)
    assert [p["label"] for p in served] == list(cli["label"])
    np.testing.assert_allclose(probs(pd.DataFrame(served)), probs(cli), atol=2e-6)


def serve_and_ask(model_uri: str, env: dict, paths: list[str]) -> list[dict]:
    """`mlflow models serve --env-manager local` on a free port of 127.0.0.1, one POST, the server stopped."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = str(Path(sys.executable).parent)  # the server execs uvicorn from the environment's bin
    server = subprocess.Popen([str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager",
                               "local", "-h", "127.0.0.1", "-p", str(port)],
                              env={**env, "PATH": f"{bin_dir}:{env.get('PATH', '')}"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.time() < deadline, "the model server did not answer /ping within 180 s"
                time.sleep(1)
        body = json.dumps({"dataframe_split": {"columns": ["path"], "data": [[p] for p in paths]}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def test_a_clip_that_cannot_be_read_in_a_folder_is_reported_and_the_others_predicted(trained, synth_root,
                                                                                       tracking_uri, tmp_path, capsys):
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    good = sorted((synth_root / "Actor_02").glob("*.wav"))[:3]
    for p in good:
        (folder / "sub" / p.name).write_bytes(p.read_bytes())
    (folder / "broken.wav").write_bytes(b"RIFF not really audio")
    rc, err, out = predict("--experiment", EXPERIMENT, "--row", "baseline", str(folder), "--out",
                           str(tmp_path / "p.csv"), "--tracking_uri", tracking_uri, capsys=capsys)
    assert rc == 0
    assert [line for line in err if line.startswith("skipped:")] == [
        next(line for line in err if "broken.wav" in line)]
    assert len(pd.read_csv(tmp_path / "p.csv")) == 3 and "1 unreadable clip(s) skipped" in out


# --- another corpus, no retraining ---------------------------------------------------

def test_another_labelled_corpus_is_scored_and_logged_as_an_evaluation_run(trained, tracking_uri, tmp_path, capsys):
    from harness.train.synth import generate_corpus

    emodb = generate_corpus(tmp_path / "emodb", n_actors=2, seed=3, layout="emodb")
    rc, err, out = predict("--experiment", EXPERIMENT, "--row", "baseline", "--data_root", str(emodb), "--corpus",
                           "emodb", "--out", str(tmp_path / "eval.csv"), "--tracking_uri", tracking_uri, capsys=capsys)
    assert rc == 0, err
    assert "boredom: " in out and "left out (not among the model's classes)" in out  # the model never heard boredom
    table = pd.read_csv(tmp_path / "eval.csv")
    assert "boredom" not in set(table["true"])
    c = tracking.client(tracking_uri)
    (run,) = [r for r in runs_of(c, EXPERIMENT) if r.data.tags.get("harness.kind") == "evaluation"]
    tags, m = run.data.tags, run.data.metrics
    assert set(tags["harness.source_runs"].split(",")) == {r.info.run_id for r in cells(c)}
    assert tags["harness.source_row"] == "baseline" and "boredom" in tags["harness.labels_dropped"]
    classes = tags["harness.classes"].split(",")
    expected = metrics.scores_of(metrics.confusion(table["true"], table["label"], classes))
    assert m["test_f1_macro"] == pytest.approx(expected["f1_macro"])
    assert m["test_ua"] == pytest.approx(expected["ua"]) and m["test_wa"] == pytest.approx(expected["wa"])
    assert np.array(eval(tags["harness.test_confusion"])).sum() == len(table) == m["n_test_clips"]
    assert {a.path for a in c.list_artifacts(run.info.run_id)} == {"eval_predictions.csv", "confusion_matrix.png"}

    from harness.report.evaluations import evaluation_section, read_evaluations

    section = evaluation_section(read_evaluations(c, run.info.experiment_id))
    (line,) = [x for x in section if x.startswith("| baseline |")]
    assert f"| {m['test_f1_macro']:.3f} |" in line and "emodb" in line and "boredom" in line
    # the suite's report lists it beside the rows
    from harness.cli import main

    assert main(["report", "--experiment", EXPERIMENT, "--tracking_uri", tracking_uri,
                 "--out", str(tmp_path / "report.md")]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "## On other corpora, without retraining" in report and line in report


def test_a_sentiment_model_takes_a_corpus_s_emotions_through_their_sentiments(tmp_path):
    from harness.corpora.base import SENTIMENT_OF_EMOTION, SENTIMENTS
    from harness.predict.inputs import labelled
    from harness.train.synth import generate_corpus

    root = generate_corpus(tmp_path / "emodb", n_actors=1, seed=5, layout="emodb")
    got = labelled(str(root), "emodb", SENTIMENTS, "sentiment", {})
    assert not got.dropped and len(got.truth) == len(got.corpus.clips)
    assert list(got.truth) == [SENTIMENT_OF_EMOTION[c.label] for c in got.corpus.clips]
    assert got.labels["boredom"] == "negative"


# --- bad input: one line, exit 2, nothing created -------------------------------------

def fake_row(c, experiment: str, row: str, checkpoints: list[dict], folder: Path) -> str:
    """A suite row whose cells hold these checkpoints (no training): for inputs no real suite produces."""
    exp_id = tracking.get_or_create_experiment(c, experiment)
    parent = c.create_run(exp_id, run_name=row, tags={"harness.kind": "row", "harness.row": row,
                                                      "harness.row_index": "0", "harness.config_hash": "h"}).info.run_id
    for seed, ck in enumerate(checkpoints):
        run_id = c.create_run(exp_id, run_name=f"{row}/seed{seed}", tags={
            "harness.kind": "cell", "harness.row": row, "harness.seed": str(seed), "harness.config_hash": "h",
            tracking.PARENT_TAG: parent}).info.run_id
        path = folder / f"{row}-{seed}" / "best_model.pt"
        path.parent.mkdir(parents=True)
        torch.save(ck, path)
        c.log_artifact(run_id, str(path))
        c.set_terminated(run_id, "FINISHED")
    return parent


@pytest.fixture(scope="module")
def bad_sources(trained, tracking_uri, tmp_path_factory):
    """Runs and rows to refuse: a FAILED run, a run with no model, a row whose runs disagree, an encoder row
    without weights."""
    from harness.train import heads

    folder = tmp_path_factory.mktemp("bad-sources")
    c = tracking.client(tracking_uri)
    exp_id = tracking.get_or_create_experiment(c, "predict-bad")
    try:
        with tracking.tracked_run(c, exp_id, "broken", {}):
            raise RuntimeError("loss became nan")
    except RuntimeError:
        pass
    with tracking.tracked_run(c, exp_id, "empty", {}):
        pass
    runs = {r.info.run_name: r.info.run_id for r in c.search_runs([exp_id])}
    real = torch.load(c.download_artifacts(cells(c)[0].info.run_id, "best_model.pt", str(folder)), weights_only=True)
    fake_row(c, "predict-bad", "disagree", [real, {**real, "classes": real["classes"][::-1]}], folder)
    head = heads.build_head("linear", 2, 0.0, {"dim": 8, "n_layers": 2})
    encoder = {"state_dict": head.state_dict(), "classes": ["neutral", "happy"], "head_shape": {"dim": 8, "n_layers": 2},
               "norm": [torch.zeros(2, 8), torch.ones(2, 8)],
               "config": RunConfig(features="wavlm_base", model="linear",
                                   encoder_checkpoint=str(folder / "gone" / "wavlm.pt")).to_dict()}
    fake_row(c, "predict-bad", "no-weights", [encoder], folder)
    return runs


def bad_audio(tmp_path: Path, synth_root: Path) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "garbage.wav").write_bytes(b"this is not a wav file")
    (tmp_path / "zero.wav").write_bytes(b"")
    sf.write(tmp_path / "silent.wav", np.zeros(0, dtype=np.float32), 16000)
    (tmp_path / "empty_folder").mkdir()
    manifest = tmp_path / "boredom.csv"
    clip = next(iter(sorted((synth_root / "Actor_01").glob("*.wav"))))
    manifest.write_text(f"path,speaker,label\n{clip},s1,boredom\n{clip},s2,boredom\n")
    row = ["--experiment", EXPERIMENT, "--row", "baseline"]
    return {"unreadable audio": (row + [str(tmp_path / "garbage.wav")], "garbage.wav"),
            "an empty file": (row + [str(tmp_path / "zero.wav")], "zero.wav"),
            "audio without samples": (row + [str(tmp_path / "silent.wav")], "holds no samples"),
            "an empty folder": (row + [str(tmp_path / "empty_folder")], "holds no .wav file"),
            "a corpus sharing no label": (row + ["--data_root", str(manifest), "--corpus", "manifest"],
                                          "shares no label with the model"),
            "a missing input": (row + [str(tmp_path / "nowhere.wav")], "does not exist")}


CASES = ["an unknown run", "an unknown row", "an unknown experiment", "a FAILED run", "a run without a model",
         "a row whose runs disagree", "an encoder without weights", "unreadable audio", "an empty file",
         "audio without samples", "an empty folder", "a corpus sharing no label", "a missing input",
         "a missing tracking store", "no model named"]


@pytest.mark.parametrize("case", CASES)
def test_each_bad_input_is_one_line_and_exit_2_with_nothing_created(case, trained, bad_sources, synth_root,
                                                                     tracking_uri, tmp_path, capsys):
    clip = str(sorted((synth_root / "Actor_01").glob("*.wav"))[0])
    sources = {"an unknown run": (["--run", "0123456789abcdef0123456789abcdef", clip], "no such run"),
               "an unknown row": (["--experiment", EXPERIMENT, "--row", "nope", clip], "not a row"),
               "an unknown experiment": (["--experiment", "nope", "--row", "baseline", clip], "not found"),
               "a FAILED run": (["--run", bad_sources["broken"], clip], "FAILED (RuntimeError: loss became nan)"),
               "a run without a model": (["--run", bad_sources["empty"], clip], "holds no model"),
               "a row whose runs disagree": (["--experiment", "predict-bad", "--row", "disagree", clip],
                                             "disagree on labels"),
               "an encoder without weights": (["--experiment", "predict-bad", "--row", "no-weights", clip],
                                              "wavlm.pt: no such file"),
               "no model named": ([clip], "no model")}
    store = tmp_path / "no-store" / "mlflow.db"
    sources["a missing tracking store"] = (["--run", "0123456789abcdef0123456789abcdef", clip, "--tracking_uri",
                                            f"sqlite:///{store}"], "no MLflow tracking store")
    argv, needle = {**sources, **bad_audio(tmp_path, synth_root)}[case]
    if "--tracking_uri" not in argv:
        argv = [*argv, "--tracking_uri", tracking_uri]
    c = tracking.client(tracking_uri)
    before = sum(len(runs_of(c, e)) for e in (EXPERIMENT, "predict-bad"))
    out = tmp_path / "out" / "p.csv"
    rc, err, _ = predict(*argv, "--out", str(out), capsys=capsys)
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists() and not out.parent.exists() and not store.parent.exists()
    assert sum(len(runs_of(c, e)) for e in (EXPERIMENT, "predict-bad")) == before


# --- real audio -----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.real_data
def test_a_model_trained_on_ravdess_scores_turev_without_retraining(ravdess_root, turev_root, tracking_uri, tmp_path,
                                                                     capsys):
    from harness.train import run as training

    cfg = RunConfig(data_root=str(ravdess_root), corpus="ravdess", mode="emotion", labels="angry,calm,happy,sad",
                    n_mels=32, epochs=2, batch_size=32, device="cpu")
    res = training.run(cfg, experiment="predict-real", tracking_uri=tracking_uri, out_dir=tmp_path / "run")
    rc, err, out = predict("--run", res["run_id"], "--data_root", str(turev_root), "--corpus", "turev", "--out",
                           str(tmp_path / "turev.csv"), "--tracking_uri", tracking_uri, capsys=capsys)
    assert rc == 0, err
    table = pd.read_csv(tmp_path / "turev.csv")
    assert set(table["true"]) <= {"angry", "calm", "happy", "sad"} and len(table) > 100
    c = tracking.client(tracking_uri)
    (ev,) = [r for r in runs_of(c, "predict-real") if r.data.tags.get("harness.kind") == "evaluation"]
    assert ev.data.tags["harness.source_runs"] == res["run_id"]
    assert 0.0 <= ev.data.metrics["test_f1_macro"] <= 1.0 and ev.data.metrics["n_test_clips"] == len(table)


# --- normalisation by speaker ------------------------------------------------------------

def test_a_speaker_normalised_model_standardises_each_input_speaker_by_their_own_clips(tiny, synth_root,
                                                                                        tracking_uri, tmp_path, capsys):
    """Its own test speaker given whole, with the speaker column: the same numbers as its training run scored;
    too few clips of a speaker: one line naming the fix, exit 2."""
    from harness.train import run as training

    res = training.run(tiny(normalize="speaker", epochs=1), experiment="predict-speaker", tracking_uri=tracking_uri,
                       out_dir=tmp_path / "run")
    c = tracking.client(tracking_uri)
    scored = pd.read_csv(c.download_artifacts(res["run_id"], "test_predictions.csv", str(tmp_path)))
    manifest = tmp_path / "test_speaker.csv"
    pd.DataFrame({"path": [str(synth_root / p) for p in scored["clip"]], "speaker": scored["speaker"]}).to_csv(
        manifest, index=False)
    rc, err, _ = predict("--run", res["run_id"], str(manifest), "--out", str(tmp_path / "p.csv"), "--tracking_uri",
                         tracking_uri, capsys=capsys)
    assert rc == 0, err
    assert any("standardised per speaker with the inputs' own statistics" in line for line in err)
    got = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(probs(got), probs(scored), atol=2e-6)

    few = tmp_path / "few.csv"
    pd.DataFrame({"path": [str(synth_root / p) for p in scored["clip"][:4]]}).to_csv(few, index=False)
    rc, err, _ = predict("--run", res["run_id"], str(few), "--out", str(tmp_path / "few_out.csv"), "--tracking_uri",
                         tracking_uri, capsys=capsys)
    assert rc == 2 and len(err) == 1 and "4 clip(s), fewer than the 10" in err[0] and "speaker column" in err[0]
    assert not (tmp_path / "few_out.csv").exists()


def test_a_row_says_whether_it_averages_fold_models_or_seeds():
    from harness.predict.sources import design_of

    cv = pd.DataFrame({"seed": [0, 0, 1, 1], "fold": pd.array([0, 1, 0, 1], dtype="Int64")})
    split = pd.DataFrame({"seed": [0, 1, 2], "fold": pd.array([pd.NA] * 3, dtype="Int64")})
    assert design_of(cv).startswith("cross-validation: 4 fold models (2 folds x 2 repeats, seeds 0, 1)")
    assert design_of(split).startswith("split design: 3 models (seeds 0, 1, 2)")


def test_a_rows_parent_run_stands_for_its_row(trained, synth_root, tracking_uri, tmp_path, capsys):
    c = tracking.client(tracking_uri)
    (parent,) = [r for r in runs_of(c, EXPERIMENT) if r.data.tags.get("harness.kind") == "row"]
    clip = str(sorted((synth_root / "Actor_03").glob("*.wav"))[0])
    rc, err, _ = predict("--run", parent.info.run_id, clip, "--out", str(tmp_path / "p.csv"), "--tracking_uri",
                         tracking_uri, capsys=capsys)
    assert rc == 0 and any("row `baseline`" in line and "2 models" in line for line in err), err
    assert "spread" in pd.read_csv(tmp_path / "p.csv")


def test_a_registered_models_name_is_harness_experiment_row_in_safe_characters():
    from harness.predict.registry import model_name

    assert model_name("demo", "class-weights") == "harness-demo-class-weights"
    assert model_name("my suite/v2", "cw+bn") == "harness-my-suite-v2-cw-bn"
