"""Log-mel features: fixed shape, cached on disk, invalidated by any change."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from harness.train import features
from harness.corpora.load import load_corpus


def scan_corpus(root, cache_dir=None):
    return load_corpus([root], ['auto'], cache_dir)
from harness.train.features import CLIP_SECONDS, SpecAugment, compute_features, fix_length, mixup, n_frames


def test_every_clip_becomes_the_same_shape(synth_root, cache_dir):
    corpus = scan_corpus(synth_root, cache_dir)
    x = compute_features(corpus, 22050, 32, 1024, 512, cache_dir)
    assert x.shape == (300, 1, 32, n_frames(22050, 512)) == (300, 1, 32, 130)
    assert torch.isfinite(x).all()


def test_crop_is_centred_and_pad_is_at_the_end():
    assert fix_length(torch.arange(10.0), 4).tolist() == [3.0, 4.0, 5.0, 6.0]
    assert fix_length(torch.ones(3), 5).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_a_repeat_run_reads_the_cache_without_decoding_audio(synth_root, cache_dir, monkeypatch):
    corpus = scan_corpus(synth_root, cache_dir)
    first = compute_features(corpus, 22050, 32, 1024, 512, cache_dir)

    def no_decoding(path):
        raise AssertionError(f"cache miss: decoded {path}")
    monkeypatch.setattr(features, "read_audio", no_decoding)
    assert torch.equal(compute_features(corpus, 22050, 32, 1024, 512, cache_dir), first)
    with pytest.raises(AssertionError, match="cache miss"):  # any feature parameter is part of the key
        compute_features(corpus, 22050, 32, 1024, 256, cache_dir)


def test_a_changed_file_is_a_cache_miss(synth_root, tmp_path, cache_dir):
    copy = tmp_path / "c"
    shutil.copytree(synth_root, copy)
    before = compute_features(scan_corpus(copy, cache_dir), 22050, 32, 1024, 512, cache_dir)
    victim = sorted(copy.glob("Actor_01/*.wav"))[0]
    sf.write(victim, np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    after = compute_features(scan_corpus(copy, cache_dir), 22050, 32, 1024, 512, cache_dir)
    assert not torch.equal(before[0], after[0]) and torch.equal(before[1:], after[1:])


def test_stereo_short_and_silent_clips_are_handled(tmp_path, cache_dir):
    root = tmp_path / "odd" / "Actor_01"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sf.write(root / "03-01-01-01-01-01-01.wav", rng.normal(0, 0.1, (48000 * 4, 2)).astype(np.float32), 48000)
    sf.write(root / "03-01-02-01-01-01-01.wav", rng.normal(0, 0.1, 800).astype(np.float32), 16000)  # 50 ms
    sf.write(root / "03-01-03-01-01-01-01.wav", np.zeros(44100, dtype=np.float32), 44100)
    x = compute_features(scan_corpus(root.parent), 22050, 32, 1024, 512, None)
    assert x.shape == (3, 1, 32, 130) and torch.isfinite(x).all()
    assert CLIP_SECONDS == 3.0


def test_specaugment_masks_bands_and_frames():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 32, 130)
    y = SpecAugment(8, 20)(x)
    masked = y == x.min()
    assert masked.any() and not masked.all()
    assert torch.equal(SpecAugment(0, 0)(x), x)


def test_mixup_is_a_convex_combination():
    torch.manual_seed(0)
    x, y = torch.randn(6, 1, 4, 5), torch.arange(6)
    xm, ya, yb, lam = mixup(x, y, 0.4, torch.Generator().manual_seed(0))
    assert 0.0 <= lam <= 1.0 and torch.equal(ya, y)
    perm = [int((y == v).nonzero()) for v in yb]
    assert torch.allclose(xm, lam * x + (1 - lam) * x[perm])


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000, 22000])  # 22000: 440-sample blocks, an odd reach
def test_a_clip_cut_before_resampling_has_the_features_of_one_resampled_whole_then_cut(rate):
    import torchaudio

    extractor = features.LogMel(22050, 32, 1024, 512)
    whole = torchaudio.transforms.Resample(rate, 22050)
    rng = np.random.default_rng(rate)
    for seconds in (0.3, 2.9, 3.0, 3.07, 5.0, 10.0):
        samples = rng.normal(0, 0.1, int(round(seconds * rate))).astype(np.float32)
        expected = extractor.to_db(extractor.mel(fix_length(whole(torch.from_numpy(samples)), extractor.length)))
        assert torch.equal(extractor(samples, rate), expected), f"{seconds} s at {rate} Hz"


def test_a_long_clip_is_cut_to_about_clip_seconds_before_resampling():
    import torchaudio

    resampler = torchaudio.transforms.Resample(48000, 22050)
    length = int(CLIP_SECONDS * 22050)
    cut, skip = features.cut_for_resampling(torch.zeros(48000 * 10), resampler, length)
    assert CLIP_SECONDS * 48000 < cut.shape[-1] < (CLIP_SECONDS + 0.05) * 48000 and skip > 0
    short = torch.zeros(48000 * 3)  # exactly CLIP_SECONDS: nothing to cut
    cut, skip = features.cut_for_resampling(short, resampler, length)
    assert cut is short and skip == 0


@pytest.mark.parametrize("channels,subtype", [(1, "PCM_16"), (2, "PCM_16"), (3, "PCM_16"), (2, "PCM_24"),
                                              (2, "FLOAT")])
def test_a_clip_reads_as_the_mean_of_its_channels_as_soundfile_decodes_them_to_the_bit(tmp_path, channels, subtype):
    from harness.corpora.base import read_audio

    path = tmp_path / "multi.wav"
    noise = np.random.default_rng(channels).normal(0, 0.3, (4410, channels)).clip(-1, 1)
    sf.write(path, noise, 44100, subtype=subtype)
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    mono, rate = read_audio(path)
    assert rate == 44100 and mono.dtype == np.float32 and np.array_equal(mono, data.mean(axis=1))
