"""The corpus: RAVDESS names, labels, fingerprint and speaker-independent splits."""
from __future__ import annotations

import numpy as np
import pytest

from harness.config import RunConfig
from harness.corpora.base import EMOTIONS, SENTIMENT_OF_EMOTION, SENTIMENTS
from harness.corpora.load import load_corpus
from harness.corpora.ravdess import parse_name
from harness.errors import DataError
from harness.train.splits import make_split


def scan_corpus(root, cache_dir=None):
    return load_corpus([root], ["auto"], cache_dir)


def split(corpus, kind, train_ratio, val_ratio, seed, mode):
    return make_split(corpus, RunConfig(split=kind, train_ratio=train_ratio, val_ratio=val_ratio, seed=seed, mode=mode))


def test_names_are_parsed_field_by_field():
    e = parse_name("Actor_12/03-01-05-02-01-02-12.wav")
    assert (e.label, e.intensity, e.sentence, e.speaker, e.gender) == ("angry", "strong", "1", "12", "f")


def test_song_clips_are_skipped_and_bad_names_refused():
    assert parse_name("03-02-05-02-01-02-12.wav") is None
    for bad in ["03-01-09-01-01-01-01.wav", "01-01-01-01-01-01-01.wav", "3-1-1-1-1-1-1.wav", "x.wav"]:
        with pytest.raises(DataError, match="malformed"):
            parse_name(bad)


def test_sentiment_groups_every_emotion_of_the_shared_vocabulary_once():
    assert set(SENTIMENT_OF_EMOTION) == set(EMOTIONS)
    assert {e for e, s in SENTIMENT_OF_EMOTION.items() if s == "neutral"} == {"neutral", "calm"}
    assert {e for e, s in SENTIMENT_OF_EMOTION.items() if s == "positive"} == {"happy", "surprised"}
    assert {e for e, s in SENTIMENT_OF_EMOTION.items() if s == "negative"} == {"sad", "angry", "fearful", "disgust",
                                                                                "boredom"}
    assert SENTIMENTS == ("neutral", "positive", "negative")


def test_scan_finds_every_clip_with_a_stable_content_fingerprint(synth_root, cache_dir):
    a = scan_corpus(synth_root, cache_dir)
    b = scan_corpus(synth_root, None)  # without the hash cache: same content, same fingerprint
    assert len(a.clips) == 5 * 60 and a.speakers == [f"ravdess:0{i}" for i in range(1, 6)]
    assert a.fingerprint == b.fingerprint
    assert np.bincount(a.labels("sentiment")).tolist() == [5 * 12, 5 * 16, 5 * 32]


def test_a_changed_file_changes_the_fingerprint(synth_root, tmp_path, cache_dir):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(synth_root, copy)
    before = scan_corpus(copy, cache_dir).fingerprint
    victim = next(copy.glob("Actor_01/*.wav"))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert scan_corpus(copy, cache_dir).fingerprint != before


def test_actor_split_is_disjoint_covering_and_seeded(synth_root):
    corpus = scan_corpus(synth_root)
    actor = np.array([c.speaker for c in corpus.clips])
    s = split(corpus, "actor", 0.6, 0.2, seed=0, mode="sentiment")
    sets = [set(actor[s.train]), set(actor[s.val]), set(actor[s.test])]
    assert all(sets) and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sorted(np.concatenate([s.train, s.val, s.test]).tolist()) == list(range(len(corpus.clips)))
    again = split(corpus, "actor", 0.6, 0.2, seed=0, mode="emotion")  # labels do not move actors
    assert s.test_speakers == again.test_speakers and s.val_speakers == again.val_speakers
    others = {split(corpus, "actor", 0.6, 0.2, seed=k, mode="sentiment").test_speakers for k in range(10)}
    assert len(others) > 1


def test_random_split_is_stratified(synth_root):
    corpus = scan_corpus(synth_root)
    y = corpus.labels("sentiment")
    s = split(corpus, "random", 0.8, 0.1, seed=0, mode="sentiment")
    assert len(set(s.train) & set(s.test)) == 0
    share = np.bincount(y[s.test], minlength=3) / len(s.test)
    assert np.allclose(share, np.bincount(y) / len(y), atol=0.05)
