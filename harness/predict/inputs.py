"""What a prediction reads: a WAV, a folder of WAVs (recursively), a manifest CSV, or a labelled corpus,
as `Clip`s of one `Corpus`: what training's feature entry points take.

Every clip is read once before any feature is computed: a clip that cannot be read (or holds no
samples) in a folder or a manifest is reported on its own line and left out, the others are predicted;
a single WAV that cannot be read, or a folder with no readable clip, is a HarnessError.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.corpora.base import SENTIMENT_OF_EMOTION, Clip, read_audio, wav_files
from harness.corpora.load import Corpus
from harness.errors import DataError, HarnessError

SOURCE = "input"  # the corpus name of unlabelled inputs (speakers are "input:<id>")


@dataclass(frozen=True)
class Inputs:
    corpus: Corpus
    skipped: tuple[str, ...] = ()  # one line per clip left out because it could not be read
    truth: tuple[str, ...] = ()  # a labelled corpus: each clip's class among the model's
    dropped: str = ""  # a labelled corpus: what did not map onto the model's classes
    labels: dict = field(default_factory=dict)  # a labelled corpus: its label -> the model's class


def corpus_of(clips: list[Clip], root: Path, base: Corpus | None = None) -> Corpus:
    """The clips as a Corpus, fingerprinted by content as `load_corpus` does (relative path and bytes)."""
    blob = "".join(f"{c.relpath}:{c.sha1}\n" for c in clips)
    fingerprint = hashlib.sha256(blob.encode()).hexdigest()[:16]
    if base is not None:
        return replace(base, clips=tuple(clips), fingerprint=fingerprint)
    return Corpus(root=root, clips=tuple(clips), fingerprint=fingerprint)


def check_path(path: Path) -> None:
    """Before any work: the input exists and is a WAV, a folder or a .csv."""
    if not path.exists():
        raise HarnessError(f"input {str(path)!r} does not exist: expected a .wav file, a folder of them or a "
                           f"manifest .csv (column path)")
    if path.is_file() and path.suffix.lower() not in (".wav", ".csv"):
        raise HarnessError(f"input {str(path)!r} is neither a .wav file nor a manifest .csv (column path)")


def collect(path: Path) -> Inputs:
    """Unlabelled clips from a WAV, a folder or a manifest."""
    check_path(path)
    if path.is_dir():
        files = wav_files(path)
        if not files:
            raise HarnessError(f"input folder {str(path)!r} holds no .wav file (searched recursively)")
        listed = [(p, p.relative_to(path).as_posix(), "") for p in files]
        root = path
    elif path.suffix.lower() == ".csv":
        listed, root = _manifest(path), path.parent
    else:
        listed, root = [(path, path.name, "")], path.parent
    clips, skipped = [], []
    for p, rel, speaker in listed:
        problem = readable(p)
        if problem:
            skipped.append(problem)
            continue
        clips.append(Clip(path=p, relpath=rel, corpus=SOURCE, speaker=f"{SOURCE}:{speaker}", label="",
                          sha1=hashlib.sha1(p.read_bytes()).hexdigest()))
    if not clips:
        raise HarnessError(skipped[0] if len(skipped) == 1 else
                           f"no readable clip in {str(path)!r} ({len(skipped)} could not be read; first: {skipped[0]})")
    return Inputs(corpus=corpus_of(clips, root), skipped=tuple(skipped))


def readable(path: Path) -> str:
    """'' when the clip reads and holds samples; else the one line that says why not."""
    try:
        read_audio(path)
    except DataError as e:
        return str(e)
    return ""


def _manifest(path: Path) -> list[tuple[Path, str, str]]:
    """(file, relative path, speaker or '') per line of a CSV with a `path` column (relative to the CSV's
    folder, or absolute) and an optional `speaker` column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise HarnessError(f"cannot read manifest {str(path)!r}: {e}") from None
    if "path" not in header:
        raise HarnessError(f"manifest {str(path)!r}: no column 'path' (got {', '.join(header) or 'no header'}): "
                           f"expected one audio file per line, optionally with a 'speaker' column")
    if not rows:
        raise HarnessError(f"manifest {str(path)!r} lists no clips")
    out = []
    for i, r in enumerate(rows, start=2):  # line 1 is the header
        if not r.get("path"):
            raise HarnessError(f"manifest {str(path)!r}, line {i}: empty 'path'")
        p = Path(r["path"]).expanduser()
        out.append((p if p.is_absolute() else path.parent / p, r["path"], r.get("speaker", "")))
    return out


def class_of(label: str, mode: str) -> str:
    """A clip's emotion as a class of a model trained in `mode`."""
    return SENTIMENT_OF_EMOTION[label] if mode == "sentiment" else label


def labelled(root: str, corpus: str, classes: tuple[str, ...], mode: str, label_map: dict) -> Inputs:
    """A labelled corpus through its adapter, its labels mapped onto the model's classes (a sentiment model
    takes emotions through SENTIMENT_OF_EMOTION; the model's own label map applies first). What maps onto
    none of them is left out and said; a corpus sharing no label with the model is a HarnessError."""
    from harness.corpora.load import load_corpus

    data = load_corpus([root], [corpus], None, label_map)  # no hash memo in the cache: nothing written before the checks
    kept = [c for c in data.clips if class_of(c.label, mode) in classes]
    known = {c.label for c in kept}
    left = sorted({c.label for c in data.clips} - known)
    if not kept:
        have = ", ".join(sorted({c.label for c in data.clips}))
        raise HarnessError(f"--data_root {root!r} ({data.name}) shares no label with the model: its labels "
                           f"{have}; the model's classes ({mode}) {', '.join(classes)}")
    dropped = ""
    if left:
        n = sum(c.label not in known for c in data.clips)
        dropped = f"{', '.join(left)}: {n} clip(s) left out (not among the model's classes)"
    clips, skipped = [], []
    for c in kept:
        problem = readable(c.path)
        if problem:
            skipped.append(problem)
        else:
            clips.append(c)
    if not clips:
        raise HarnessError(f"no readable clip in --data_root {root!r} ({len(skipped)} could not be read; first: "
                           f"{skipped[0]})")
    mapping = {c.label: class_of(c.label, mode) for c in clips}
    return Inputs(corpus=corpus_of(clips, data.root, base=data), skipped=tuple(skipped),
                  truth=tuple(class_of(c.label, mode) for c in clips), dropped=dropped, labels=mapping)
