"""Log-mel features (computed once, cached on disk) and training-time augmentation.

Every clip becomes `CLIP_SECONDS` of audio at `sr`, whatever its corpus: mono
mix-down, resampled from its own rate (16, 22.05, 44.1, 48 kHz, ...), then
centre-cropped when longer (RAVDESS clips are 3-5 s with silence at both ends)
or zero-padded at the end when shorter (TurEV words are 0.35-2.5 s). At
sr=22050 and hop 512 that is 130 frames. A long clip is cut before it is
resampled (only the centre and the filter's reach are resampled, see
`cut_for_resampling`), so a 10 s clip costs little more than a 3 s one; the
samples kept are those of resampling the whole clip and cutting after.

The cache key is the corpus content fingerprint (one hash per file's bytes)
plus every feature parameter, so a changed file or parameter is a miss.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from harness.corpora.base import read_audio
from harness.corpora.load import Corpus

CLIP_SECONDS = 3.0
TOP_DB = 80.0
FEATURE_VERSION = 1  # bump when the computation below changes


def feature_params(sr: int, n_mels: int, n_fft: int, hop_length: int) -> dict:
    return {"sr": sr, "n_mels": n_mels, "n_fft": n_fft, "hop_length": hop_length,
            "clip_seconds": CLIP_SECONDS, "top_db": TOP_DB, "version": FEATURE_VERSION}


def n_frames(sr: int, hop_length: int) -> int:
    return int(round(CLIP_SECONDS * sr)) // hop_length + 1


def cache_key(corpus: Corpus, params: dict) -> str:
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


def compute_features(corpus: Corpus, sr: int, n_mels: int, n_fft: int, hop_length: int,
                     cache_dir: Path | None, progress: bool = False) -> torch.Tensor:
    """Float32 tensor (n_clips, 1, n_mels, frames), in corpus order."""
    params = feature_params(sr, n_mels, n_fft, hop_length)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / "features" / f"{cache_key(corpus, params)}.npy"
        if path.exists():
            try:
                return torch.from_numpy(np.load(path))
            except (OSError, ValueError):
                pass  # a damaged entry is recomputed and overwritten
    extractor = LogMel(sr, n_mels, n_fft, hop_length)
    out = np.empty((len(corpus.clips), 1, n_mels, n_frames(sr, hop_length)), dtype=np.float32)
    clips = corpus.clips
    if progress:
        from tqdm import tqdm
        clips = tqdm(clips, desc="log-mel", unit="clip", leave=False, disable=None)  # None: only on a terminal
    with torch.inference_mode():
        for i, clip in enumerate(clips):
            samples, rate = read_audio(clip.path)
            out[i, 0] = extractor(samples, rate).numpy()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, out)
        os.replace(tmp, path)  # atomic: concurrent workers see a whole file or none
        (path.with_suffix(".json")).write_text(json.dumps(
            {"data_root": str(corpus.root), "fingerprint": corpus.fingerprint, **params}, indent=1))
    return torch.from_numpy(out)


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
