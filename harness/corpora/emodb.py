"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al. 2005): 10 speakers, 7 emotions, German.

`03a01Fa.wav` = speaker (2 digits), text code (3 characters), emotion letter (W anger, L boredom,
E disgust, A fear, F happiness, T sadness, N neutral), version letter.
"""
from __future__ import annotations

import re
from pathlib import Path

from harness.corpora.base import Adapter, Entry, SynthClip, first_wavs, wav_files
from harness.errors import DataError

CODES = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral"}
# The corpus's documentation: speakers 03, 10, 11, 12, 15 are male; 08, 09, 13, 14, 16 female.
MALE = {"03", "10", "11", "12", "15"}
_NAME = re.compile(r"^(\d{2})([a-z]\d{2})([A-Z])([a-z])\.wav$")
_HELP = "expected SSTTTEV.wav, e.g. 03a01Fa.wav (emotion letter W L E A F T N)"


def parse_name(relpath: str) -> Entry:
    m = _NAME.match(Path(relpath).name)
    if not m or m.group(3) not in CODES:
        raise DataError(f"malformed EmoDB file name {relpath!r}: {_HELP}")
    spk = m.group(1)
    return Entry(relpath=relpath, speaker=spk, label=CODES[m.group(3)], gender="m" if spk in MALE else "f",
                 sentence=m.group(2))


def list_entries(root: Path) -> list[Entry]:
    return [parse_name(p.relative_to(root).as_posix()) for p in wav_files(root)]


def looks_like(root: Path) -> bool:
    return any(_NAME.match(p.name) for p in first_wavs(root))


FEMALE = ("08", "09", "13", "14", "16")


def synth_path(c: SynthClip) -> str | None:
    # The synthetic 'calm' takes stand in for boredom (both low arousal); EmoDB has no calm or surprise.
    label = "boredom" if c.emotion == "calm" else c.emotion
    code = next((k for k, v in CODES.items() if v == label), None)
    pool = sorted(MALE) if c.gender == "m" else FEMALE
    if code is None or (c.actor - 1) // 2 >= len(pool):
        return None
    spk = pool[(c.actor - 1) // 2]
    return f"wav/{spk}a0{c.statement}{code}{'abcd'[(c.intensity - 1) * 2 + c.repetition - 1]}.wav"


ADAPTER = Adapter(
    name="emodb", title="EmoDB (Berlin)", classes=("neutral", "happy", "sad", "angry", "fearful", "disgust", "boredom"),
    licence="free for research (see the corpus's site)", url="http://emodb.bilderbar.info (download.html)",
    layout="wav/03a01Fa.wav", list_entries=list_entries, looks_like=looks_like, synth_path=synth_path)
