"""A manifest: any corpus, as a CSV with columns `path, speaker, label` and optional `corpus, session, gender, split`.

`path` is relative to the CSV's folder (or absolute); `label` is a name of the shared vocabulary
(neutral calm happy sad angry fearful disgust surprised boredom); `gender` m or f (or empty). Without
a `corpus` column the corpus is named after the file (`shemo.csv`: shemo), which namespaces its speakers.
`split` (train, val, test) declares a split for `--protocol declared` (a speaker on two sides is refused).
"""
from __future__ import annotations

import csv
from pathlib import Path

from harness.corpora.base import EMOTIONS, Adapter, Entry, SynthClip
from harness.errors import DataError

REQUIRED = ("path", "speaker", "label")
OPTIONAL = ("corpus", "session", "gender", "split")


def list_entries(csv_path: Path) -> list[Entry]:
    where = str(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise DataError(f"manifest {where!r}: missing column(s) {', '.join(missing)}: expected a header with "
                                f"{', '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)}), got {', '.join(header) or 'none'}")
            rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read manifest {where!r}: {e}") from None
    if not rows:
        raise DataError(f"manifest {where!r} lists no clips")
    entries = []
    for i, r in enumerate(rows, start=2):  # line 1 is the header
        at = f"manifest {where!r}, line {i}"
        for c in REQUIRED:
            if not r.get(c):
                raise DataError(f"{at}: empty {c!r}")
        if r["label"] not in EMOTIONS:
            raise DataError(f"{at}: unknown label {r['label']!r}: expected one of {', '.join(EMOTIONS)}")
        gender = r.get("gender", "").lower()
        if gender not in ("m", "f", ""):
            raise DataError(f"{at}: gender {r['gender']!r}: expected m, f or empty")
        path = Path(r["path"]).expanduser()
        full = path if path.is_absolute() else csv_path.parent / path
        if not full.is_file():
            raise DataError(f"{at}: audio file {str(full)!r} does not exist")
        entries.append(Entry(relpath=r["path"], speaker=r["speaker"], label=r["label"], gender=gender,
                             session=r.get("session", ""), corpus=r.get("corpus", ""),
                             split=r.get("split", "").lower()))
    return entries


def looks_like(root: Path) -> bool:
    return root.is_file() and root.suffix.lower() == ".csv"


def synth_path(c: SynthClip) -> str:
    return f"clips/spk{c.actor:02d}/{c.index:03d}_{c.emotion}.wav"


def synth_finish(out: Path, written: list) -> Path:
    path = out / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "speaker", "label", "gender", "session"])
        for rel, c in written:
            w.writerow([rel, f"spk{c.actor:02d}", c.emotion, c.gender, (c.actor + 1) // 2])
    return path


ADAPTER = Adapter(
    name="manifest", title="a manifest (CSV)", classes=EMOTIONS, licence="that of the corpus it lists",
    url="(your own file)", layout="a .csv with path, speaker, label [, corpus, session, gender]",
    list_entries=list_entries, looks_like=looks_like, is_file=True, synth_path=synth_path, synth_finish=synth_finish)
