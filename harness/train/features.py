"""Log-mel features (computed once, cached on disk) and training-time augmentation.

Every clip becomes `CLIP_SECONDS` of audio at `sr`, whatever its corpus: mono
mix-down, resampled from its own rate (16, 22.05, 44.1, 48 kHz, ...), then
centre-cropped when longer (RAVDESS clips are 3-5 s with silence at both ends)
or zero-padded at the end when shorter (TurEV words are 0.35-2.5 s). At
sr=22050 and hop 512 that is 130 frames. A long clip is cut before it is
resampled (only the centre and the filter's reach are resampled, see
`cut_for_resampling`), so a 10 s clip costs little more than a 3 s one; the
samples kept are those of resampling the whole clip and cutting after.

Each clip's features are cached once (`harness.train.clipcache`), under its content hash and every
feature parameter, so a changed file or parameter is a miss and a pooled corpus, a label filter or
an added corpus extracts only clips never seen; extraction runs in parallel when it pays
(`harness.train.extract`).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from harness.corpora.base import read_audio
from harness.corpora.load import Corpus
from harness.train import clipcache
from harness.train.extract import Recipe

CLIP_SECONDS = 3.0
TOP_DB = 80.0
FEATURE_VERSION = 1  # bump when the computation below changes


def feature_params(sr: int, n_mels: int, n_fft: int, hop_length: int) -> dict:
    return {"sr": sr, "n_mels": n_mels, "n_fft": n_fft, "hop_length": hop_length,
            "clip_seconds": CLIP_SECONDS, "top_db": TOP_DB, "version": FEATURE_VERSION}


def n_frames(sr: int, hop_length: int) -> int:
    return int(round(CLIP_SECONDS * sr)) // hop_length + 1


def cache_key(corpus: Corpus, params: dict) -> str:
    """The key of a corpus-level array (`features/KEY.npy`), what the cache held before per-clip entries."""
    blob = json.dumps({"data": corpus.fingerprint, **params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def fix_length(wave: torch.Tensor, length: int) -> torch.Tensor:
    if wave.shape[-1] > length:
        start = (wave.shape[-1] - length) // 2
        return wave[..., start:start + length]
    return torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))


def cut_for_resampling(wave: torch.Tensor, resampler, length: int) -> tuple[torch.Tensor, int]:
    """(the source samples that resampling needs for the centre `length` output samples, where those
    start in their resampled output); (wave, 0) when the resampled clip is not longer than `length`.

    torchaudio's resampler is polyphase: each block of orig/gcd input samples gives new/gcd output
    samples, from a filter reaching `width` input samples beyond the block. The cut falls on block
    boundaries with more than `width` samples of margin on each side, so every output sample kept sees
    the same input samples as when the whole clip is resampled and then centre-cut (`fix_length`).
    """
    up, down = resampler.new_freq // resampler.gcd, resampler.orig_freq // resampler.gcd
    n = wave.shape[-1]
    full = math.ceil(up * n / down)  # the whole clip's resampled length, as torchaudio computes it
    if full <= length:
        return wave, 0
    start = (full - length) // 2  # fix_length's centre cut, in output samples
    margin = -(-resampler.width // down) + 1  # blocks
    first = max(0, start // up - margin)
    stop = (start + length - 1) // up + 1 + margin
    return wave[..., first * down:min(n, stop * down)], start - first * up


class LogMel:
    """Waveform (any rate) -> log-mel (n_mels, frames) in dB."""

    def __init__(self, sr: int, n_mels: int, n_fft: int, hop_length: int):
        import torchaudio

        self.sr = sr
        self.length = int(round(CLIP_SECONDS * sr))
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=2.0)
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=TOP_DB)
        self._resamplers: dict[int, torch.nn.Module] = {}

    def __call__(self, samples: np.ndarray, rate: int) -> torch.Tensor:
        import torchaudio

        wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        if rate != self.sr:
            if rate not in self._resamplers:  # the kernel is built once per source rate
                self._resamplers[rate] = torchaudio.transforms.Resample(rate, self.sr)
            resampler = self._resamplers[rate]
            wave, skip = cut_for_resampling(wave, resampler, self.length)
            wave = resampler(wave)[..., skip:skip + self.length]  # uncut: all of it, padded below
        wave = fix_length(wave, self.length)
        return self.to_db(self.mel(wave))


class ClipLogMel:
    """A clip's file -> its log-mel (n_mels, frames) float32: what `compute_features` extracts per clip."""

    def __init__(self, sr: int, n_mels: int, n_fft: int, hop_length: int):
        self.logmel = LogMel(sr, n_mels, n_fft, hop_length)

    def __call__(self, path: Path) -> np.ndarray:
        samples, rate = read_audio(path)
        with torch.inference_mode():
            return self.logmel(samples, rate).numpy()


def compute_features(corpus: Corpus, sr: int, n_mels: int, n_fft: int, hop_length: int,
                     cache_dir: Path | None, progress: bool = False) -> torch.Tensor:
    """Float32 tensor (n_clips, 1, n_mels, frames), in corpus order."""
    params = feature_params(sr, n_mels, n_fft, hop_length)
    clip_params = {"frontend": "logmel", **params}
    if cache_dir is not None:
        # A corpus-level array of the cache before per-clip entries is read: it is keyed by this corpus's
        # content and these parameters, so it is right; its rows become per-clip entries (once).
        legacy = Path(cache_dir) / "features" / f"{cache_key(corpus, params)}.npy"
        if legacy.exists():
            try:
                out = np.load(legacy)
            except (OSError, ValueError):
                out = None  # damaged: the per-clip entries decide
            if out is not None and out.shape == (len(corpus.clips), 1, n_mels, n_frames(sr, hop_length)):
                clipcache.seed_from(cache_dir, clip_params, corpus.clips, out[:, 0])
                return torch.from_numpy(out)
    out = clipcache.arrays(corpus.clips, Recipe("harness.train.features:ClipLogMel", (sr, n_mels, n_fft, hop_length)),
                           clip_params, (n_mels, n_frames(sr, hop_length)), cache_dir, "log-mel", progress,
                           lines=False)  # as before: a bar on a terminal, no lines
    return torch.from_numpy(out[:, None])


class SpecAugment(torch.nn.Module):
    """One frequency and one time mask per example (training batches only)."""

    def __init__(self, freq: int, time: int):
        super().__init__()
        import torchaudio

        self.freq = torchaudio.transforms.FrequencyMasking(freq_mask_param=freq, iid_masks=True)
        self.time = torchaudio.transforms.TimeMasking(time_mask_param=time, iid_masks=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Masked cells get the batch minimum rather than 0: features are
        # standardised, so 0 would be an average value, not a gap.
        fill = float(x.min())
        x = self.freq(x, mask_value=fill) if self.freq.mask_param > 0 else x
        return self.time(x, mask_value=fill) if self.time.mask_param > 0 else x


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, gen: torch.Generator
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mix each example with a shuffled partner; returns (x_mixed, y_a, y_b, lam)."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample()) if alpha > 0 else 1.0
    perm = torch.randperm(x.shape[0], generator=gen).to(x.device)
    return lam * x + (1.0 - lam) * x[perm], y, y[perm], lam
