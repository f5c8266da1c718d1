"""Each clip's features are extracted once: cached by the clip's content and the front-end's parameters,
so a pooled corpus, a label filter or an added corpus extracts only clips never seen; a changed
parameter is a miss and a damaged entry is extracted again. Extraction shared with spawned processes
gives the same bits as in-process, and an unreadable clip there is still one line naming the file."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from harness.corpora.load import load_corpus
from harness.errors import DataError
from harness.train import clipcache, extract, features
from harness.train.features import compute_features
from harness.train.frontends import extraction_status, ssl
from harness.train.frontends.functionals import functionals

LOGMEL = (16000, 32, 512, 256)  # sr, n_mels, n_fft, hop_length: cheap


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    """A RAVDESS-layout corpus (2 actors) and a TurEV-layout one of other voices (seed 1)."""
    from harness.train.synth import generate_corpus

    d = tmp_path_factory.mktemp("pool")
    return (generate_corpus(d / "ravdess", n_actors=2, seed=0),
            generate_corpus(d / "turev", n_actors=2, seed=1, layout="turev"))


@pytest.fixture
def decodes(monkeypatch):
    """Extracted in this process, every clip decoded for log-mel counted."""
    monkeypatch.setenv("HARNESS_EXTRACT_WORKERS", "1")
    seen = []
    real = features.read_audio

    def counting(path):
        seen.append(path)
        return real(path)
    monkeypatch.setattr(features, "read_audio", counting)
    return seen


def logmel(corpus, cache_dir):
    return compute_features(corpus, *LOGMEL, cache_dir)


def rows_of(corpus, x) -> dict:
    return {c.sha1: x[i] for i, c in enumerate(corpus.clips)}


def test_a_corpus_pooled_with_a_cached_one_extracts_only_the_new_clips(two_corpora, tmp_path, decodes):
    ravdess, turev = two_corpora
    cache = tmp_path / "cache"
    alone = load_corpus([ravdess], ["auto"], cache)
    first = logmel(alone, cache)
    assert len(decodes) == len(alone.clips)

    decodes.clear()
    pooled = load_corpus([ravdess, turev], ["auto", "auto"], cache)
    both = logmel(pooled, cache)
    new = [c for c in pooled.clips if c.corpus == "turev"]
    assert 0 < len(new) < len(pooled.clips)
    assert sorted(map(str, decodes)) == sorted(str(c.path) for c in new)  # each new clip once, no other
    cached = rows_of(alone, first)
    assert all(torch.equal(x, cached[c.sha1]) for c, x in zip(pooled.clips, both) if c.corpus == "ravdess")

    decodes.clear()  # the other way round: every clip is cached now
    assert torch.equal(logmel(load_corpus([ravdess, turev], ["auto", "auto"], cache), cache), both)
    assert decodes == []


def test_a_label_filter_extracts_nothing_new_and_gives_the_same_rows(two_corpora, tmp_path, decodes):
    ravdess, _ = two_corpora
    cache = tmp_path / "cache"
    full = load_corpus([ravdess], ["auto"], cache)
    everything = rows_of(full, logmel(full, cache))
    decodes.clear()
    some = load_corpus([ravdess], ["auto"], cache, keep=["angry", "sad"])
    x = logmel(some, cache)
    assert decodes == [] and 0 < len(some.clips) < len(full.clips)
    assert all(torch.equal(row, everything[c.sha1]) for c, row in zip(some.clips, x))


def test_a_changed_parameter_is_a_miss_and_a_damaged_entry_is_extracted_again(two_corpora, tmp_path, decodes):
    ravdess, _ = two_corpora
    cache = tmp_path / "cache"
    corpus = load_corpus([ravdess], ["auto"], cache)
    first = logmel(corpus, cache)
    decodes.clear()
    compute_features(corpus, 16000, 16, 512, 256, cache)  # n_mels 16: every clip again
    assert len(decodes) == len(corpus.clips)

    entry = clipcache.ClipCache(cache, {"frontend": "logmel", **features.feature_params(*LOGMEL)})
    victim = corpus.clips[3]
    entry.path(victim.sha1).write_bytes(entry.path(victim.sha1).read_bytes()[:100])  # cut short
    decodes.clear()
    assert torch.equal(logmel(corpus, cache), first)
    assert decodes == [victim.path]


def test_a_corpus_cached_before_per_clip_entries_is_read_and_seeds_them(two_corpora, tmp_path, decodes):
    ravdess, turev = two_corpora
    cache = tmp_path / "cache"
    corpus = load_corpus([ravdess], ["auto"], cache)
    x = logmel(corpus, None)
    params = features.feature_params(*LOGMEL)
    old = cache / "features" / f"{features.cache_key(corpus, params)}.npy"  # the layout before: one array a corpus
    old.parent.mkdir(parents=True)
    np.save(old, x.numpy())
    decodes.clear()
    assert torch.equal(logmel(corpus, cache), x) and decodes == []
    pooled = load_corpus([ravdess, turev], ["auto", "auto"], cache)
    logmel(pooled, cache)
    # RAVDESS's clips came from the old array: only TurEV's are extracted
    assert sorted(map(str, decodes)) == sorted(str(c.path) for c in pooled.clips if c.corpus == "turev")


def test_the_dry_run_line_counts_the_clips_already_cached(two_corpora, tmp_path, monkeypatch):
    from harness.config import RunConfig

    monkeypatch.setenv("HARNESS_EXTRACT_WORKERS", "1")
    ravdess, _ = two_corpora
    cache = tmp_path / "cache"
    corpus = load_corpus([ravdess], ["auto"], cache)
    few = load_corpus([ravdess], ["auto"], cache, keep=["angry"])
    cfg = RunConfig(features="egemaps", model="linear")
    functionals(type(few)(root=few.root, clips=few.clips[:6], fingerprint="six"), "egemaps", cache)
    line = extraction_status(cfg, corpus.fingerprint, len(corpus.clips), cache, corpus.clips)
    assert line.startswith(f"egemaps: {len(corpus.clips) - 6} clips to extract once (6 of {len(corpus.clips)} "
                           f"already cached), about ")  # the rate measured on the six
    line = extraction_status(cfg, "six", 6, cache, few.clips[:6])
    assert line.startswith("egemaps: cached for this corpus (every clip")


def test_an_encoder_reads_a_filtered_or_pooled_corpus_s_cached_clips_without_loading_again(
        two_corpora, tmp_path, monkeypatch):
    ravdess, turev = two_corpora
    cache = tmp_path / "cache"
    ckpt = ssl.tiny_checkpoint("wavlm_base", tmp_path / "tiny.pt")
    corpus = load_corpus([ravdess], ["auto"], cache, keep=["calm", "happy", "sad", "angry"])
    cpu = torch.device("cpu")
    store, _ = ssl.encoder_frames(corpus, "wavlm_base", str(ckpt), None, cache, cpu)
    some = load_corpus([ravdess], ["auto"], cache, keep=["angry", "sad"])
    embedded = []
    real = ssl.Embedder.__call__
    monkeypatch.setattr(ssl.Embedder, "__call__", lambda self, path: embedded.append(path) or real(self, path))
    sub, _ = ssl.encoder_frames(some, "wavlm_base", str(ckpt), 2, cache, cpu)
    assert embedded == [] and sub.n_layers == 1
    where = {c.sha1: i for i, c in enumerate(corpus.clips)}
    assert all(np.array_equal(sub.clip(j), store.clip(where[c.sha1])[:, 1:2]) for j, c in enumerate(some.clips))
    pooled = load_corpus([ravdess, turev], ["auto", "auto"], cache)
    both, _ = ssl.encoder_frames(pooled, "wavlm_base", str(ckpt), None, cache, cpu)
    assert sorted(map(str, embedded)) == sorted(str(c.path) for c in pooled.clips if c.corpus == "turev")
    mean, std = both.frame_stats(range(len(pooled.clips)))
    assert mean.shape == std.shape == (both.n_layers, both.dim) and np.isfinite(mean).all()
    m1, m2 = both.moments()
    assert m1[0].shape == (both.n_layers, both.dim) and m2[0].shape == (both.n_layers, both.n_layers, both.dim)


@pytest.fixture
def parallel(monkeypatch):
    """Two processes, shared from the first clips on, one clip a chunk, the chunks queued for the spawned
    worker left to it however long it takes to start. Returns the clips this process decoded."""
    from harness.corpora import base

    monkeypatch.setenv("HARNESS_EXTRACT_WORKERS", "2")
    monkeypatch.setattr(extract, "PARALLEL_AFTER_SECONDS", 0.0)
    monkeypatch.setattr(extract, "CHUNK_SECONDS", 0.0)
    monkeypatch.setattr(extract, "TAKE_BACK", False)
    here, read = [], base.read_audio

    def recorded(path):
        here.append(path)
        return read(path)
    monkeypatch.setattr(features, "read_audio", recorded)
    monkeypatch.setattr(base, "read_audio", recorded)  # functionals' (read from there when called)
    return here


def test_extraction_shared_with_a_spawned_process_gives_the_same_bits_as_in_process(
        two_corpora, tmp_path, monkeypatch, parallel):
    ravdess, _ = two_corpora
    corpus = load_corpus([ravdess], ["auto"], tmp_path / "c", keep=["angry"])
    small = type(corpus)(root=corpus.root, clips=corpus.clips[:8], fingerprint="eight")
    shared_logmel = logmel(corpus, tmp_path / "c").numpy()  # written by each process into the cache
    assert 0 < len(parallel) < len(corpus.clips)  # the worker extracted the others
    meta = clipcache.ClipCache(tmp_path / "c", {"frontend": "logmel", **features.feature_params(*LOGMEL)}).meta()
    assert meta["processes"] == 2
    parallel.clear()
    shared_egemaps, _ = functionals(small, "egemaps", None)  # returned by the worker: no cache
    assert 0 < len(parallel) < len(small.clips)

    monkeypatch.undo()
    monkeypatch.setenv("HARNESS_EXTRACT_WORKERS", "1")
    assert np.array_equal(logmel(corpus, None).numpy(), shared_logmel)
    assert np.array_equal(functionals(small, "egemaps", None)[0], shared_egemaps)


def test_an_unreadable_clip_in_a_spawned_process_is_one_line_naming_the_file(two_corpora, tmp_path, parallel):
    ravdess, _ = two_corpora
    copy = tmp_path / "copy"
    shutil.copytree(ravdess, copy)
    corpus = load_corpus([copy], ["auto"], None)
    victim = corpus.clips[-1].path  # the last clip: the first a worker takes (they work from the back)
    victim.write_bytes(b"RIFF, but not audio" * 10)
    with pytest.raises(DataError) as e:
        logmel(load_corpus([copy], ["auto"], None), tmp_path / "cache")
    assert victim not in parallel  # found by the worker
    assert str(victim) in str(e.value) and "\n" not in str(e.value) and "Traceback" not in str(e.value)


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_worker_count_that_is_not_a_positive_number_is_one_line_naming_the_variable(monkeypatch, value):
    from harness.errors import HarnessError

    monkeypatch.setenv("HARNESS_EXTRACT_WORKERS", value)
    with pytest.raises(HarnessError, match=f"invalid HARNESS_EXTRACT_WORKERS='{value}': expected a number"):
        extract.workers_wanted()
    monkeypatch.setenv("HARNESS_EXTRACT_WORKERS", "3")
    assert extract.workers_wanted() == 3


def _wanted_in_pool_worker(_):
    from harness.train.extract import workers_wanted

    return workers_wanted()


def test_a_pool_s_worker_extracts_in_its_own_process_since_a_daemon_may_not_have_children(monkeypatch):
    import multiprocessing

    monkeypatch.setenv("HARNESS_EXTRACT_WORKERS", "2")
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.map(_wanted_in_pool_worker, [0]) == [1]
