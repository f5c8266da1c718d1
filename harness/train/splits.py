"""Splits of a corpus: one train/val/test split, or the folds of a cross-validation protocol.

Every split is by speaker unless `--split random` asks for the seed's clip split. A split depends only
on the data, the ratios, the seed, the protocol and the fold, never on the model config, so two configs
with the same seed (and fold) are a paired comparison. Every design is checked against the corpus
before any work (`check_design`): one line naming the flag and what the corpus holds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.corpora import ADAPTERS
from harness.corpora.base import corpus_of
from harness.corpora.load import Corpus
from harness.errors import DataError

# Protocols whose folds come from the data, not from --cv_folds dealing the speakers.
DATA_FOLDS = ("emobox", "leave_one_speaker_out", "leave_one_session_out", "leave_one_corpus_out")


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # clip indices
    val: np.ndarray
    test: np.ndarray
    train_speakers: tuple[str, ...] = ()
    val_speakers: tuple[str, ...] = ()
    test_speakers: tuple[str, ...] = ()


def make_split(corpus: Corpus, cfg) -> Split:
    """The split of a RunConfig (its fold, under cross-validation)."""
    if cfg.protocol == "declared":
        return _declared_split(corpus)
    if cfg.cv_folds:
        if cfg.fold is None:  # a repeat is K runs, one per fold: there is no single split to return
            raise ValueError("a cross-validation split needs its fold")
        folds = protocol_folds(corpus, cfg.protocol, cfg.cv_folds, cfg.seed)
        return _fold_split(corpus, folds, cfg.fold, cfg.val_ratio, cfg.seed, cfg.cv_folds)
    if cfg.test_corpus:
        return _cross_corpus_split(corpus, cfg.test_corpus, cfg.val_ratio, cfg.seed)
    if cfg.split == "actor":
        return _speaker_split(corpus, cfg.train_ratio, cfg.val_ratio, cfg.seed)
    return _random_split(corpus, cfg.train_ratio, cfg.val_ratio, cfg.seed, cfg.mode)


def resolve_folds(cfg, corpus: Corpus):
    """The config with `cv_folds` set to its protocol's fold count where the data decides it; DataError
    when a given --cv_folds disagrees with the protocol."""
    if cfg.protocol not in DATA_FOLDS:
        return cfg
    k = len(protocol_folds(corpus, cfg.protocol, 0, 0))
    if cfg.cv_folds and cfg.cv_folds != k:
        raise DataError(f"--protocol {cfg.protocol} on {corpus.name} has {k} folds: leave --cv_folds out or set it "
                        f"to {k}, got {cfg.cv_folds}")
    return cfg if cfg.cv_folds == k else cfg.replace(cv_folds=k)


def check_design(corpus: Corpus, cfg) -> None:
    """DataError, before any work, where the corpus cannot hold the config's split or folds."""
    n = len(corpus.speakers)
    if cfg.test_corpus:
        names = [s.name for s in corpus.sources]
        if cfg.test_corpus not in names:
            raise DataError(f"--test_corpus {cfg.test_corpus!r}: expected one of the data's corpora "
                            f"({', '.join(names)})")
        if len(names) < 2:
            raise DataError(f"--test_corpus {cfg.test_corpus!r} needs at least one other corpus to train on")
    if cfg.protocol == "declared":
        _declared_split(corpus)
        return
    if cfg.cv_folds:
        if cfg.protocol == "kfold" and cfg.cv_folds > n:
            raise DataError(f"--cv_folds {cfg.cv_folds} needs at least {cfg.cv_folds} speakers (one test speaker per "
                            f"fold); the corpus has {n} (--protocol leave_one_speaker_out is one fold per speaker)")
        folds = protocol_folds(corpus, cfg.protocol, cfg.cv_folds, cfg.seed)
        n_val = max(1, round(n * cfg.val_ratio))
        largest = max(len(f) for f in folds)
        if n - largest - n_val < 1:
            raise DataError(f"--cv_folds {cfg.cv_folds} ({cfg.protocol}) on {n} speakers with --val_ratio "
                            f"{cfg.val_ratio}: a fold of {largest} test speaker(s) and {n_val} validation speaker(s) "
                            f"leave none to train on")
    elif cfg.split == "actor" and not cfg.test_corpus:
        _speaker_counts(len(corpus.speakers), cfg.train_ratio, cfg.val_ratio)


