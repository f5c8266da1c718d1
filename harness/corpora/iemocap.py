"""IEMOCAP (Busso et al. 2008): 5 sessions of 2 actors each (10 speakers), under licence from USC SAIL.

Labels come from the corpus's own files, `SessionN/dialog/EmoEvaluation/*.txt`, one line per utterance:
`[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]`; the audio is
`SessionN/sentences/wav/<dialog>/<utterance>.wav`. The speaker is the session and the gender letter
that opens the utterance's last part (F000: the session's woman). The common four-class set: neutral,
happy (with excited merged in), sad, angry; other labels (frustration, surprise, ..., xxx) are left out.
"""
from __future__ import annotations

import re
from pathlib import Path

from harness.corpora.base import Adapter, Entry, SynthClip
from harness.errors import DataError

CODES = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(Ses0([1-5])[FM]_\S+_([FM])\d+\S*)\s+(\w+)\s+\[")


def list_entries(root: Path) -> list[Entry]:
    files = sorted(root.glob("Session[1-5]/dialog/EmoEvaluation/*.txt"))
    if not files:
        raise DataError(f"{str(root)!r}: no IEMOCAP label files: expected Session1..5/dialog/EmoEvaluation/*.txt")
    entries = []
    for f in files:
        for line in f.read_text(errors="replace").splitlines():
            m = _LINE.match(line.strip())
            if not m:
                continue  # headers, the per-evaluator lines (C-E1: ...) and blank lines
            utt, session, gender, code = m.groups()
            if code not in CODES:
                continue
            dialog = utt.rsplit("_", 1)[0]
            rel = f"Session{session}/sentences/wav/{dialog}/{utt}.wav"
            if not (root / rel).is_file():
                raise DataError(f"{f}: utterance {utt!r} has no audio: expected {str(root / rel)!r}")
            entries.append(Entry(relpath=rel, speaker=f"{session}{gender}", label=CODES[code],
                                 gender=gender.lower(), session=session, sentence=dialog))
    return entries


def looks_like(root: Path) -> bool:
    return any(root.glob("Session[1-5]/dialog/EmoEvaluation"))


# Synthetic takes of labels outside the four classes keep IEMOCAP's other codes, so reading skips them.
_SYNTH_CODES = {"neutral": "neu", "happy": "hap", "sad": "sad", "angry": "ang", "calm": "fru", "surprised": "exc",
                "fearful": "fea", "disgust": "dis"}


def _utterance(c: SynthClip) -> tuple[int, str, str]:
    session = (c.actor + 1) // 2
    dialog = f"Ses0{session}F_impro01"
    return session, dialog, f"{dialog}_{'M' if c.gender == 'm' else 'F'}{c.index:03d}"


def synth_path(c: SynthClip) -> str | None:
    session, dialog, utt = _utterance(c)
    return None if session > 5 else f"Session{session}/sentences/wav/{dialog}/{utt}.wav"


def synth_finish(out: Path, written: list) -> Path:
    by_dialog: dict[tuple[int, str], list[str]] = {}
    for _, c in written:
        session, dialog, utt = _utterance(c)
        t = c.index * 4.0
        by_dialog.setdefault((session, dialog), []).append(
            f"[{t:.4f} - {t + 3.5:.4f}]\t{utt}\t{_SYNTH_CODES[c.emotion]}\t[2.5000, 2.5000, 2.5000]")
    for (session, dialog), lines in by_dialog.items():
        d = out / f"Session{session}" / "dialog" / "EmoEvaluation"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{dialog}.txt").write_text("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
                                         + "\n".join(lines) + "\n")
    return out


ADAPTER = Adapter(
    name="iemocap", title="IEMOCAP (4 classes)", classes=("neutral", "happy", "sad", "angry"),
    licence="USC SAIL release form (research only)", url="https://sail.usc.edu/iemocap/ (by request)",
    layout="Session1..5/dialog/EmoEvaluation/*.txt + Session1..5/sentences/wav/<dialog>/<utt>.wav",
    list_entries=list_entries, looks_like=looks_like, synth_path=synth_path, synth_finish=synth_finish)
