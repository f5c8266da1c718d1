"""SAVEE (Jackson & Haq 2014): 4 male British speakers (DC JE JK KL), 7 emotions.

`DC_a01.wav` (the Kaggle layout) or `DC/a01.wav` (the original AudioData/ layout): speaker, then the
emotion code a anger, d disgust, f fear, h happiness, n neutral, sa sadness, su surprise (the two-letter
codes are read before the one-letter ones), then the sentence number.
"""
from __future__ import annotations

import re
from pathlib import Path

from harness.corpora.base import Adapter, Entry, SynthClip, first_wavs, wav_files
from harness.errors import DataError

CODES = {"sa": "sad", "su": "surprised", "a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral"}
SPEAKERS = ("DC", "JE", "JK", "KL")
_FLAT = re.compile(r"^(DC|JE|JK|KL)_(sa|su|a|d|f|h|n)(\d{2})\.wav$")
_NESTED = re.compile(r"^(sa|su|a|d|f|h|n)(\d{2})\.wav$")
_HELP = "expected DC_a01.wav or DC/a01.wav (speaker DC JE JK KL; emotion a d f h n sa su; sentence 01-30)"


def parse_name(relpath: str) -> Entry:
    path = Path(relpath)
    m = _FLAT.match(path.name)
    if m:
        spk, code, num = m.groups()
    else:
        n = _NESTED.match(path.name)
        if not n or path.parent.name not in SPEAKERS:
            raise DataError(f"malformed SAVEE file name {relpath!r}: {_HELP}")
        spk, (code, num) = path.parent.name, n.groups()
    return Entry(relpath=relpath, speaker=spk, label=CODES[code], gender="m", sentence=f"{code}{num}")


def list_entries(root: Path) -> list[Entry]:
    return [parse_name(p.relative_to(root).as_posix()) for p in wav_files(root)]


def looks_like(root: Path) -> bool:
    return any(_FLAT.match(p.name) or (_NESTED.match(p.name) and p.parent.name in SPEAKERS) for p in first_wavs(root))


def synth_path(c: SynthClip) -> str | None:
    code = next((k for k, v in CODES.items() if v == c.emotion), None)
    if code is None or c.actor > len(SPEAKERS):
        return None
    return f"{SPEAKERS[c.actor - 1]}_{code}{c.index + 1:02d}.wav"


ADAPTER = Adapter(
    name="savee", title="SAVEE", classes=("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    licence="free for research (registration at the corpus's site)", url="http://kahlan.eps.surrey.ac.uk/savee/",
    layout="DC_a01.wav or DC/a01.wav", list_entries=list_entries, looks_like=looks_like, synth_path=synth_path)
