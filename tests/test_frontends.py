"""Front-ends other than log-mel, on a fresh machine without weights: a tiny randomly initialised
model of each encoder family through the same extraction, cache, head, tracking and checkpoint;
the switches that cannot apply to a front-end; the no-weights error."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from harness.config import RunConfig
from harness.errors import ConfigError, HarnessError
from harness.train import heads
from harness.train import run as training
from harness.train.frontends import ssl

FAMILIES = ("wav2vec2_base", "hubert_base", "wavlm_base")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("encoders")
    return {name: ssl.tiny_checkpoint(name, d / f"{name}.pt") for name in FAMILIES}


@pytest.fixture
def head_cfg(tiny, checkpoints):
    def make(features: str = "wavlm_base", **overrides) -> RunConfig:
        base = dict(features=features, model="mlp", n_mels=128, lr=0.01,
                    encoder_checkpoint=str(checkpoints[features]))
        return tiny(**{**base, **overrides})
    return make


@pytest.mark.parametrize("family", FAMILIES)
def test_each_encoder_family_trains_a_tracked_head_and_records_encoder_weights_and_layers(
        family, head_cfg, checkpoints, tracking_uri, experiment, tmp_path):
    import mlflow

    cfg = head_cfg(family)
    res = training.run(cfg, experiment=experiment, tracking_uri=tracking_uri, out_dir=tmp_path)
    assert 0.0 <= res["test_f1_macro"] <= 1.0
    tags = mlflow.tracking.MlflowClient(tracking_uri).get_run(res["run_id"]).data.tags
    assert tags["harness.encoder"] == family
    assert tags["harness.encoder_sha256"] == hashlib.sha256(checkpoints[family].read_bytes()).hexdigest()
    assert tags["harness.encoder_layers"] == f"weighted sum of layers 1..{ssl.TINY['encoder_num_layers']}"
    assert len(tags["harness.layer_weights"].split()) == ssl.TINY["encoder_num_layers"]
    # The checkpoint rebuilds the same head: same test predictions.
    model, ckpt = training.load_checkpoint(tmp_path / "best_model.pt")
    data = training.prepare(cfg)
    again = training.score_test(model, data, ckpt["norm"], torch.device("cpu"))
    assert again["f1_macro"] == pytest.approx(res["test_f1_macro"])


def test_same_seed_same_numbers_on_an_encoder_head_with_every_switch(head_cfg):
    cfg = head_cfg(model="linear", use_specaug=True, specaug_freq=4, specaug_time=5, mixup_alpha=0.2,
                   class_weight_loss=True, focal_loss=True, label_smoothing=0.1, dropout=0.2, balanced_sampler=True)
    data = training.prepare(cfg)
    a, b = training.fit(cfg, data), training.fit(cfg, data)
    assert a.history == b.history
    assert [h["train_loss"] for h in a.history] != [h["train_loss"] for h in training.fit(
        cfg.replace(seed=1), data).history]


def test_a_cached_corpus_is_read_without_the_encoder_and_one_layer_comes_from_the_all_layers_store(
        head_cfg, monkeypatch):
    cfg = head_cfg()
    training.prepare(cfg)  # extracts (or finds) every layer

    def no_encoder(*a, **k):
        raise AssertionError("the encoder was loaded although the corpus is cached")

    monkeypatch.setattr(ssl, "load_encoder", no_encoder)
    assert training.prepare(cfg).features.n_layers == ssl.TINY["encoder_num_layers"]
    one = training.prepare(cfg.replace(layer=2))
    assert one.features.n_layers == 1
    assert one.frontend_tags["harness.encoder_layers"] == f"layer 2 of 1..{ssl.TINY['encoder_num_layers']}"


def test_a_layer_the_encoder_does_not_have_is_one_line(head_cfg):
    with pytest.raises(HarnessError, match=r"invalid --layer 9: wavlm_base has transformer layers 1\.\.2"):
        training.prepare(head_cfg(layer=9))


def test_a_checkpoint_of_another_family_is_refused_naming_it(head_cfg, checkpoints):
    with pytest.raises(HarnessError, match="do not fit wavlm_base"):
        training.prepare(head_cfg(encoder_checkpoint=str(checkpoints["wav2vec2_base"])))


def test_no_weights_is_one_line_naming_the_encoder_where_it_looked_and_how_to_get_them_exit_2(
        tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(ssl, "URL_BASE", "http://127.0.0.1:9/")  # refused at once, whatever the network
    db = tmp_path / "mlflow.db"
    rc = main(["train", "--features", "wavlm_large", "--model", "mlp", "--tracking_uri", f"sqlite:///{db}"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "wavlm_large" in err and str(tmp_path / "torch") in err and "--encoder_checkpoint" in err
    assert not db.exists() and not (tmp_path / "torch").exists()  # nothing created


def test_an_encoder_checkpoint_that_is_not_a_file_is_one_line(tiny):
    with pytest.raises(HarnessError, match="invalid --encoder_checkpoint /nonexistent.pt: no such file"):
        training.prepare(tiny(features="hubert_base", model="linear", n_mels=128,
                              encoder_checkpoint="/nonexistent.pt"))


def test_a_corrupt_encoder_checkpoint_is_one_line_exit_2_before_any_work(tmp_path, synth_root, capsys):
    from harness.cli import main

    corrupt = tmp_path / "x.pth"
    corrupt.write_bytes(bytes(range(1, 256)) * 40)  # neither a zip archive nor a pickle, as random bytes are
    db = tmp_path / "mlflow.db"
    rc = main(["train", "--features", "wavlm_base", "--model", "mlp", "--encoder_checkpoint", str(corrupt),
               "--data_root", str(synth_root), "--tracking_uri", f"sqlite:///{db}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"invalid --encoder_checkpoint {corrupt}: not a torch checkpoint" in err
    assert not db.exists()  # nothing created: it was refused before any work


def test_a_pickle_torch_cannot_load_is_one_line_too(tmp_path, tiny):
    # past the cheap check (a pickle's first byte), torch's several-line refusal is cut to its first line
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"\x80\x02" + bytes(range(1, 200)))
    with pytest.raises(HarnessError, match="invalid --encoder_checkpoint .*broken.pth: not a torch checkpoint") as e:
        ssl.load_encoder("wavlm_base", broken)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("settings, flag", [
    ({"features": "egemaps", "model": "linear", "use_specaug": True}, "use_specaug"),
    ({"features": "compare", "model": "mlp", "layer": 3}, "layer"),
    ({"features": "egemaps", "model": "smallcnn"}, "model"),
    ({"features": "logmel", "model": "linear"}, "model"),
    ({"features": "logmel", "layer": 2}, "layer"),
    ({"features": "wavlm_base", "model": "mlp", "n_mels": 64}, "n_mels"),
    ({"features": "wavlm_base", "model": "mlp", "use_bn": True}, "use_bn"),
    ({"features": "hubert_base", "model": "mlp", "layer": 0}, "layer"),
])
def test_a_switch_that_cannot_apply_to_the_front_end_names_itself(settings, flag):
    with pytest.raises(ConfigError) as e:
        RunConfig(**settings)
    assert e.value.key == flag


def test_a_switch_that_cannot_apply_is_one_line_on_the_command_line_exit_2(capsys):
    from harness.cli import main

    assert main(["train", "--features", "egemaps", "--model", "linear", "--use_specaug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness train: error: invalid --use_specaug:") and err.count("\n") == 1


def test_the_front_end_settings_are_in_the_config_hash_but_the_checkpoint_path_is_not():
    base = RunConfig(features="wavlm_base", model="mlp")
    assert base.config_hash != base.replace(layer=3).config_hash
    assert base.config_hash != base.replace(features="hubert_base").config_hash
    assert base.config_hash == base.replace(encoder_checkpoint="/elsewhere/w.pt").config_hash


def test_a_log_mel_config_hashes_as_before_front_ends_so_finished_cells_still_count():
    hashed = RunConfig(model="resnet18", epochs=5).hashed_dict()
    assert not {"features", "layer", "encoder_checkpoint"} & set(hashed)
    assert RunConfig(model="resnet18", epochs=5, class_weight_loss=True).config_hash == "6d3c6737e3d5024a"  # at 25ab850


def test_statistics_pooling_ignores_padding():
    torch.manual_seed(0)
    head = heads.Head("mlp", 3, dim=4, n_layers=2)
    clip = torch.randn(1, 5, 2, 4)
    padded = torch.cat([clip, torch.randn(1, 3, 2, 4)], 1)
    a = head(heads.Frames(clip, torch.tensor([5])))
    b = head(heads.Frames(padded, torch.tensor([5])))
    assert torch.allclose(a, b, atol=1e-6)


def test_frame_masks_zero_one_time_span_inside_the_clip_and_one_channel_span():
    torch.manual_seed(0)
    x = torch.ones(8, 10, 2, 6)
    lengths = torch.tensor([10, 4, 7, 10, 3, 10, 5, 10])
    out = heads.FrameMasks(channels=3, time=4)(heads.Frames(x, lengths)).x
    for j, n in enumerate(lengths.tolist()):
        zero_frames = (out[j] == 0).all(-1).all(-1)  # every channel of every layer
        assert int(zero_frames.sum()) <= 4 and not zero_frames[n:].any()
        zero_channels = (out[j] == 0).all(0).all(0)
        assert int(zero_channels.sum()) <= 3 or bool(zero_frames.all())
    assert (out == 0).any() and torch.equal(x, torch.ones_like(x))  # masks a copy


def test_float16_storage_does_not_move_a_trained_heads_test_predictions(head_cfg, checkpoints):
    from harness.corpora.base import read_audio

    cfg = head_cfg(epochs=3)
    data = training.prepare(cfg)
    fit = training.fit(cfg, data)
    test = data.split.test
    stored = training.predict(fit.model, heads.model_inputs(data.features, test, fit.norm, torch.device("cpu")))
    model, _ = ssl.load_encoder("wavlm_base", checkpoints["wavlm_base"])
    frames = []
    with torch.inference_mode():
        for i in test:
            samples, _ = read_audio(data.corpus.clips[i].path)  # the synthetic corpus is at 16 kHz already
            hidden, _ = model.extract_features(torch.from_numpy(samples)[None])
            frames.append(torch.stack([h[0] for h in hidden], 1))
    t = max(len(f) for f in frames)
    x = torch.stack([torch.nn.functional.pad(f, (0, 0, 0, 0, 0, t - len(f))) for f in frames])
    lengths = torch.tensor([len(f) for f in frames])
    x = (x - fit.norm[0]) / fit.norm[1]
    x[torch.arange(t)[None] >= lengths[:, None]] = 0.0
    full = training.predict(fit.model, heads.Frames(x, lengths))
    assert torch.equal(full.argmax(1), stored.argmax(1))
    assert torch.allclose(torch.softmax(full, 1), torch.softmax(stored, 1), atol=1e-2)


def test_a_head_gives_the_same_logits_from_the_clips_moments_as_from_their_frames(head_cfg):
    torch.manual_seed(0)
    for layer in (None, 1):  # the learned sum of every layer, and one layer alone
        data = training.prepare(head_cfg(layer=layer))
        store, idx = data.features, data.split.test[:16]
        head = heads.Head("mlp", 3, dim=store.dim, n_layers=store.n_layers)
        if head.layer_logits is not None:
            with torch.no_grad():
                head.layer_logits.copy_(torch.randn(store.n_layers))  # weights far from uniform
        norm = heads.input_norm(store, data.split.train)
        frames = head(heads.model_inputs(store, idx, norm, torch.device("cpu"), frames=True)[:])
        moments = head(heads.model_inputs(store, idx, norm, torch.device("cpu"))[:])
        assert torch.allclose(frames, moments, atol=1e-4), (frames - moments).abs().max()
