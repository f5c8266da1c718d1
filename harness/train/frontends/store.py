"""The front-ends' corpus-level cache as it was before per-clip entries (`harness.train.clipcache`), still
read for the corpus it was made for; the weights' hashes; what the old and the per-clip frame stores share.

A key is the corpus content fingerprint plus everything that decides the numbers (front-end, its
weights' or tool's version, the layers, the sample rate, this code's version), so a changed clip,
checkpoint or layer choice is a miss and nothing else is. Two layouts:

- functionals (eGeMAPS, ComParE): one float32 vector per clip, `KEY.npy` (n_clips, dim).
- encoder frames: every clip's frames, float16, ragged: `KEY/frames.f16` holds (total_frames,
  layers, dim) back to back in corpus order, `KEY/offsets.npy` where each clip starts. Written one
  clip at a time (a corpus's layers are never all in memory) and memory-mapped when read, so a
  cell on a cached corpus reads only its batches. Frames rather than pooled statistics because
  SpecAugment masks frames and channels, and the learned layer weights combine frames before pooling.

Entries appear atomically (written beside, then renamed): a parallel worker sees all or nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from harness.train.extract import Progress  # noqa: F401  (the front-ends' progress, shared with log-mel)

STORE_VERSION = 1  # bump when an extraction's computation changes


def store_key(fingerprint: str, params: dict) -> str:
    blob = json.dumps({"data": fingerprint, "store_version": STORE_VERSION, **params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def root(cache_dir: Path) -> Path:
    return Path(cache_dir) / "frontends"


def sha256_file(path: Path, cache_dir: Path | None = None) -> str:
    """A weights file's SHA-256; remembered per (path, size, mtime) so a 1 GB checkpoint is read once."""
    st = path.stat()
    memo = root(cache_dir) / "sha256.json" if cache_dir is not None else None
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    known = {}
    if memo is not None and memo.exists():
        try:
            known = json.loads(memo.read_text())
        except (OSError, ValueError):
            known = {}
    if ident in known:
        return known[ident]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f"sha256.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**known, ident: digest}, indent=1))
        os.replace(tmp, memo)
    return digest


# --- functionals: one vector per clip ------------------------------------------------------

def load_vectors(cache_dir: Path | None, key: str) -> np.ndarray | None:
    if cache_dir is None:
        return None
    path = root(cache_dir) / f"{key}.npy"
    try:
        return np.load(path) if path.exists() else None
    except (OSError, ValueError):
        return None  # a damaged entry is recomputed and overwritten


def save_vectors(cache_dir: Path | None, key: str, values: np.ndarray, meta: dict) -> None:
    if cache_dir is None:
        return
    path = root(cache_dir) / f"{key}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{key}.{os.getpid()}.tmp.npy")
    np.save(tmp, values)
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))


# --- encoder frames: ragged, float16, memory-mapped ---------------------------------------------

