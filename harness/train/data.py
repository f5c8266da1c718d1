"""The RAVDESS corpus: file names, labels, audio loading, fingerprint and splits.

File names follow RAVDESS's 7-part identifier
`MM-VV-EE-II-SS-RR-AA.wav` = modality (03 audio-only), vocal channel
(01 speech, 02 song), emotion 01-08, intensity 01-02, statement 01-02,
repetition 01-02, actor 01-24. Only speech (channel 01) is used.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import DataError

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")  # codes 01..08

# The sentiment grouping, written down once.
SENTIMENT_OF_EMOTION = {
    "neutral": "neutral", "calm": "neutral",
    "happy": "positive", "surprised": "positive",
    "sad": "negative", "angry": "negative", "fearful": "negative", "disgust": "negative",
}
SENTIMENTS = ("neutral", "positive", "negative")

_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.wav$", re.IGNORECASE)
_NAME_HELP = "expected MM-VV-EE-II-SS-RR-AA.wav, e.g. 03-01-05-02-01-01-12.wav (emotion 01-08, intensity/statement/repetition 01-02)"


def class_names(mode: str) -> tuple[str, ...]:
    return SENTIMENTS if mode == "sentiment" else EMOTIONS


@dataclass(frozen=True)
class Clip:
    path: Path
    relpath: str
    emotion: str
    intensity: int
    statement: int
    repetition: int
    actor: int
    sha1: str

    def label(self, mode: str) -> int:
        if mode == "sentiment":
            return SENTIMENTS.index(SENTIMENT_OF_EMOTION[self.emotion])
        return EMOTIONS.index(self.emotion)


@dataclass(frozen=True)
class Corpus:
    root: Path
    clips: tuple[Clip, ...]
    fingerprint: str  # content hash: same files, same fingerprint, on any machine

    @property
    def actors(self) -> list[int]:
        return sorted({c.actor for c in self.clips})

    def labels(self, mode: str) -> np.ndarray:
        return np.array([c.label(mode) for c in self.clips], dtype=np.int64)


def parse_name(relpath: str) -> dict | None:
    """Fields of a RAVDESS name; None for song clips; DataError when malformed."""
    name = Path(relpath).name
    m = _NAME.match(name)
    if not m:
        raise DataError(f"malformed RAVDESS file name {relpath!r}: {_NAME_HELP}")
    modality, channel, emo, inten, stmt, rep, actor = (int(g) for g in m.groups())
    if modality != 3 or channel not in (1, 2) or not 1 <= emo <= 8 or inten not in (1, 2) \
            or stmt not in (1, 2) or rep not in (1, 2) or actor < 1:
        raise DataError(f"malformed RAVDESS file name {relpath!r}: {_NAME_HELP}")
    if channel == 2:
        return None  # song: not part of the speech task
    return {"emotion": EMOTIONS[emo - 1], "intensity": inten, "statement": stmt,
            "repetition": rep, "actor": actor}


def scan_corpus(root: str | os.PathLike, cache_dir: Path | None = None) -> Corpus:
    """Find and validate every speech WAV under `root` (no audio decoded yet).

    Content hashes are remembered in `cache_dir` keyed by (path, size, mtime),
    so a repeat scan of a large corpus costs a stat per file.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"--data_root {str(root)!r} does not exist: expected a RAVDESS folder with Actor_XX/ subfolders")
    if not root.is_dir():
        raise DataError(f"--data_root {str(root)!r} is not a folder")
    wavs = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())
    if not wavs:
        raise DataError(f"--data_root {str(root)!r} holds no .wav files: expected Actor_XX/03-01-EE-II-SS-RR-AA.wav")
    known = _load_hashes(root, cache_dir)
    fresh: dict[str, list] = {}
    clips = []
    for p in wavs:
        rel = p.relative_to(root).as_posix()
        fields = parse_name(rel)
        if fields is None:
            continue
        st = p.stat()
        if st.st_size == 0:
            raise DataError(f"empty audio file {str(p)!r}")
        entry = known.get(rel)
        if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            sha1 = entry[2]
        else:
            sha1 = hashlib.sha1(p.read_bytes()).hexdigest()
        fresh[rel] = [st.st_size, st.st_mtime_ns, sha1]
        clips.append(Clip(path=p, relpath=rel, sha1=sha1, **fields))
    if not clips:
        raise DataError(f"--data_root {str(root)!r} holds no RAVDESS speech clips (vocal channel 01)")
    if fresh != known:
        _save_hashes(root, cache_dir, fresh)
    fp = hashlib.sha256("".join(f"{c.relpath}:{c.sha1}\n" for c in clips).encode()).hexdigest()[:16]
    return Corpus(root=root, clips=tuple(clips), fingerprint=fp)


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


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate; stereo is averaged down."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for broken files
        raise DataError(f"cannot read audio file {str(path)!r}: {e}") from None
    return data.mean(axis=1), rate


# --- splits -----------------------------------------------------------------

@dataclass(frozen=True)
class Split:
    train: np.ndarray  # clip indices
    val: np.ndarray
    test: np.ndarray
    train_actors: tuple[int, ...] = ()
    val_actors: tuple[int, ...] = ()
    test_actors: tuple[int, ...] = ()


