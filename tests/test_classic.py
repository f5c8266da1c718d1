"""scikit-learn's classic models (`--model logreg | svm`) and normalisation by group (`--normalize`):
the torch module a fit becomes computes what scikit-learn's estimator does; C is chosen on validation;
same seed, same numbers; switches that cannot apply are one line; each speaker's features are
z-scored by their own clips; `auto` resolves by design and old configs keep their hash."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.config import RunConfig
from harness.errors import ConfigError
from harness.train import classic, heads, normalize
from harness.train import run as training


def _blobs(n_classes: int, n: int = 240, dim: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    x = rng.normal(size=(n, dim)) + 1.5 * rng.normal(size=(n_classes, dim))[y]
    return x, y


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("model,kernel", [("logreg", "linear"), ("svm", "linear"), ("svm", "rbf")])
def test_the_fitted_module_decides_as_scikit_learn_does(model, kernel, n_classes):
    x, y = _blobs(n_classes)
    est = classic.estimator(model, kernel, 0.5, balanced=False, seed=0).fit(x, y)
    net, _ = classic.to_net(est, n_classes, x.shape[1])
    with torch.no_grad():
        out = net(torch.as_tensor(x, dtype=torch.float32))
    assert np.array_equal(out.argmax(1).numpy(), est.predict(x))
    if model == "logreg":  # its logits are the multinomial model's: softmax gives predict_proba
        np.testing.assert_allclose(torch.softmax(out.double(), 1).numpy(), est.predict_proba(x), atol=1e-5)
    elif kernel == "rbf" and n_classes > 2:  # one-vs-one machines voted into scikit-learn's ovr scores
        np.testing.assert_allclose(out.numpy(), est.decision_function(x), atol=1e-4)


def test_a_class_the_training_split_lacks_is_never_predicted():
    x, y = _blobs(3)
    keep = y != 1
    est = classic.estimator("logreg", "linear", 1.0, balanced=False, seed=0).fit(x[keep], y[keep])
    net, _ = classic.to_net(est, 3, x.shape[1])
    with torch.no_grad():
        pred = net(torch.as_tensor(x, dtype=torch.float32)).argmax(1)
    assert 1 not in set(pred.tolist())


def test_c_is_chosen_on_validation_and_a_given_c_is_the_only_fit():
    x, y = _blobs(3, n=300)
    xt, yt, xv, yv = (torch.as_tensor(x[:200], dtype=torch.float32), y[:200],
                      torch.as_tensor(x[200:], dtype=torch.float32), y[200:])
    shape = {"dim": x.shape[1], "n_layers": 0}
    _, step, f1, history, _ = classic.fit("logreg", "linear", None, False, 0, 3, shape, xt, yt, xv, yv)
    assert [h["C"] for h in history] == list(classic.C_GRID)
    assert f1 == max(h["val_f1_macro"] for h in history)
    assert step == 1 + next(i for i, h in enumerate(history) if h["val_f1_macro"] == f1)  # the smallest C of a tie
    _, step, _, history, _ = classic.fit("logreg", "linear", 0.3, False, 0, 3, shape, xt, yt, xv, yv)
    assert step == 1 and [h["C"] for h in history] == [0.3]


@pytest.mark.parametrize("overrides", [dict(model="logreg"), dict(model="svm", kernel="rbf", normalize="speaker")])
def test_a_classic_run_is_tracked_repeatable_and_rebuilt_from_its_checkpoint(
        overrides, tiny, tracking_uri, experiment, tmp_path):
    cfg = tiny(features="egemaps", n_mels=128, class_weight_loss=True, **overrides)
    data = training.prepare(cfg)
    a = training.run(cfg, experiment=experiment, tracking_uri=tracking_uri, data=data, out_dir=tmp_path / "a")
    b = training.run(cfg, experiment=experiment, tracking_uri=tracking_uri, data=data, out_dir=tmp_path / "b")
    assert a["test_f1_macro"] == b["test_f1_macro"] and a["classic_C"] == b["classic_C"]
    assert a["classic_C"] in classic.C_GRID
    model, ckpt = training.load_checkpoint(tmp_path / "a" / "best_model.pt")
    fitted = training.fit(cfg, data)
    te = data.split.test
    x = heads.model_inputs(data.features, te, fitted.norm, torch.device("cpu"))
    assert torch.equal(training.predict(model, x), training.predict(fitted.model, x))
    import mlflow

    run = mlflow.MlflowClient(tracking_uri).get_run(a["run_id"])
    assert run.data.tags["harness.normalize"] == cfg.normalize
    assert run.data.tags["harness.transductive"] == str(cfg.normalize != "train").lower()


@pytest.mark.parametrize("overrides,flag", [
    (dict(features="egemaps", model="logreg", dropout=0.2), "dropout"),
    (dict(features="egemaps", model="svm", mixup_alpha=0.2), "mixup_alpha"),
    (dict(features="egemaps", model="logreg", focal_loss=True), "focal_loss"),
    (dict(features="egemaps", model="logreg", kernel="rbf"), "kernel"),
    (dict(features="logmel", model="logreg"), "model"),
    (dict(features="egemaps", model="mlp", C=1.0), "C"),
    (dict(features="egemaps", model="logreg", C=0.0), "C"),
    (dict(normalize="per_speaker"), "normalize"),
])
def test_a_switch_that_cannot_apply_to_a_classic_model_names_itself(overrides, flag):
    with pytest.raises(ConfigError) as e:
        RunConfig(**overrides)
    assert e.value.key == flag


def test_the_cli_rejects_an_inapplicable_switch_in_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "harness", "train", "--features", "egemaps", "--model", "logreg",
                        "--use_specaug"], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "use_specaug" in p.stderr
    assert not any(tmp_path.iterdir())


def test_auto_normalisation_is_train_on_one_corpus_and_speaker_across_corpora_and_old_hashes_hold():
    assert RunConfig().normalize == "train"
    assert RunConfig(data_root="a,b", test_corpus="b").normalize == "speaker"
    assert RunConfig(data_root="a,b", protocol="leave_one_corpus_out").normalize == "speaker"
    assert "normalize" not in RunConfig().hashed_dict()  # what every run did before the flag: same hash
    assert RunConfig(normalize="speaker").config_hash != RunConfig().config_hash


class _Clip:
    def __init__(self, corpus, speaker):
        self.corpus, self.speaker = corpus, speaker


@pytest.mark.parametrize("shape", [(6,), (1, 5, 9)])  # functionals; log-mel, per mel band
def test_speaker_normalisation_zscores_each_speaker_by_their_own_clips(shape):
    clips = [_Clip("a", f"a:{i % 3}") for i in range(30)] + [_Clip("b", "b:0")] * 10
    g = normalize.group_ids(clips, "speaker")
    assert len(set(g.tolist())) == 4 and normalize.group_ids(clips, "train") is None
    assert len(set(normalize.group_ids(clips, "corpus").tolist())) == 2
    x = torch.randn(len(clips), *shape) * 3 + torch.arange(len(clips)).remainder(3).view(-1, *[1] * len(shape)) * 5
    z = heads.model_inputs(x, np.arange(len(clips)), heads.input_norm(x, np.arange(10), g), torch.device("cpu"))
    for s in range(4):
        zs = z[torch.from_numpy(g == s)].double()
        dims = (0,) if len(shape) == 1 else (0, 3)
        assert torch.allclose(zs.mean(dims), torch.zeros(()).double(), atol=1e-5)
        assert torch.allclose(zs.std(dims, unbiased=False), torch.ones(()).double(), atol=1e-4)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    from harness.train.frontends import ssl

    return str(ssl.tiny_checkpoint("wavlm_base", tmp_path_factory.mktemp("enc") / "wavlm.pt"))


def test_an_encoders_frames_are_zscored_per_speaker_per_layer_and_dimension(tiny, tiny_encoder):
    cfg = tiny(features="wavlm_base", model="logreg", n_mels=128, encoder_checkpoint=tiny_encoder,
               normalize="speaker")
    data = training.prepare(cfg)
    groups = normalize.group_ids(data.corpus.clips, "speaker")
    norm = heads.input_norm(data.features, data.split.train, groups)
    speaker = np.flatnonzero(groups == 0)
    batch = heads.FrameInputs(data.features, speaker, norm, torch.device("cpu"))[np.arange(len(speaker))]
    frames = torch.cat([batch.x[j, :int(n)] for j, n in enumerate(batch.lengths)]).double()  # (frames, layers, dim)
    assert torch.allclose(frames.mean(0), torch.zeros(()).double(), atol=2e-3)
    assert torch.allclose(frames.std(0, unbiased=False), torch.ones(()).double(), atol=2e-3)


@pytest.mark.parametrize("overrides", [dict(model="logreg"), dict(model="mlp", use_specaug=True),
                                       dict(model="mlp", normalize="corpus")])
def test_heads_and_classic_models_train_on_group_normalised_encoder_layers(overrides, tiny, tiny_encoder):
    cfg = tiny(features="wavlm_base", n_mels=128, encoder_checkpoint=tiny_encoder,
               **{"normalize": "speaker", **overrides})
    data = training.prepare(cfg)
    a, b = training.fit(cfg, data), training.fit(cfg, data)
    assert a.history == b.history  # same seed, same numbers
    test = training.score_test(a.model, data, a.norm, torch.device("cpu"))
    assert 0.0 <= test["f1_macro"] <= 1.0 and np.isfinite(test["probs"]).all()


def test_a_suite_varies_normalisation_as_a_row_and_the_report_says_which_rows_were_transductive(
        tmp_path, synth_root, tracking_uri, experiment):
    import yaml

    from harness.cli import main

    doc = {"name": experiment, "seeds": [0, 1],
           "base": {"features": "egemaps", "model": "logreg", "train_ratio": 0.6, "val_ratio": 0.2},
           "rows": [{"name": "logreg", "config": {}}, {"name": "logreg-speaker", "config": {"normalize": "speaker"}}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    assert main(["suite", "run", str(tmp_path / "s.yaml"), "--data_root", str(synth_root),
                 "--tracking_uri", tracking_uri, "--storage", f"sqlite:///{tmp_path / 'q.db'}"]) == 0
    assert main(["report", "--experiment", experiment, "--tracking_uri", tracking_uri,
                 "--out", str(tmp_path / "r.md")]) == 0
    text = (tmp_path / "r.md").read_text()
    top = text.split("## What the data supports")[0]
    assert "**Transductive normalisation:** `logreg-speaker` z-scores each speaker by its own clips" in top
    assert "`logreg`" not in top.split("Transductive normalisation")[1].split("\n")[0]
    assert "normalisation" in text.split("## Methods")[1] and "speaker: `logreg-speaker`" in text


def test_a_split_classic_row_runs_beside_a_cross_validated_row_listed_first(tmp_path, synth_root, tracking_uri,
                                                                              experiment, capsys):
    import yaml

    from harness.cli import main

    doc = {"name": experiment, "seeds": [0],
           "base": {"n_mels": 32, "epochs": 1, "batch_size": 64, "val_ratio": 0.2},
           "rows": [{"name": "cnn-cv", "config": {"cv_folds": 2}},
                    {"name": "logreg", "config": {"features": "egemaps", "model": "logreg", "n_mels": 128,
                                                  "train_ratio": 0.6}}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    argv = ["suite", "run", str(tmp_path / "s.yaml"), "--data_root", str(synth_root), "--tracking_uri", tracking_uri,
            "--storage", f"sqlite:///{tmp_path / 'q.db'}"]
    assert main([*argv, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "logreg@egemaps      -   split" in plan  # a classic row has no epochs to count
    assert main(argv) == 0
    assert "3 done, 0 skipped" in capsys.readouterr().out


def test_a_checkpoint_written_before_normalisation_existed_is_read_as_trained_with_training_statistics():
    old = RunConfig(data_root="a,b", test_corpus="b").to_dict()
    del old["normalize"]  # what a cross-corpus checkpoint of an earlier version holds
    assert RunConfig.from_dict(old).normalize == "speaker"  # today's default for that design ...
    assert training.checkpoint_config({"config": old}).normalize == "train"  # ... but it was trained with train's
    assert training.checkpoint_config({"config": RunConfig(normalize="corpus").to_dict()}).normalize == "corpus"