class FrameStore:
    """Per-clip frame embeddings (frames, layers, dim), float16, read through a memory map."""

    def __init__(self, directory: Path, layer: int | None = None):
        meta = json.loads((directory / "meta.json").read_text())
        self.meta, self.directory = meta, directory
        self.offsets = np.load(directory / "offsets.npy")
        self.layers: list[int] = list(meta["layers"])
        self.dim = int(meta["dim"])
        total = int(self.offsets[-1])
        self.frames = np.memmap(directory / "frames.f16", dtype=np.float16, mode="r",
                                shape=(total, len(self.layers), self.dim))
        # One layer of a store that holds them all: read through it, never re-extracted.
        self.pick = None if layer is None or self.layers == [layer] else self.layers.index(layer)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_layers(self) -> int:
        return 1 if self.pick is not None else len(self.layers)

    def clip(self, i: int) -> np.ndarray:
        x = self.frames[self.offsets[i]:self.offsets[i + 1]]
        return x[:, self.pick:self.pick + 1] if self.pick is not None else x

    def frame_stats(self, idx: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std per (layer, dim) over the frames of clips `idx`, in one pass a clip at a time;
        remembered beside the store per set of clips, so the folds and seeds of a suite read each once."""
        idx = np.asarray(list(idx), dtype=np.int64)
        memo = self.directory / f"stats-{hashlib.sha1(np.sort(idx).tobytes()).hexdigest()[:16]}.npz"
        if memo.exists():
            try:
                with np.load(memo) as z:
                    return self._picked(z["mean"]), self._picked(z["std"])
            except (OSError, ValueError, KeyError):
                pass  # a damaged entry is recomputed
        mean, std = mean_std(self.frames[self.offsets[i]:self.offsets[i + 1]] for i in idx)
        tmp = memo.with_name(f"{memo.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, mean=mean, std=std)
        os.replace(tmp, memo)
        return self._picked(mean), self._picked(std)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Per clip, over its own frames: E[x_l] (clips, layers, dim) and E[x_l x_m] (clips, layers, layers,
        dim), float32, memory-mapped; computed in one pass the first time and kept beside the store.
        What statistics pooling of any weighted sum of the (standardised) layers needs, exactly."""
        n, layers, dim = len(self), len(self.layers), self.dim
        m1_path, m2_path = self.directory / "moments1.f32", self.directory / "moments2.f32"
        if not (m1_path.exists() and m2_path.exists()):
            tmp1, tmp2 = (p.with_name(f"{p.name}.{os.getpid()}.tmp") for p in (m1_path, m2_path))
            with open(tmp1, "wb") as f1, open(tmp2, "wb") as f2:
                for i in range(n):
                    a, b = clip_moments(self.frames[self.offsets[i]:self.offsets[i + 1]])  # (t, l, d)
                    f1.write(a.tobytes())
                    f2.write(b.tobytes())
            os.replace(tmp1, m1_path)
            os.replace(tmp2, m2_path)
        m1 = np.memmap(m1_path, dtype=np.float32, mode="r", shape=(n, layers, dim))
        m2 = np.memmap(m2_path, dtype=np.float32, mode="r", shape=(n, layers, layers, dim))
        if self.pick is not None:
            k = self.pick
            return m1[:, k:k + 1], m2[:, k:k + 1, k:k + 1]
        return m1, m2

    def _picked(self, per_layer: np.ndarray) -> np.ndarray:
        return per_layer if self.pick is None else per_layer[self.pick:self.pick + 1]


def clip_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One clip's frames (t, layers, dim) -> E[x_l] (layers, dim) and E[x_l x_m] (layers, layers, dim), float32."""
    x = np.asarray(x, dtype=np.float64)
    return x.mean(0).astype(np.float32), (np.einsum("tld,tmd->lmd", x, x) / len(x)).astype(np.float32)


def mean_std(clips: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per (layer, dim) over every frame of `clips`, float32 (std + 1e-6)."""
    total = sq = None
    n = 0
    for x in clips:
        x = np.asarray(x, dtype=np.float64)
        total = x.sum(0) if total is None else total + x.sum(0)
        sq = (x * x).sum(0) if sq is None else sq + (x * x).sum(0)
        n += len(x)
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean * mean, 0.0)) + 1e-6
    return mean.astype(np.float32), std.astype(np.float32)


def annotate(cache_dir: Path, key: str, extra: dict) -> None:
    """Add to a frame store's meta.json (the extraction's timing, known only once it is written)."""
    path = root(cache_dir) / key / "meta.json"
    tmp = path.with_name(f"meta.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**json.loads(path.read_text()), **extra}, indent=1))
    os.replace(tmp, path)


def open_frames(cache_dir: Path, key: str, layer: int | None = None) -> FrameStore | None:
    d = root(cache_dir) / key
    if not (d / "meta.json").exists():
        return None
    try:
        return FrameStore(d, layer)
    except (OSError, ValueError, KeyError):
        return None


def write_frames(cache_dir: Path, key: str, clips: Iterator[np.ndarray], meta: dict) -> None:
    """Stream (frames, layers, dim) arrays, one per clip, into a new store (`meta` needs its "layers")."""
    final = root(cache_dir) / key
    tmp = final.with_name(f"{key}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    offsets = [0]
    dim = None
    with open(tmp / "frames.f16", "wb") as f:
        for x in clips:
            f.write(np.ascontiguousarray(x, dtype=np.float16).tobytes())
            offsets.append(offsets[-1] + x.shape[0])
            dim = x.shape[-1]
    np.save(tmp / "offsets.npy", np.asarray(offsets, dtype=np.int64))
    (tmp / "meta.json").write_text(json.dumps({**meta, "dim": dim}, indent=1))
    try:
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another worker finished first: same key, same content
