"""Reading corpora: roots through their adapters into one `Corpus`, hashed, namespaced and labelled.

Every clip's bytes are hashed once (remembered in the cache by path, size and mtime), so the
fingerprint identifies the content on any machine. Several roots pool into one corpus whose classes
are the labels they share (after a declared label map), and what was left out is said.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from harness.corpora import ADAPTERS
from harness.corpora.base import EMOTIONS, SENTIMENT_OF_EMOTION, SENTIMENTS, Adapter, Clip
from harness.errors import DataError


@dataclass(frozen=True)
class Source:
    """One corpus of the data: what the report's header names."""
    name: str
    adapter: str
    root: Path
    n_clips: int  # kept, after the shared labels
    n_total: int  # read
    n_speakers: int
    classes: tuple[str, ...]  # its own labels present (after the label map), before the shared set
    used: tuple[str, ...]  # the labels it is read with (shared by every corpus of the data)
    licence: str

    def describe(self) -> str:
        clips = f"{self.n_clips}" if self.n_clips == self.n_total else f"{self.n_clips} of {self.n_total}"
        classes = f"{len(self.used)}" if self.used == self.classes else f"{len(self.used)} of {len(self.classes)}"
        return f"{self.name} ({clips} clips, {self.n_speakers} speakers, {classes} classes)"


@dataclass(frozen=True)
class Corpus:
    root: Path  # the first source's root
    clips: tuple[Clip, ...]
    fingerprint: str  # content hash: same files, same fingerprint, on any machine
    sources: tuple[Source, ...] = ()
    emotions: tuple[str, ...] = ()  # the labels used, in vocabulary order
    dropped: str = ""  # which labels were left out and how many clips, "" when none
    folds: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)  # published, namespaced

    @property
    def speakers(self) -> list[str]:
        return sorted({c.speaker for c in self.clips})

    @property
    def name(self) -> str:
        return "+".join(s.name for s in self.sources)

    def gender_of(self) -> dict[str, str]:
        return {c.speaker: c.gender for c in self.clips}

    def class_names(self, mode: str) -> tuple[str, ...]:
        if mode == "sentiment":
            groups = {SENTIMENT_OF_EMOTION[e] for e in self.emotions}
            return tuple(s for s in SENTIMENTS if s in groups)
        return self.emotions

    def labels(self, mode: str) -> np.ndarray:
        classes = self.class_names(mode)
        if mode == "sentiment":
            return np.array([classes.index(SENTIMENT_OF_EMOTION[c.label]) for c in self.clips], dtype=np.int64)
        return np.array([classes.index(c.label) for c in self.clips], dtype=np.int64)

    def describe(self) -> str:
        return "; ".join(s.describe() for s in self.sources)


def detect(root: Path) -> str:
    """The adapter whose layout `root` has; DataError listing the candidates when none or several match."""
    if root.is_file():
        if ADAPTERS["manifest"].looks_like(root):
            return "manifest"
        raise DataError(f"--data_root {str(root)!r} is a file but not a .csv manifest (path, speaker, label)")
    hits = [a.name for a in ADAPTERS.values() if not a.is_file and a.looks_like(root)]
    if len(hits) == 1:
        return hits[0]
    layouts = "; ".join(f"{a.name}: {a.layout}" for a in ADAPTERS.values())
    if not hits:
        raise DataError(f"--data_root {str(root)!r}: no known corpus layout ({layouts}): name one with --corpus")
    raise DataError(f"--data_root {str(root)!r} could be {' or '.join(hits)}: name one with --corpus")


def load_corpus(roots: Sequence[str | os.PathLike], names: Sequence[str] = ("auto",), cache_dir: Path | None = None,
                label_map: Mapping[str, str] | None = None, keep: Sequence[str] = ()) -> Corpus:
    """Read every root (paired with its adapter name, or 'auto') into one corpus; DataError before any work."""
    if len(names) == 1 and len(roots) > 1:
        names = tuple(names) * len(roots)
    if len(names) != len(roots):
        raise DataError(f"--corpus names {len(names)} corpora ({','.join(names)}) but --data_root gives "
                        f"{len(roots)} folder(s): one name per folder, or 'auto'")
    read = [_read_source(Path(r).expanduser(), n, cache_dir, label_map or {}) for r, n in zip(roots, names)]
    seen: dict[str, Path] = {}
    for name, _, root, _ in read:
        if name in seen:
            raise DataError(f"--data_root {str(root)!r} and {str(seen[name])!r} are both corpus {name!r}: "
                            f"each corpus once")
        seen[name] = root
    emotions = _shared_labels(read, keep)
    clips = tuple(c for _, _, _, cs in read for c in cs if c.label in emotions)
    left = [c for _, _, _, cs in read for c in cs if c.label not in emotions]
    dropped = ""
    if left:
        names_left = sorted({c.label for c in left}, key=EMOTIONS.index)
        dropped = f"{', '.join(names_left)}: {len(left)} clip(s) left out"
    sources = tuple(Source(name=n, adapter=a.name, root=root, n_clips=sum(c.label in emotions for c in cs),
                           n_total=len(cs), n_speakers=len({c.speaker for c in cs if c.label in emotions}),
                           classes=tuple(e for e in EMOTIONS if any(c.label == e for c in cs)), used=emotions,
                           licence=a.licence)
                    for n, a, root, cs in read)
    single = len(read) == 1
    # One corpus: the same fingerprint as before corpora were namespaced (relative path and bytes only).
    blob = "".join(f"{c.relpath}:{c.sha1}\n" if single else f"{c.corpus}/{c.relpath}:{c.sha1}\n" for c in clips)
    folds = {proto: tuple(tuple(f"{n}:{s}" for s in fold) for fold in fs)
             for n, a, _, _ in read for proto, fs in a.folds.items()} if single else {}
    return Corpus(root=read[0][2], clips=clips, fingerprint=hashlib.sha256(blob.encode()).hexdigest()[:16],
                  sources=sources, emotions=emotions, dropped=dropped, folds=folds)


