"""The run configuration: seed defaults, one flag per field, validation, hashing."""
from __future__ import annotations

import dataclasses

import pytest

from harness.cli import build_parser, config_from_args
from harness.config import RunConfig
from harness.errors import ConfigError

SEED_FLAGS = ["data_root", "mode", "model", "train_ratio", "val_ratio", "batch_size", "epochs", "sr", "n_mels",
              "n_fft", "hop_length", "class_weight_loss", "focal_loss", "focal_gamma", "label_smoothing", "dropout",
              "use_bn", "use_specaug", "specaug_freq", "specaug_time", "mixup_alpha", "balanced_sampler", "lr"]


def parse(*argv: str) -> RunConfig:
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_defaults_follow_the_seed_and_every_improvement_is_opt_in():
    cfg = parse()
    assert (cfg.model, cfg.mode, cfg.train_ratio, cfg.val_ratio, cfg.batch_size) == ("smallcnn", "sentiment", 0.8, 0.1, 16)
    assert (cfg.sr, cfg.n_mels, cfg.n_fft, cfg.hop_length) == (22050, 128, 1024, 512)
    assert (cfg.specaug_freq, cfg.specaug_time) == (8, 20)
    assert not any([cfg.class_weight_loss, cfg.focal_loss, cfg.use_bn, cfg.use_specaug, cfg.balanced_sampler])
    assert cfg.dropout == 0.0 and cfg.label_smoothing == 0.0 and cfg.mixup_alpha == 0.0
    assert cfg.split == "actor" and cfg.data_root is None


def test_every_seed_flag_exists_with_the_same_name():
    assert set(SEED_FLAGS) <= set(RunConfig.field_names())
    cfg = parse("--data_root", "/d", "--mode", "emotion", "--model", "resnet18", "--train_ratio", "0.7",
                "--val_ratio", "0.15", "--batch_size", "8", "--epochs", "3", "--sr", "16000", "--n_mels", "64",
                "--n_fft", "512", "--hop_length", "256", "--class_weight_loss", "--focal_loss", "--focal_gamma",
                "1.5", "--label_smoothing", "0.05", "--dropout", "0.3", "--use_bn", "--use_specaug",
                "--specaug_freq", "12", "--specaug_time", "30", "--mixup_alpha", "0.3", "--balanced_sampler",
                "--lr", "5e-4")
    assert cfg == RunConfig(data_root="/d", mode="emotion", model="resnet18", train_ratio=0.7, val_ratio=0.15,
                            batch_size=8, epochs=3, sr=16000, n_mels=64, n_fft=512, hop_length=256,
                            class_weight_loss=True, focal_loss=True, focal_gamma=1.5, label_smoothing=0.05,
                            dropout=0.3, use_bn=True, use_specaug=True, specaug_freq=12, specaug_time=30,
                            mixup_alpha=0.3, balanced_sampler=True, lr=5e-4)


@pytest.mark.parametrize("values, key", [
    ({"train_ratio": 0.9, "val_ratio": 0.1}, "val_ratio"),
    ({"lr": 0.0}, "lr"), ({"lr": -1e-3}, "lr"),
    ({"epochs": 0}, "epochs"), ({"batch_size": -4}, "batch_size"),
    ({"focal_gamma": -0.5}, "focal_gamma"),
    ({"label_smoothing": 1.0}, "label_smoothing"), ({"label_smoothing": -0.1}, "label_smoothing"),
    ({"hop_length": 2048, "n_fft": 1024}, "hop_length"),
    ({"mode": "valence"}, "mode"), ({"model": "vgg"}, "model"),
    ({"epochs": 2.5}, "epochs"), ({"lr": "fast"}, "lr"), ({"use_bn": "yes"}, "use_bn"),
])
def test_invalid_values_are_rejected_naming_the_key(values, key):
    with pytest.raises(ConfigError) as err:
        RunConfig(**values)
    assert err.value.key == key


def test_unknown_keys_get_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'focal_gamma'"):
        RunConfig.from_dict({"focal_gama": 2.0})


def test_the_hash_changes_with_what_is_computed_not_with_where_or_which_seed():
    a = RunConfig()
    assert a.config_hash == RunConfig().config_hash
    assert a.config_hash != a.replace(lr=5e-4).config_hash
    assert a.config_hash == a.replace(device="cpu", data_root="/elsewhere", seed=3).config_hash


def test_params_hold_the_whole_config():
    cfg = RunConfig(focal_loss=True)
    params = cfg.to_params()
    assert set(params) == {f.name for f in dataclasses.fields(RunConfig)}
    assert params["focal_loss"] == "True" and params["lr"] == "0.001"


def test_ints_are_accepted_where_floats_are_expected():
    assert RunConfig(lr=1, label_smoothing=0).lr == 1.0


def test_fields_added_later_leave_the_hash_of_an_existing_cell_alone():
    # Hashes of configs written before corpus, labels, label_map, protocol and test_corpus existed (commit 25ab850):
    # a suite resumed after the upgrade finds its finished cells instead of training them again.
    assert RunConfig().config_hash == "52c983723513cfbd"
    assert RunConfig(cv_folds=4, class_weight_loss=True).config_hash == "82ce1ed006a4cb80"
    assert RunConfig(corpus="cremad").config_hash != RunConfig().config_hash  # a new field set is hashed


def test_a_yaml_list_of_labels_and_mapping_of_labels_read_as_their_text_forms():
    cfg = RunConfig.from_dict({"labels": ["angry", "sad"], "label_map": {"calm": "neutral"}})
    assert (cfg.labels, cfg.label_map) == ("angry,sad", "calm=neutral")
    assert cfg.keep_labels == ("angry", "sad") and cfg.label_mapping == {"calm": "neutral"}
