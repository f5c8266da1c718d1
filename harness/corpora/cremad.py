"""CREMA-D (Cao et al. 2014): 91 actors (1001-1091), 12 sentences, 6 emotions, 4 intensities.

`1001_DFA_ANG_XX.wav` = actor, sentence code, emotion (ANG DIS FEA HAP NEU SAD), intensity
(LO MD HI XX unspecified). Gender comes from the corpus's `VideoDemographics.csv` where it lies
beside the clips (or one folder up), else it is unknown.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from harness.corpora.base import Adapter, Entry, SynthClip, first_wavs, wav_files
from harness.errors import DataError

CODES = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
INTENSITIES = {"LO": "low", "MD": "medium", "HI": "high", "XX": ""}
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})\.wav$", re.IGNORECASE)
_HELP = "expected AAAA_SSS_EEE_II.wav, e.g. 1001_DFA_ANG_XX.wav (emotion ANG DIS FEA HAP NEU SAD, intensity LO MD HI XX)"


def parse_name(relpath: str, genders: dict[str, str] | None = None) -> Entry:
    m = _NAME.match(Path(relpath).name)
    if not m or m.group(3).upper() not in CODES or m.group(4).upper() not in INTENSITIES:
        raise DataError(f"malformed CREMA-D file name {relpath!r}: {_HELP}")
    actor, sentence, emo, inten = m.group(1), m.group(2).upper(), m.group(3).upper(), m.group(4).upper()
    return Entry(relpath=relpath, speaker=actor, label=CODES[emo], gender=(genders or {}).get(actor, ""),
                 intensity=INTENSITIES[inten], sentence=sentence)


def _genders(root: Path) -> dict[str, str]:
    for f in (root / "VideoDemographics.csv", root.parent / "VideoDemographics.csv"):
        if f.is_file():
            with open(f, newline="") as fh:
                return {str(r.get("ActorID", "")).strip(): {"Male": "m", "Female": "f"}.get(str(r.get("Sex", "")).strip(), "")
                        for r in csv.DictReader(fh)}
    return {}


def list_entries(root: Path) -> list[Entry]:
    genders = _genders(root)
    return [parse_name(p.relative_to(root).as_posix(), genders) for p in wav_files(root)]


def looks_like(root: Path) -> bool:
    return any(_NAME.match(p.name) for p in first_wavs(root))


_SENTENCES = (("IEO", "TIE"), ("DFA", "ITS"))  # by repetition, then statement: one name per take


def synth_path(c: SynthClip) -> str | None:
    code = next((k for k, v in CODES.items() if v == c.emotion), None)
    if code is None:
        return None
    inten = "XX" if c.emotion == "neutral" else ("MD", "HI")[c.intensity - 1]
    return f"AudioWAV/{1000 + c.actor}_{_SENTENCES[c.repetition - 1][c.statement - 1]}_{code}_{inten}.wav"


def synth_finish(out: Path, written: list) -> Path:
    actors = sorted({c.actor for _, c in written})
    with open(out / "VideoDemographics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
        for a in actors:
            w.writerow([1000 + a, 30, "Male" if a % 2 == 1 else "Female", "Unknown", "Unknown"])
    return out


ADAPTER = Adapter(
    name="cremad", title="CREMA-D", classes=("neutral", "happy", "sad", "angry", "fearful", "disgust"),
    licence="Open Database License (ODbL) 1.0", url="https://github.com/CheyneyComputerScience/CREMA-D (AudioWAV/)",
    layout="AudioWAV/1001_DFA_ANG_XX.wav (any folder depth)", list_entries=list_entries, looks_like=looks_like,
    synth_path=synth_path, synth_finish=synth_finish)
