"""The synthetic corpus: RAVDESS layout by default, deterministic, learnable but not trivial."""
from __future__ import annotations

import hashlib

import pytest

from harness.config import RunConfig
from harness.train import run as training
from harness.corpora.ravdess import parse_name
from harness.train.synth import generate_corpus, is_complete


def digest(root) -> str:
    h = hashlib.sha1()
    for p in sorted(root.rglob("*.wav")):
        h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_layout_is_ravdess_speech(synth_root):
    files = sorted(synth_root.rglob("*.wav"))
    assert len(files) == 300
    for p in files:
        entry = parse_name(p.relative_to(synth_root).as_posix())
        assert entry is not None and p.parent.name == f"Actor_{entry.speaker}"
    assert is_complete(synth_root, 5, 0, 16000)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = generate_corpus(tmp_path / "a", n_actors=1, seed=7)
    b = generate_corpus(tmp_path / "b", n_actors=1, seed=7)
    c = generate_corpus(tmp_path / "c", n_actors=1, seed=8)
    assert digest(a) == digest(b) != digest(c)


@pytest.mark.slow
def test_classes_are_learnable_but_not_trivial(cache_dir):
    """The embedded default corpus (8 actors), a SmallCNN, an actor-disjoint split:
    clearly above chance (1/3 macro-F1 for 3 balanced classes) and clearly below 1."""
    scores = []
    for seed in (0, 1):
        cfg = RunConfig(n_mels=64, epochs=8, batch_size=32, lr=2e-3, class_weight_loss=True, seed=seed,
                        device="cpu", train_ratio=0.6, val_ratio=0.2)
        data = training.prepare(cfg)
        fit = training.fit(cfg, data)
        scores.append(training.score_test(fit.model, data, fit.norm, training.resolve_device("cpu"))["f1_macro"])
    mean = sum(scores) / len(scores)
    assert 0.45 < mean < 0.95, scores


# --- the data kind comes from the data ------------------------------------------------

def test_a_synth_folder_is_synthetic_wherever_it_lies_and_a_copy_without_its_marker_is_not(synth_root, tmp_path,
                                                                                           tiny):
    import shutil

    from harness.train.synth import is_synthetic

    assert is_synthetic(synth_root)  # passed with --data_root, not the cached default
    assert training.prepare(tiny()).synthetic
    plain = tmp_path / "corpus"
    shutil.copytree(synth_root, plain, ignore=shutil.ignore_patterns(".complete", ".in_progress"))
    assert not is_synthetic(plain) and not training.prepare(tiny(data_root=str(plain))).synthetic


def test_a_synthetic_corpus_under_data_root_is_reported_as_synthetic(tmp_path, synth_root, tracking_uri, experiment):
    import yaml

    from harness import tracking
    from harness.report import render, runs
    from harness.suite.file import load_suite
    from harness.suite.runner import run_suite

    doc = {"name": "kind", "seeds": [0, 1],
           "base": {"model": "smallcnn", "n_mels": 32, "epochs": 1, "batch_size": 64, "train_ratio": 0.6,
                    "val_ratio": 0.2},
           "rows": [{"name": "plain", "config": {}, "claimed_f1": 0.5},
                    {"name": "weighted", "config": {"class_weight_loss": True}, "claimed_f1": 0.6}]}
    (tmp_path / "kind.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    run_suite(load_suite(tmp_path / "kind.yaml"), data_root=str(synth_root), tracking_uri=tracking_uri,
              experiment=experiment, storage=f"sqlite:///{tmp_path / 'q.db'}", progress=False,
              out_dir=str(tmp_path / "art"))
    c = tracking.client(tracking_uri)
    rep = render.suite_report(c, runs.find_experiment(c, experiment))
    assert set(rep.sel.finished["data"]) == {"synthetic"}
    assert rep.table.loc["weighted", "verdict"] == "not comparable: synthetic corpus, not RAVDESS"
    md = render.render_markdown(rep)
    assert "\n- data: synthetic\n" in md
    assert "These runs used the synthetic corpus, not RAVDESS" in md