def _read_source(root: Path, name: str, cache_dir: Path | None, label_map: Mapping[str, str]
                 ) -> tuple[str, Adapter, Path, list[Clip]]:
    if not root.exists():
        raise DataError(f"--data_root {str(root)!r} does not exist: expected a corpus folder (or a .csv manifest)")
    if name == "auto":
        name = detect(root)
    if name not in ADAPTERS:
        raise DataError(f"--corpus {name!r}: expected auto or one of {', '.join(ADAPTERS)}")
    adapter = ADAPTERS[name]
    if adapter.is_file != root.is_file():
        what = "a .csv file" if adapter.is_file else "a folder"
        raise DataError(f"--data_root {str(root)!r}: corpus {name} expects {what}")
    entries = adapter.list_entries(root)
    if not entries:
        raise DataError(f"--data_root {str(root)!r} holds no {adapter.title} clips: expected {adapter.layout}")
    base = root.parent if adapter.is_file else root
    source = root.stem if adapter.is_file else adapter.name
    known = _load_hashes(root, cache_dir)
    fresh: dict[str, list] = {}
    clips = []
    for e in entries:
        p = Path(e.relpath) if Path(e.relpath).is_absolute() else base / e.relpath
        try:
            st = p.stat()
        except OSError:
            raise DataError(f"audio file {str(p)!r} listed by {str(root)!r} does not exist") from None
        if st.st_size == 0:
            raise DataError(f"empty audio file {str(p)!r}")
        entry = known.get(e.relpath)
        sha1 = entry[2] if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns \
            else hashlib.sha1(p.read_bytes()).hexdigest()
        fresh[e.relpath] = [st.st_size, st.st_mtime_ns, sha1]
        corpus = e.corpus or source
        clips.append(Clip(path=p, relpath=e.relpath, corpus=corpus, speaker=f"{corpus}:{e.speaker}",
                          label=label_map.get(e.label, e.label), sha1=sha1, gender=e.gender, session=e.session,
                          intensity=e.intensity, sentence=e.sentence, split=e.split))
    if fresh != known:
        _save_hashes(root, cache_dir, fresh)
    return source, adapter, root, clips


def _shared_labels(read: list, keep: Sequence[str]) -> tuple[str, ...]:
    present = {name: {c.label for c in cs} for name, _, _, cs in read}
    if keep:
        for name, labels in present.items():
            missing = [k for k in keep if k not in labels]
            if missing:
                raise DataError(f"labels {', '.join(missing)} are not in corpus {name} (it has "
                                f"{', '.join(e for e in EMOTIONS if e in labels)}): expected labels every corpus holds")
        return tuple(e for e in EMOTIONS if e in keep)
    shared = set.intersection(*present.values())
    if not shared:
        have = "; ".join(f"{n}: {', '.join(e for e in EMOTIONS if e in ls)}" for n, ls in present.items())
        raise DataError(f"the corpora share no label ({have}): declare a label_map (e.g. calm=neutral)")
    return tuple(e for e in EMOTIONS if e in shared)


def _hash_file(root: Path, cache_dir: Path | None) -> Path | None:
    if cache_dir is None:
        return None
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir / "manifests" / f"{key}.json"


def _load_hashes(root: Path, cache_dir: Path | None) -> dict:
    f = _hash_file(root, cache_dir)
    try:
        return json.loads(f.read_text()) if f else {}
    except (OSError, ValueError):
        return {}


def _save_hashes(root: Path, cache_dir: Path | None, table: dict) -> None:
    f = _hash_file(root, cache_dir)
    if f is None:
        return
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(table))
    os.replace(tmp, f)  # atomic: parallel workers never read half a file
