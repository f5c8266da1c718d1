"""What every corpus adapter shares: the emotion vocabulary, a clip, an adapter's contract, audio reading.

An adapter turns one corpus's layout into `Entry`s (a clip's path relative to the root, its speaker,
its label in the shared vocabulary, and where the corpus has them: session, gender, intensity,
sentence). It declares its own classes (in the vocabulary), its licence and where to get it. Nothing
outside the adapter knows a corpus's file names or codes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from harness.errors import DataError

# The shared emotion vocabulary: every adapter maps its own codes onto these names.
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised", "boredom")

# The seed's sentiment grouping, written down once over the vocabulary. Boredom is low-arousal and
# of negative valence in the circumplex models the field uses (EmoDB's 'Langeweile').
SENTIMENT_OF_EMOTION = {
    "neutral": "neutral", "calm": "neutral",
    "happy": "positive", "surprised": "positive",
    "sad": "negative", "angry": "negative", "fearful": "negative", "disgust": "negative", "boredom": "negative",
}
SENTIMENTS = ("neutral", "positive", "negative")

GENDERS = ("m", "f", "")  # "" where the corpus does not say


@dataclass(frozen=True)
class Entry:
    """One clip as an adapter reads it (before its bytes are hashed)."""
    relpath: str  # relative to the corpus root, '/'-separated
    speaker: str  # the corpus's own speaker id; namespaced by corpus on loading
    label: str  # a name of EMOTIONS
    gender: str = ""
    session: str = ""
    intensity: str = ""
    sentence: str = ""
    corpus: str = ""  # only where one listing holds several corpora (a manifest's `corpus` column)
    split: str = ""  # only where the corpus declares one (a manifest's `split` column: train, val, test)


@dataclass(frozen=True)
class Clip:
    path: Path
    relpath: str
    corpus: str
    speaker: str  # "<corpus>:<id>": unique across corpora
    label: str  # the clip's emotion in the shared vocabulary
    sha1: str
    gender: str = ""
    session: str = ""
    intensity: str = ""
    sentence: str = ""
    split: str = ""


@dataclass(frozen=True)
class SynthClip:
    """A synthetic clip to be named: actor 1..N (odd male), its index among the actor's clips, emotion,
    intensity, statement and repetition (1 or 2 each)."""
    actor: int
    index: int
    emotion: str
    intensity: int
    statement: int
    repetition: int

    @property
    def gender(self) -> str:
        return "m" if self.actor % 2 == 1 else "f"


@dataclass(frozen=True)
class Adapter:
    """One corpus's layout. `list_entries(root)` raises DataError naming the file and what was expected."""
    name: str
    title: str
    classes: tuple[str, ...]  # its own classes, in the shared vocabulary
    licence: str
    url: str
    layout: str  # one line: what a root of this corpus looks like
    list_entries: Callable[[Path], list[Entry]]
    looks_like: Callable[[Path], bool]  # cheap: used to detect the corpus of a root
    # Published test-speaker sets of this corpus, by protocol name (e.g. EmoBox's folds).
    folds: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    is_file: bool = False  # the root is a file (a manifest), not a folder
    # `harness synth --layout NAME`: where a synthetic clip goes in this layout, None to leave it out
    # (a label the corpus lacks); and what the layout needs beside the audio (label files, a CSV),
    # returning the root to read.
    synth_path: Callable[[SynthClip], str | None] | None = None
    synth_finish: Callable[[Path, list[tuple[str, SynthClip]]], Path] | None = None


def corpus_of(speaker: object) -> str:
    """The corpus of a namespaced speaker ('cremad:1001' -> 'cremad'); '' for a name without one."""
    name = str(speaker)
    return name.split(":", 1)[0] if ":" in name else ""


def wav_files(root: Path) -> list[Path]:
    """Every .wav under root (any case), sorted; hidden temp files skipped."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()
                  and not p.name.startswith("."))


def first_wavs(root: Path, n: int = 20) -> list[Path]:
    """Up to n .wav files under root, in the file system's order: enough for an adapter to recognise its
    layout without listing a large corpus."""
    out = []
    for p in root.rglob("*.wav"):
        out.append(p)
        if len(out) >= n:
            break
    return out


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate; stereo (or more channels) is averaged down."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            rate = f.samplerate
            # 16-bit PCM (most corpora) is read as int16 and scaled here: libsndfile's conversion to float
            # costs more than the rest of the read, and its x / 32768 is exact, so the samples are the same.
            if f.subtype == "PCM_16":
                data = f.read(dtype="int16", always_2d=True).astype(np.float32) * np.float32(1 / 32768)
            else:
                data = f.read(dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for broken files
        raise DataError(f"cannot read audio file {str(path)!r}: {e}") from None
    if data.shape[0] == 0:
        raise DataError(f"audio file {str(path)!r} holds no samples")
    # Channel by channel: numpy's mean over a short axis (data.mean(axis=1)) costs more than decoding a
    # stereo file; this sums in the same order, so the samples are the same to the bit.
    mono = data[:, 0].copy()
    for c in range(1, data.shape[1]):
        mono += data[:, c]
    if data.shape[1] > 1:
        mono /= np.float32(data.shape[1])
    return mono, rate
