"""Encoder frames read from the per-clip cache: each clip its own float16 file (frames, layers, dim),
memory-mapped, so a pooled corpus or a label filter reads the clips' files where they are (no corpus-level
copy: a base encoder's frames are ~3 MB a clip). The interface of `store.FrameStore`: `clip(i)`,
`frame_stats(idx)`, `moments()`, `layers`, `dim`, `n_layers`, `pick`, `meta`, `len`.

A clip of a one-layer request is read from the all-layers entry where there is one, else from the
one-layer entry: `clip(i)` gives the layers served, nothing is left to pick (`pick` None).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from harness.train.clipcache import ClipCache, save_atomic
from harness.train.frontends.store import clip_moments, mean_std


def open_clips(caches: Sequence[ClipCache], clips: Sequence, layer: int | None) -> tuple["ClipFrameStore | None", list]:
    """(the store, []) when every clip has an entry that serves `layer` (None: all layers) and the entries'
    meta is known; else (None, the clips without one, in corpus order, each content once).
    `caches`: the all-layers entries first, then (for one layer) that layer's."""
    sources = []
    for cache in caches:
        meta = cache.meta()
        stored = meta.get("layers")
        if stored is None:
            continue  # no meta: nothing of it can be served
        if layer is None and len(stored) == meta.get("n_layers_total"):
            sources.append((cache, meta, None))
        elif layer is not None and layer in stored:
            sources.append((cache, meta, None if stored == [layer] else stored.index(layer)))
    entries, missing, seen = [], [], set()
    for c in clips:
        for cache, meta, k in sources:
            x = cache.load(c.sha1, mmap=True)
            if x is not None and x.ndim == 3 and x.dtype == np.float16 and x.shape[1] == len(meta["layers"]):
                entries.append((x, k, cache.key))
                break
        else:
            if c.sha1 not in seen:
                missing.append(c)
                seen.add(c.sha1)
    if missing or not clips:
        return None, missing or list(clips)
    served = list(sources[0][1]["layers"]) if layer is None else [layer]
    meta = {**sources[0][1], "layers": served}
    return ClipFrameStore(entries, [c.sha1 for c in clips], meta, caches[-1].dir), []


class ClipFrameStore:
    """Per-clip frame embeddings (frames, layers, dim), float16, each clip's file memory-mapped."""

    def __init__(self, entries: list, sha1s: list[str], meta: dict, memo_dir: Path):
        self.entries, self.sha1s, self.meta, self.memo_dir = entries, sha1s, meta, memo_dir
        self.layers: list[int] = list(meta["layers"])
        self.dim = int(entries[0][0].shape[2])
        self.pick = None  # `clip(i)` serves only the layers asked for
        self._moments: tuple | None = None

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def clip(self, i: int) -> np.ndarray:
        x, k, _ = self.entries[i]
        return x if k is None else x[:, k:k + 1]

    def frame_stats(self, idx: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std per (layer, dim) over the frames of clips `idx`, in one pass a clip at a time;
        remembered per set of clip contents (and where they were read), so the folds and seeds of a suite,
        and any corpus holding the same clips, read each once."""
        idx = np.asarray(list(idx), dtype=np.int64)
        ident = sorted(f"{self.sha1s[i]}:{self.entries[i][2]}" for i in idx)
        blob = json.dumps([ident, self.layers]).encode()
        memo = self.memo_dir / f"stats-{hashlib.sha1(blob).hexdigest()[:16]}.npz"
        if memo.exists():
            try:
                with np.load(memo) as z:
                    return z["mean"], z["std"]
            except (OSError, ValueError, KeyError):
                pass  # a damaged entry is recomputed
        mean, std = mean_std(self.clip(int(i)) for i in idx)
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f"{memo.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, mean=mean, std=std)
        os.replace(tmp, memo)
        return mean, std

    def moments(self) -> tuple["PerClip", "PerClip"]:
        """Per clip, over its own frames: E[x_l] (layers, dim) and E[x_l x_m] (layers, layers, dim), float32,
        indexed by clip (`m1[i]`); computed the first time and kept beside each clip's entry (over all its
        file's layers), memory-mapped. What statistics pooling of any weighted sum of the layers needs."""
        if self._moments is not None:
            return self._moments
        m1, m2 = [], []
        for x, k, _ in self.entries:
            base = Path(x.filename)
            p1, p2 = base.with_suffix(".m1.npy"), base.with_suffix(".m2.npy")
            pair = [_load(p1), _load(p2)]
            if pair[0] is None or pair[1] is None:
                a, b = clip_moments(np.asarray(x))
                save_atomic(p1, a)
                save_atomic(p2, b)
                pair = [_load(p1), _load(p2)]
            m1.append(pair[0] if k is None else pair[0][k:k + 1])
            m2.append(pair[1] if k is None else pair[1][k:k + 1, k:k + 1])
        self._moments = PerClip(m1), PerClip(m2)
        return self._moments


class PerClip:
    """A per-clip array of each clip (`a[i]`), what `moments()` returns for each moment."""

    def __init__(self, arrays: list):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i) -> np.ndarray:
        return self.arrays[int(i)]


def _load(path: Path) -> np.ndarray | None:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # absent or damaged: computed again
