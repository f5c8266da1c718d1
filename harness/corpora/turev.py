"""TurEV-DB (Canpolat et al. 2020): Turkish single words, 6 speakers, 4 emotions, 44.1 kHz.

`<Emotion>/<speaker>_<code>_<word>.wav`: Emotion Angry Calm Happy Sad; code kz angry, sk calm,
mt happy, hl sad; speaker a 4-digit id. The folder and the code must agree.
"""
from __future__ import annotations

import re
from pathlib import Path

from harness.corpora.base import Adapter, Entry, SynthClip, wav_files
from harness.errors import DataError

CODES = {"kz": "angry", "sk": "calm", "mt": "happy", "hl": "sad"}
FOLDERS = {"Angry": "angry", "Calm": "calm", "Happy": "happy", "Sad": "sad"}
_NAME = re.compile(r"^(\d+)_(kz|sk|mt|hl)_(.+)\.wav$", re.IGNORECASE)
_HELP = "expected Angry|Calm|Happy|Sad/<speaker>_<kz|sk|mt|hl>_<word>.wav, e.g. Angry/1234_kz_abla.wav"


def parse_name(relpath: str) -> Entry:
    path = Path(relpath)
    m = _NAME.match(path.name)
    folder = FOLDERS.get(path.parent.name)
    if not m or folder is None or CODES[m.group(2).lower()] != folder:
        raise DataError(f"malformed TurEV-DB file name {relpath!r}: {_HELP}")
    return Entry(relpath=relpath, speaker=m.group(1), label=folder, sentence=m.group(3))


def list_entries(root: Path) -> list[Entry]:
    return [parse_name(p.relative_to(root).as_posix()) for p in wav_files(root)]


def looks_like(root: Path) -> bool:
    return any((root / f).is_dir() and any(_NAME.match(p.name) for p in (root / f).glob("*.wav")) for f in FOLDERS)


def synth_path(c: SynthClip) -> str | None:
    code = next((k for k, v in CODES.items() if v == c.emotion), None)
    if code is None:
        return None
    return f"{c.emotion.capitalize()}/{1000 + c.actor}_{code}_word{c.index:02d}.wav"


ADAPTER = Adapter(
    name="turev", title="TurEV-DB (Turkish)", classes=("calm", "happy", "sad", "angry"), licence="CC BY-NC-ND 4.0",
    url="https://github.com/Xeonen/TurEV-DB (Sound Source/)", layout="Angry/1234_kz_<word>.wav",
    list_entries=list_entries, looks_like=looks_like, synth_path=synth_path)