def make_split(corpus: Corpus, kind: str, train_ratio: float, val_ratio: float, seed: int, mode: str,
               cv_folds: int = 0, fold: int | None = None) -> Split:
    """Train/val/test indices. Depends only on the data, the ratios, the seed and the fold
    (plus the labels for stratification), never on the model config, so two
    configs with the same seed (and fold) are a paired comparison."""
    if cv_folds:
        if fold is None:  # a repeat is K runs, one per fold: there is no single split to return
            raise ValueError("a cross-validation split needs its fold")
        return make_cv_split(corpus, cv_folds, fold, val_ratio, seed)
    if kind == "actor":
        return _actor_split(corpus, train_ratio, val_ratio, seed)
    return _random_split(corpus, train_ratio, val_ratio, seed, mode)


def _actor_split(corpus: Corpus, train_ratio: float, val_ratio: float, seed: int) -> Split:
    actors = corpus.actors
    n = len(actors)
    n_val = max(1, round(n * val_ratio))
    n_test = max(1, round(n * (1.0 - train_ratio - val_ratio)))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise DataError(
            f"an actor-disjoint split of {n} actor(s) with train_ratio={train_ratio}, val_ratio={val_ratio} "
            f"leaves a set without actors (needs >= 3 actors: one each for train, val and test)")
    order = np.random.default_rng(seed).permutation(actors)
    val_a = tuple(sorted(int(a) for a in order[:n_val]))
    test_a = tuple(sorted(int(a) for a in order[n_val:n_val + n_test]))
    train_a = tuple(sorted(int(a) for a in order[n_val + n_test:]))
    return _by_actors(corpus, train_a, val_a, test_a)


def _random_split(corpus: Corpus, train_ratio: float, val_ratio: float, seed: int, mode: str) -> Split:
    from sklearn.model_selection import train_test_split

    y = corpus.labels(mode)
    idx = np.arange(len(y))
    try:
        train, rest = train_test_split(idx, train_size=train_ratio, random_state=seed, stratify=y)
        val_share = val_ratio / (1.0 - train_ratio)
        val, test = train_test_split(rest, train_size=val_share, random_state=seed, stratify=y[rest])
    except ValueError as e:
        raise DataError(f"a stratified random split of {len(y)} clips with train_ratio={train_ratio}, "
                        f"val_ratio={val_ratio} is impossible: {e}") from None
    return Split(train=np.sort(train), val=np.sort(val), test=np.sort(test))


# --- speaker-grouped cross-validation -------------------------------------------

def is_male(actor: int) -> bool:
    """RAVDESS: odd actor numbers are male, even female."""
    return actor % 2 == 1


def check_cv(n_actors: int, k: int, val_ratio: float) -> None:
    """A K-fold design this corpus can hold: every fold has a test actor, and each fold leaves
    validation and training actors; DataError otherwise (before any work)."""
    if k > n_actors:
        raise DataError(f"--cv_folds {k} needs at least {k} actors (one test actor per fold); the corpus has "
                        f"{n_actors} (--cv_folds {n_actors} is leave-one-speaker-out)")
    largest_fold = -(-n_actors // k)
    n_val = max(1, round(n_actors * val_ratio))
    if n_actors - largest_fold - n_val < 1:
        raise DataError(f"--cv_folds {k} on {n_actors} actors with --val_ratio {val_ratio}: a fold of {largest_fold} "
                        f"test actor(s) and {n_val} validation actor(s) leave none to train on")


def cv_folds(actors: list[int], k: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """The seed's deal of the actors into K folds, balancing gender across folds.

    Men and women are shuffled separately and dealt round-robin, the women starting
    where the men stopped, so fold sizes differ by at most one and each fold holds
    about as many of each gender as the corpus allows. Depends only on the actors,
    K and the seed: every row of a suite sees the same folds for the same seed.
    """
    rng = np.random.default_rng([seed, k])
    men = [int(a) for a in rng.permutation(sorted(a for a in actors if is_male(a)))]
    women = [int(a) for a in rng.permutation(sorted(a for a in actors if not is_male(a)))]
    folds: list[list[int]] = [[] for _ in range(k)]
    for i, actor in enumerate(men + women):
        folds[i % k].append(actor)
    return tuple(tuple(sorted(f)) for f in folds)


def make_cv_split(corpus: Corpus, k: int, fold: int, val_ratio: float, seed: int) -> Split:
    """Fold `fold` of the seed's K folds is the test set; validation actors are drawn with the
    seed from the other folds (`round(n_actors * val_ratio)`, at least one); the rest train."""
    actors = corpus.actors
    check_cv(len(actors), k, val_ratio)
    test_a = cv_folds(actors, k, seed)[fold]
    rest = [a for a in actors if a not in test_a]
    n_val = max(1, round(len(actors) * val_ratio))
    val_a = tuple(sorted(int(a) for a in np.random.default_rng([seed, k, fold]).permutation(rest)[:n_val]))
    train_a = tuple(a for a in rest if a not in val_a)
    return _by_actors(corpus, train_a, val_a, test_a)


def _by_actors(corpus: Corpus, train_a: tuple[int, ...], val_a: tuple[int, ...], test_a: tuple[int, ...]) -> Split:
    actor_of = np.array([c.actor for c in corpus.clips])
    return Split(
        train=np.flatnonzero(np.isin(actor_of, train_a)),
        val=np.flatnonzero(np.isin(actor_of, val_a)),
        test=np.flatnonzero(np.isin(actor_of, test_a)),
        train_actors=tuple(train_a), val_actors=tuple(val_a), test_actors=tuple(test_a),
    )
