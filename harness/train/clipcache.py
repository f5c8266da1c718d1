"""The per-clip feature cache: each clip's features stored once, under the clip's content and the
front-end's parameters, whatever corpus, pooling or label filter the clip is read in.

Layout: `CACHE/clips/KEY/SHA1.npy`, one array per clip (log-mel (n_mels, frames) float32, functionals
(dim,) float32, encoder frames (frames, layers, dim) float16), where KEY hashes the front-end's
parameters and `CLIP_STORE_VERSION` and SHA1 is the clip's content hash (`Clip.sha1`);
`KEY/meta.json` holds the parameters and the last timed extraction's clips/s (what `--dry-run`'s
estimate reads). Entries appear atomically (written beside, then renamed), so parallel workers and
concurrent runs see a whole entry or none; an entry that does not load is a miss, extracted again.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from harness.train.extract import Progress, Recipe, extract

CLIP_STORE_VERSION = 1  # bump when the layout of an entry changes (a computation's change bumps its own version)
MIN_TIMED = 20  # an extraction of fewer clips does not replace the recorded rate (start-up dominates it)


def clip_key(params: dict) -> str:
    blob = json.dumps({"clip_store_version": CLIP_STORE_VERSION, **params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def save_atomic(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, np.ascontiguousarray(x))  # C order: the header `load_many` expects
    os.replace(tmp, path)


def npy_header(shape: tuple, dtype) -> bytes:
    """The bytes np.save writes before an array of `shape` and `dtype`."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros(shape, dtype))
    return buf.getvalue()[:-int(np.prod(shape)) * np.dtype(dtype).itemsize or None]


class ClipCache:
    """One front-end's entries (picklable: a spawned worker writes through it)."""

    def __init__(self, cache_dir: Path, params: dict):
        self.params = params
        self.key = clip_key(params)
        self.dir = Path(cache_dir) / "clips" / self.key

    def path(self, sha1: str) -> Path:
        return self.dir / f"{sha1}.npy"

    def load(self, sha1: str, mmap: bool = False) -> np.ndarray | None:
        try:
            return np.load(self.path(sha1), mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            return None  # damaged (cut short, garbled): a miss, extracted again and replaced

    def load_many(self, sha1s, shape: tuple, dtype=np.float32) -> dict[str, np.ndarray]:
        """{sha1: array} of the entries that hold an array of `shape` and `dtype`, the others left out (a miss):
        each file read whole and its header compared as bytes with np.save's for that shape, which costs
        a fifth of np.load's parsing (1,500 clips are read in a few ms)."""
        header = npy_header(shape, dtype)
        size = len(header) + int(np.prod(shape)) * np.dtype(dtype).itemsize
        out = {}
        for s in sha1s:
            try:
                data = self.path(s).read_bytes()
            except OSError:
                continue
            if len(data) == size and data.startswith(header):
                out[s] = np.frombuffer(data, dtype, offset=len(header)).reshape(shape)
        return out

    def save(self, sha1: str, x: np.ndarray) -> None:
        save_atomic(self.path(sha1), x)

    def present(self, sha1s) -> set[str]:
        """The contents with an entry (by its file only: cheap enough for `--dry-run`)."""
        return {s for s in sha1s if self.path(s).is_file()}

    def meta(self) -> dict:
        try:
            return json.loads((self.dir / "meta.json").read_text())
        except (OSError, ValueError):
            return {}

    def record(self, extra: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "meta.json"
        tmp = path.with_name(f"meta.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**self.params, **self.meta(), **extra}, indent=1))
        os.replace(tmp, path)

    def timed(self, timing: dict, n: int) -> None:
        """Record an extraction's rate, unless too few clips were extracted to measure it and one is known."""
        if n >= MIN_TIMED or "clips_per_second" not in self.meta():
            self.record({**timing, "clips_extracted": n})


def distinct(clips: Sequence) -> list:
    """One clip per content, in corpus order (a file present twice is extracted once)."""
    seen: set[str] = set()
    return [c for c in clips if not (c.sha1 in seen or seen.add(c.sha1))]


def arrays(clips: Sequence, recipe: Recipe, params: dict, shape: tuple, cache_dir: Path | None, what: str,
           progress: bool, lines: bool = True) -> np.ndarray:
    """Every clip's array of one front-end, stacked in corpus order: entries read, the missing extracted
    (once, in parallel when it pays) and written; `cache_dir` None: no cache, everything extracted."""
    cache = ClipCache(cache_dir, params) if cache_dir is not None else None
    found: dict[str, np.ndarray] = {}
    if cache is not None:
        found = cache.load_many([c.sha1 for c in distinct(clips)], shape)
    todo = [c for c in distinct(clips) if c.sha1 not in found]
    if todo:
        bar = Progress(what, len(todo), progress, lines)
        found.update(extract(todo, recipe, cache, bar))
        timing = bar.close()
        if cache is not None:
            cache.timed(timing, len(todo))
            found.update(cache.load_many([c.sha1 for c in todo], shape))
    return np.stack([found[c.sha1] for c in clips]) if clips else np.empty((0, *shape), np.float32)


def seed_from(cache_dir: Path | None, params: dict, clips: Sequence, values: np.ndarray) -> None:
    """Entries from a corpus-level array of the cache before per-clip entries (`values[i]` is clip i's):
    such an array is keyed by its corpus's content and these parameters, so its rows are right."""
    if cache_dir is None:
        return
    cache = ClipCache(cache_dir, params)
    have = cache.present({c.sha1 for c in clips})
    for c, x in zip(clips, values):
        if c.sha1 not in have:
            cache.save(c.sha1, np.ascontiguousarray(x))
            have.add(c.sha1)


_SCRATCH: list[Path] = []


def scratch_dir() -> Path:
    """A cache for this process alone (removed at exit), for a caller that asked for none but needs files."""
    if not _SCRATCH:
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="harness-features-")))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return _SCRATCH[0]
