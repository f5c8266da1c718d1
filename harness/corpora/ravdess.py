"""RAVDESS (Livingstone & Russo 2018): 24 actors, 8 emotions, speech and song.

File names follow RAVDESS's 7-part identifier `MM-VV-EE-II-SS-RR-AA.wav` = modality (03 audio-only),
vocal channel (01 speech, 02 song), emotion 01-08, intensity 01-02, statement 01-02, repetition 01-02,
actor 01-24 (odd male, even female). Only speech (channel 01) is read.
"""
from __future__ import annotations

import re
from pathlib import Path

from harness.corpora.base import Adapter, Entry, SynthClip, wav_files
from harness.errors import DataError

CODES = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")  # emotion 01..08
_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.wav$", re.IGNORECASE)
_NAME_HELP = ("expected MM-VV-EE-II-SS-RR-AA.wav, e.g. 03-01-05-02-01-01-12.wav "
              "(emotion 01-08, intensity/statement/repetition 01-02)")

# EmoBox's RAVDESS protocol (its data/ravdess/fold_K/ files): six folds of four test actors.
EMOBOX_FOLDS = (("01", "11", "20", "21"), ("04", "10", "12", "14"), ("08", "09", "19", "23"),
                ("03", "05", "07", "24"), ("02", "15", "16", "18"), ("06", "13", "17", "22"))


def parse_name(relpath: str) -> Entry | None:
    """A RAVDESS clip's entry; None for song clips; DataError when the name is malformed."""
    m = _NAME.match(Path(relpath).name)
    if not m:
        raise DataError(f"malformed RAVDESS file name {relpath!r}: {_NAME_HELP}")
    modality, channel, emo, inten, stmt, rep, actor = (int(g) for g in m.groups())
    if modality != 3 or channel not in (1, 2) or not 1 <= emo <= 8 or inten not in (1, 2) \
            or stmt not in (1, 2) or rep not in (1, 2) or actor < 1:
        raise DataError(f"malformed RAVDESS file name {relpath!r}: {_NAME_HELP}")
    if channel == 2:
        return None  # song: not part of the speech task
    return Entry(relpath=relpath, speaker=f"{actor:02d}", label=CODES[emo - 1],
                 gender="m" if actor % 2 == 1 else "f", intensity=("normal", "strong")[inten - 1],
                 sentence=str(stmt))


def list_entries(root: Path) -> list[Entry]:
    entries = [parse_name(p.relative_to(root).as_posix()) for p in wav_files(root)]
    return [e for e in entries if e is not None]


def looks_like(root: Path) -> bool:
    return any(_NAME.match(p.name) for d in root.glob("Actor_*") if d.is_dir() for p in d.iterdir())


def synth_path(c: SynthClip) -> str:
    emo = CODES.index(c.emotion) + 1
    return f"Actor_{c.actor:02d}/03-01-{emo:02d}-{c.intensity:02d}-{c.statement:02d}-{c.repetition:02d}-{c.actor:02d}.wav"


ADAPTER = Adapter(
    name="ravdess", title="RAVDESS (speech)", classes=CODES, licence="CC BY-NC-SA 4.0",
    url="https://zenodo.org/record/1188976 (Audio_Speech_Actors_01-24.zip)",
    layout="Actor_XX/03-01-EE-II-SS-RR-AA.wav", list_entries=list_entries, looks_like=looks_like,
    folds={"emobox": EMOBOX_FOLDS}, synth_path=synth_path)
