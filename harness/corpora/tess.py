"""TESS, the Toronto emotional speech set (Dupuis & Pichora-Fuller 2010): 2 female speakers (OAF, YAF), 7 emotions.

`OAF_angry/OAF_back_angry.wav`: speaker, word, emotion (angry disgust fear happy neutral sad, and
`ps` or `pleasant_surprise` for surprise). Two speakers allow no speaker-grouped CV of more than 2 folds.
"""
from __future__ import annotations

import re
from pathlib import Path

from harness.corpora.base import Adapter, Entry, SynthClip, first_wavs, wav_files
from harness.errors import DataError

CODES = {"angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy", "neutral": "neutral",
         "sad": "sad", "ps": "surprised", "pleasant_surprise": "surprised", "pleasant_surprised": "surprised"}
_NAME = re.compile(r"^(OAF|YAF)_([A-Za-z]+)_([a-z_]+)\.wav$", re.IGNORECASE)
_HELP = "expected OAF_back_angry.wav (speaker OAF or YAF; emotion angry disgust fear happy neutral sad ps)"


def parse_name(relpath: str) -> Entry:
    m = _NAME.match(Path(relpath).name)
    code = m.group(3).lower() if m else ""
    if not m or code not in CODES:
        raise DataError(f"malformed TESS file name {relpath!r}: {_HELP}")
    return Entry(relpath=relpath, speaker=m.group(1).upper(), label=CODES[code], gender="f",
                 sentence=m.group(2).lower())


def list_entries(root: Path) -> list[Entry]:
    return [parse_name(p.relative_to(root).as_posix()) for p in wav_files(root)]


def looks_like(root: Path) -> bool:
    return any(_NAME.match(p.name) for p in first_wavs(root))


_WORDS = ("back", "bar", "base", "bath", "bean", "beg", "bite", "boat")


def synth_path(c: SynthClip) -> str | None:
    code = next((k for k, v in CODES.items() if v == c.emotion), None)
    if code is None or c.actor > 2:
        return None
    spk = ("OAF", "YAF")[c.actor - 1]
    word = _WORDS[(c.intensity - 1) * 4 + (c.statement - 1) * 2 + c.repetition - 1]
    return f"{spk}_{code}/{spk}_{word}_{code}.wav"


ADAPTER = Adapter(
    name="tess", title="TESS (Toronto)", classes=("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    licence="CC BY-NC-ND 4.0", url="https://doi.org/10.5683/SP2/E8H2MF (Borealis)",
    layout="OAF_angry/OAF_back_angry.wav", list_entries=list_entries, looks_like=looks_like, synth_path=synth_path)