def protocol_folds(corpus: Corpus, protocol: str, k: int, seed: int) -> tuple[tuple[str, ...], ...]:
    """The test speakers of each fold."""
    if protocol == "kfold":
        return deal_folds(corpus, k, seed)
    if protocol == "emobox":
        return _published_folds(corpus, "emobox")
    if protocol == "leave_one_speaker_out":
        return tuple((s,) for s in corpus.speakers)
    if protocol == "leave_one_session_out":
        missing = sorted({c.speaker for c in corpus.clips if not c.session})
        if missing:
            raise DataError(f"--protocol leave_one_session_out: corpus {corpus.name} has no sessions "
                            f"(speaker {missing[0]} and {len(missing) - 1} more have none)")
        return _groups(corpus, lambda c: f"{c.corpus}:{c.session}")
    if protocol == "leave_one_corpus_out":
        if len({c.corpus for c in corpus.clips}) < 2:  # a manifest's `corpus` column may hold several
            raise DataError(f"--protocol leave_one_corpus_out needs at least 2 corpora, got {corpus.name}")
        return _groups(corpus, lambda c: c.corpus)
    raise ValueError(f"unknown protocol {protocol!r}")


def _groups(corpus: Corpus, key) -> tuple[tuple[str, ...], ...]:
    groups: dict[str, set[str]] = {}
    for c in corpus.clips:
        groups.setdefault(key(c), set()).add(c.speaker)
    owners: dict[str, set[str]] = {}
    for g, spk in groups.items():
        for s in spk:
            owners.setdefault(s, set()).add(g)
    split_over = sorted(s for s, gs in owners.items() if len(gs) > 1)
    if split_over:
        raise DataError(f"speaker {split_over[0]} is in more than one fold ({', '.join(sorted(owners[split_over[0]]))}): "
                        f"folds must keep a speaker on one side")
    return tuple(tuple(sorted(groups[g])) for g in sorted(groups))


def _published_folds(corpus: Corpus, name: str) -> tuple[tuple[str, ...], ...]:
    have = [a.name for a in ADAPTERS.values() if name in a.folds]
    if len(corpus.sources) > 1:
        raise DataError(f"--protocol {name} is the published folds of one corpus ({', '.join(have)}): it reads that "
                        f"corpus alone, not {corpus.name}")
    if name not in corpus.folds:
        raise DataError(f"--protocol {name}: corpus {corpus.name} has no published {name} folds "
                        f"(corpora that have: {', '.join(have)})")
    folds = corpus.folds[name]
    present = set(corpus.speakers)
    missing = [s for f in folds for s in f if s not in present]
    if missing:
        raise DataError(f"--protocol {name}: corpus {corpus.name} lacks {len(missing)} of the protocol's test speakers "
                        f"({', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''}): it needs all "
                        f"{sum(len(f) for f in folds)} of them")
    return folds


def deal_folds(corpus: Corpus, k: int, seed: int) -> tuple[tuple[str, ...], ...]:
    return cv_folds(corpus.speakers, k, seed, corpus.gender_of())


def cv_folds(speakers, k: int, seed: int, gender: dict[str, str] | None = None) -> tuple[tuple[str, ...], ...]:
    """The seed's deal of the speakers ('corpus:id') into K folds, balancing corpus and gender across folds.

    Each (corpus, gender) stratum is shuffled on its own and the strata are dealt round-robin one after
    another (men, then women, then speakers of unknown gender, corpus by corpus), so fold sizes differ by at
    most one and each fold holds about as many of each as the corpus allows. Depends only on the speakers,
    their genders, K and the seed: every row of a suite sees the same folds for the same seed.
    """
    gender = gender or {}
    rng = np.random.default_rng([seed, k])
    speakers = sorted(speakers)
    order: list[str] = []
    for name in dict.fromkeys(corpus_of(s) for s in speakers):
        mine = [s for s in speakers if corpus_of(s) == name]
        for g in ("m", "f", ""):
            stratum = [s for s in mine if gender.get(s, "") == g]
            if stratum:
                order += [str(s) for s in rng.permutation(stratum)]
    folds: list[list[str]] = [[] for _ in range(k)]
    for i, speaker in enumerate(order):
        folds[i % k].append(speaker)
    return tuple(tuple(sorted(f)) for f in folds)


