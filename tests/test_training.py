"""One tracked run: flags reach training, selection is on validation, the test set is scored once."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness import tracking
from harness.config import RunConfig
from harness.errors import NonFiniteLossError
from harness.train import run as training
from harness.corpora.base import SENTIMENTS
from harness.train.run import fit, load_checkpoint, prepare, score_test


def test_same_seed_same_numbers(tiny, tmp_path, tracking_uri, experiment):
    cfg = tiny(class_weight_loss=True, use_specaug=True, mixup_alpha=0.2)
    a = training.run(cfg, experiment, tracking_uri, out_dir=tmp_path / "a")
    b = training.run(cfg, experiment, tracking_uri, out_dir=tmp_path / "b")
    assert a["history"] == b["history"]
    assert a["test_f1_macro"] == b["test_f1_macro"] and a["best_epoch"] == b["best_epoch"]


def test_the_memory_layout_is_the_measured_one_and_is_recorded(tiny, tmp_path, tracking_uri, experiment, monkeypatch):
    from harness.train import models

    built = []
    real = training.build_model
    monkeypatch.setattr(training, "build_model", lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    cfg = tiny(epochs=1)
    res = training.run(cfg, experiment, tracking_uri, out_dir=tmp_path)
    tags = tracking.client(tracking_uri).get_run(res["run_id"]).data.tags
    assert models.channels_last("smallcnn", "cpu") and tags["harness.memory_format"] == "channels_last"
    conv = built[0].features[3].weight  # the second conv (16 -> 32 channels): one input channel is both layouts
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert models.layout_name("resnet18", "cpu") == "contiguous"  # measured slower at the cpu profile's 64 x 65
    assert models.layout_name("smallcnn", "cuda") == "contiguous"  # not measured on a GPU yet


def test_the_layout_changes_the_speed_not_what_is_learned(tiny, monkeypatch):
    from harness.train import models

    cfg = tiny(epochs=2, class_weight_loss=True)
    data = prepare(cfg)
    nhwc = fit(cfg, data)
    monkeypatch.setattr(models, "CHANNELS_LAST", {})
    nchw = fit(cfg, data)
    for a, b in zip(nhwc.history, nchw.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


def test_checkpoint_reloads_and_reproduces_the_test_score(tiny, tmp_path, tracking_uri, experiment):
    cfg = tiny(model="smallcnn", use_bn=True, dropout=0.2, epochs=3)
    res = training.run(cfg, experiment, tracking_uri, out_dir=tmp_path)
    model, ckpt = load_checkpoint(tmp_path / "best_model.pt")  # weights_only=True inside
    assert RunConfig.from_dict(ckpt["config"]) == cfg and ckpt["best_epoch"] == res["best_epoch"]
    again = score_test(model, prepare(cfg), tuple(ckpt["norm"]), torch.device("cpu"))
    assert again["f1_macro"] == pytest.approx(res["test_f1_macro"], abs=1e-12)


def test_the_run_is_tracked_whole(tiny, tmp_path, tracking_uri, experiment):
    cfg = tiny(focal_loss=True, focal_gamma=1.5, epochs=3)
    res = training.run(cfg, experiment, tracking_uri, out_dir=tmp_path)
    c = tracking.client(tracking_uri)
    run = c.get_run(res["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params == cfg.to_params()
    tags = run.data.tags
    for key in ("harness.git_commit", "harness.config_hash", "harness.data_fingerprint", "harness.device",
                "harness.version.torch", "harness.version.mlflow", "harness.seed"):
        assert tags.get(key), key
    assert tags["harness.config_hash"] == cfg.config_hash
    for key in ("train_loss", "val_loss", "val_f1_macro"):
        assert [m.step for m in c.get_metric_history(run.info.run_id, key)] == [1, 2, 3]
    val = [m.value for m in c.get_metric_history(run.info.run_id, "val_f1_macro")]
    assert run.data.metrics["best_epoch"] == 1 + int(np.argmax(val))  # selection on validation only
    assert run.data.metrics["test_f1_macro"] == res["test_f1_macro"]
    for name in SENTIMENTS:
        assert f"test_f1_{name}" in run.data.metrics
    artifacts = {a.path for a in c.list_artifacts(run.info.run_id)}
    assert {"best_model.pt", "confusion_matrix.png"} <= artifacts


def test_the_test_split_is_scored_once_with_the_selected_checkpoint(tiny, monkeypatch, tracking_uri, experiment, tmp_path):
    calls = []
    real = training.score_test

    def spy(model, data, norm, device):
        calls.append(1)
        return real(model, data, norm, device)
    monkeypatch.setattr(training, "score_test", spy)
    training.run(tiny(epochs=3), experiment, tracking_uri, out_dir=tmp_path)
    assert len(calls) == 1


def test_specaugment_touches_training_batches_only(tiny, monkeypatch):
    seen = []
    real = training.SpecAugment.forward

    def spy(self, x):
        seen.append(x.shape[0])
        return real(self, x)
    monkeypatch.setattr(training.SpecAugment, "forward", spy)
    cfg = tiny(use_specaug=True, epochs=2)
    data = prepare(cfg)
    fit(cfg, data)
    assert sum(seen) == 2 * len(data.split.train)  # every training example, each epoch; nothing else


def test_mixup_and_balanced_sampler_are_applied_when_asked(tiny, monkeypatch):
    mixed, sampled = [], []
    real_mixup, real_sampler = training.mixup, training.balanced_sampler
    monkeypatch.setattr(training, "mixup", lambda *a: mixed.append(1) or real_mixup(*a))
    monkeypatch.setattr(training, "balanced_sampler", lambda *a: sampled.append(1) or real_sampler(*a))
    fit(tiny(epochs=1), prepare(tiny(epochs=1)))
    assert not mixed and not sampled
    cfg = tiny(epochs=1, mixup_alpha=0.3, balanced_sampler=True)
    fit(cfg, prepare(cfg))
    assert mixed and sampled


def test_flags_change_what_is_trained(tiny):
    data = prepare(tiny())
    base = fit(tiny(epochs=1), data).history  # one epoch's losses already differ
    for flag in [dict(class_weight_loss=True), dict(focal_loss=True), dict(label_smoothing=0.1),
                 dict(use_bn=True), dict(dropout=0.5), dict(lr=1e-2), dict(batch_size=8)]:
        assert fit(tiny(epochs=1, **flag), data).history != base, flag


def test_resnet18_takes_one_channel(tiny):
    cfg = tiny(model="resnet18", epochs=1, batch_size=64)
    res = fit(cfg, prepare(cfg))
    assert res.model.conv1.in_channels == 1 and res.best_epoch == 1


def test_a_nan_loss_fails_the_run_and_keeps_what_was_logged(tiny, monkeypatch, tracking_uri, experiment, tmp_path):
    cfg = tiny(epochs=3)
    batches_per_epoch = math.ceil(len(prepare(cfg).split.train) / cfg.batch_size)
    real_build = training.build_loss

    def poisoned(cfg, labels, k):
        crit, w = real_build(cfg, labels, k)
        calls = {"n": 0}

        class Nan(torch.nn.Module):
            def forward(self, logits, y):
                calls["n"] += 1
                loss = crit(logits, y)
                return loss * float("nan") if calls["n"] > batches_per_epoch + 1 else loss  # 2nd epoch
        return Nan(), w
    monkeypatch.setattr(training, "build_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="epoch 2"):
        training.run(cfg, experiment, tracking_uri, out_dir=tmp_path)
    c = tracking.client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    (run,) = c.search_runs([exp.experiment_id])
    assert run.info.status == "FAILED"
    assert "NonFiniteLossError" in run.data.tags["harness.failure_reason"]
    assert [m.step for m in c.get_metric_history(run.info.run_id, "val_f1_macro")] == [1]


def test_each_fold_of_a_repeat_trains_from_its_own_seed_on_the_repeats_split():
    # Folds that shared the repeat's seed started from the same weights, which tied their errors together.
    cfg = RunConfig(cv_folds=4, seed=3)
    seeds = [training.train_seed(cfg.replace(fold=k)) for k in range(4)]
    assert len(set(seeds)) == 4 and cfg.seed not in seeds
    assert seeds == [training.train_seed(cfg.replace(fold=k)) for k in range(4)]  # deterministic
    assert training.train_seed(cfg.replace(seed=4, fold=0)) != seeds[0]
    assert training.train_seed(RunConfig(seed=3)) == 3  # one split: the seed itself
    torch.manual_seed(seeds[0])
    w0 = torch.nn.Linear(4, 2).weight
    torch.manual_seed(seeds[1])
    assert not torch.equal(w0, torch.nn.Linear(4, 2).weight)
