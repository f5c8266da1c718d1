"""The data side of a training run: the corpus a config reads, its features from the per-clip cache, and the
split, as one `Prepared` (`prepare`); shared by training, `suite run`'s scan and `harness predict`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.config import RunConfig
from harness.corpora.load import Corpus, load_corpus
from harness.train import frontends
from harness.train.features import compute_features
from harness.train.splits import Split, check_design, make_split, resolve_folds

# The RunConfig fields `prepare` reads: runs that agree on them can share one `Prepared`.
PREPARE_FIELDS = ("data_root", "corpus", "labels", "label_map", "protocol", "test_corpus", "mode", "split",
                  "train_ratio", "val_ratio", "cv_folds", "fold", "seed", "sr", "n_mels", "n_fft", "hop_length",
                  "features", "layer", "encoder_checkpoint")
# The fields the corpus scan and the features depend on: runs that agree on them differ only in their split.
FEATURE_FIELDS = ("data_root", "corpus", "labels", "label_map", "sr", "n_mels", "n_fft", "hop_length", "features",
                  "layer", "encoder_checkpoint")


def default_cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", ".cache")).expanduser()


def synthetic_root(cache_dir: Path, n_actors: int = 8, seed: int = 0) -> Path:
    """The embedded default corpus, generated once into the cache."""
    from harness.train import synth

    root = cache_dir / "synth" / f"v{synth.SYNTH_VERSION}-actors{n_actors}-seed{seed}"
    if not synth.is_complete(root, n_actors, seed, 16000):
        # Generate beside, then rename: parallel workers never see half a corpus.
        tmp = root.with_name(f"{root.name}.{os.getpid()}.tmp")
        import shutil

        synth.generate_corpus(tmp, n_actors=n_actors, seed=seed)
        if root.exists() and not synth.is_complete(root, n_actors, seed, 16000):
            shutil.rmtree(root, ignore_errors=True)  # left half-written by an older, interrupted run
        try:
            tmp.rename(root)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another worker won the race
    return root


def scan_data(cfg: RunConfig, cache_dir: Path | None = None) -> Corpus:
    """The corpus a config reads: `--data_root` through its adapters, or the cached synthetic default."""
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    roots = cfg.data_roots or (str(synthetic_root(cache_dir)),)
    return load_corpus(roots, cfg.corpus_names, cache_dir, cfg.label_mapping, cfg.keep_labels)


def checked_config(cfg: RunConfig, corpus: Corpus) -> RunConfig:
    """The config with its protocol's fold count from the data, checked against the corpus (DataError before
    any work): what `train` and `suite run` run."""
    cfg = resolve_folds(cfg, corpus)
    check_design(corpus, cfg)
    return cfg


def data_kind(corpus: Corpus) -> str:
    """What the runs call their data (tag `harness.data`): synthetic wherever a `harness synth` folder lies."""
    from harness.train.synth import is_synthetic

    return "synthetic" if any(is_synthetic(s.root) for s in corpus.sources) else corpus.name


@dataclass
class Prepared:
    corpus: Corpus
    features: Any  # log-mel (n, 1, n_mels, frames) in dB; functionals (n, dim); or an encoder's FrameStore
    labels: torch.Tensor
    split: Split
    classes: tuple[str, ...]
    data_root: Path
    synthetic: bool
    kind: str = ""  # tag `harness.data`: synthetic, or the corpora's names
    frontend_tags: dict = field(default_factory=dict)  # front-end, weights' hash, layers (empty for log-mel)


def prepare(cfg: RunConfig, cache_dir: Path | None = None, progress: bool = False,
            reuse: Prepared | None = None) -> Prepared:
    """Everything before training; raises HarnessError on bad data before any training. `reuse`: a
    Prepared that agrees with `cfg` on FEATURE_FIELDS (a suite worker's previous cell): its corpus scan
    and features are taken as they are and only the split is made anew (the scan alone cost a cell 0.05 s)."""
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    frontends.check_weights(cfg)  # an encoder without weights: one line before any work
    corpus = reuse.corpus if reuse else scan_data(cfg, cache_dir)
    cfg = checked_config(cfg, corpus)  # a protocol's fold count from the data, wherever prepare is called from
    split = make_split(corpus, cfg)
    if reuse:
        feats, tags = reuse.features, reuse.frontend_tags
    else:
        feats, tags = corpus_features(cfg, corpus, cache_dir, resolve_device(cfg.device), progress)
    kind = reuse.kind if reuse else data_kind(corpus)
    return Prepared(corpus=corpus, features=feats, labels=torch.from_numpy(corpus.labels(cfg.mode)),
                    split=split, classes=corpus.class_names(cfg.mode), data_root=corpus.root,
                    synthetic=kind == "synthetic", kind=kind, frontend_tags=tags)


def corpus_features(cfg: RunConfig, corpus: Corpus, cache_dir: Path | None, device: torch.device,
                    progress: bool = False) -> tuple[Any, dict]:
    """(features, tags) of every clip of `corpus` for `cfg`'s front-end, from the per-clip cache: log-mel
    (n, 1, n_mels, frames); functionals (n, dim) as a tensor; or an encoder's frame store. What training and
    `harness predict` both read."""
    if cfg.features == "logmel":
        return compute_features(corpus, cfg.sr, cfg.n_mels, cfg.n_fft, cfg.hop_length, cache_dir, progress), {}
    feats, tags = frontends.features(cfg, corpus, cache_dir, device, progress)
    return (torch.from_numpy(feats) if isinstance(feats, np.ndarray) else feats), tags


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from harness.errors import ConfigError
        raise ConfigError("device", "cuda was asked for but torch sees no CUDA device")
    return torch.device(name)