def _fold_split(corpus: Corpus, folds, fold: int, val_ratio: float, seed: int, k: int) -> Split:
    """Fold `fold` is the test set; validation speakers are drawn with the seed from the other folds
    (`round(n_speakers * val_ratio)`, at least one); the rest train."""
    speakers = corpus.speakers
    test = folds[fold]
    rest = [s for s in speakers if s not in test]
    n_val = max(1, round(len(speakers) * val_ratio))
    val = tuple(sorted(str(s) for s in np.random.default_rng([seed, k, fold]).permutation(rest)[:n_val]))
    train = tuple(s for s in rest if s not in val)
    return by_speakers(corpus, train, val, tuple(test))


def _speaker_counts(n: int, train_ratio: float, val_ratio: float) -> tuple[int, int]:
    """(validation, test) speakers of a speaker-disjoint split of n; DataError where no speaker would train."""
    n_val = max(1, round(n * val_ratio))
    n_test = max(1, round(n * (1.0 - train_ratio - val_ratio)))
    if n - n_val - n_test < 1:
        raise DataError(
            f"a speaker-disjoint split of {n} speaker(s) with train_ratio={train_ratio}, val_ratio={val_ratio} "
            f"leaves a set without speakers (needs >= 3 speakers: one each for train, val and test)")
    return n_val, n_test


def _speaker_split(corpus: Corpus, train_ratio: float, val_ratio: float, seed: int) -> Split:
    speakers = corpus.speakers
    n_val, n_test = _speaker_counts(len(speakers), train_ratio, val_ratio)
    order = [str(s) for s in np.random.default_rng(seed).permutation(speakers)]
    return by_speakers(corpus, tuple(sorted(order[n_val + n_test:])), tuple(sorted(order[:n_val])),
                       tuple(sorted(order[n_val:n_val + n_test])))


def _cross_corpus_split(corpus: Corpus, test_corpus: str, val_ratio: float, seed: int) -> Split:
    """Test on every clip of one corpus; validation speakers are drawn with the seed from the others."""
    test = tuple(sorted({c.speaker for c in corpus.clips if c.corpus == test_corpus}))
    rest = [s for s in corpus.speakers if s not in test]
    n_val = max(1, round(len(rest) * val_ratio))
    if len(rest) - n_val < 1:
        raise DataError(f"--test_corpus {test_corpus}: the other corpora's {len(rest)} speaker(s) leave none to train "
                        f"on after {n_val} for validation")
    val = tuple(sorted(str(s) for s in np.random.default_rng(seed).permutation(rest)[:n_val]))
    return by_speakers(corpus, tuple(s for s in rest if s not in val), val, test)


def _declared_split(corpus: Corpus) -> Split:
    """The split a manifest declares in its `split` column (train, val, test); a speaker on two sides is an error."""
    sides: dict[str, set[str]] = {}
    for c in corpus.clips:
        if c.split not in ("train", "val", "test"):
            raise DataError(f"--protocol declared: clip {c.relpath!r} of {c.corpus} has split {c.split!r}: expected "
                            f"train, val or test (a manifest's `split` column)")
        sides.setdefault(c.speaker, set()).add(c.split)
    both = sorted(s for s, v in sides.items() if len(v) > 1)
    if both:
        raise DataError(f"--protocol declared: speaker {both[0]} is in {' and '.join(sorted(sides[both[0]]))} "
                        f"({len(both)} speaker(s) on more than one side): a declared split must keep each speaker "
                        f"on one side")
    of = {side: tuple(sorted(s for s, v in sides.items() if side in v)) for side in ("train", "val", "test")}
    empty = [side for side, spk in of.items() if not spk]
    if empty:
        raise DataError(f"--protocol declared: no clip is declared {empty[0]!r}")
    return by_speakers(corpus, of["train"], of["val"], of["test"])


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


def by_speakers(corpus: Corpus, train: tuple[str, ...], val: tuple[str, ...], test: tuple[str, ...]) -> Split:
    speaker_of = np.array([c.speaker for c in corpus.clips])
    return Split(train=np.flatnonzero(np.isin(speaker_of, train)), val=np.flatnonzero(np.isin(speaker_of, val)),
                 test=np.flatnonzero(np.isin(speaker_of, test)),
                 train_speakers=tuple(train), val_speakers=tuple(val), test_speakers=tuple(test))
