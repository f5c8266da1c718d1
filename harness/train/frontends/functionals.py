"""openSMILE functionals: eGeMAPS v02 (88, Eyben et al. 2016) and ComParE 2016 (6,373) per clip.

The `opensmile` wheel carries its own binary and configurations: no weights, CPU only. Audio is
resampled to 16 kHz first (the rate the feature sets were designed and published at), so corpora
recorded at different rates give comparable features. Each clip is extracted once and cached by its
content (`harness.train.clipcache`), in parallel processes when it pays (openSMILE is single-threaded).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.train import clipcache
from harness.train.extract import Recipe
from harness.train.frontends import store
from harness.train.frontends.resample import ToRate

RATE = 16000
SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}
DIMS = {"egemaps": 88, "compare": 6373}  # the sets' functionals per clip


def params(name: str) -> dict:
    import opensmile

    return {"frontend": name, "feature_set": SETS[name], "level": "functionals", "sr": RATE,
            "opensmile": opensmile.__version__}


def clip_params(name: str) -> dict:
    """What keys a clip's entry (`harness.train.clipcache`)."""
    return {**params(name), "store_version": store.STORE_VERSION}


def cache_key(fingerprint: str, name: str) -> str:
    """A corpus's key: its `harness.feature_key` tag, and the name of its array in the cache before per-clip entries."""
    return store.store_key(fingerprint, params(name))


class Functionals:
    """A clip's file -> its functionals, float32 (dim,): what `functionals` extracts per clip."""

    def __init__(self, name: str):
        import opensmile

        self.smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, SETS[name]),
                                     feature_level=opensmile.FeatureLevel.Functionals)
        self.to_rate = ToRate(RATE)

    def __call__(self, path: Path) -> np.ndarray:
        from harness.corpora.base import read_audio

        samples, rate = read_audio(path)
        x = self.smile.process_signal(self.to_rate(samples, rate).numpy(), RATE).to_numpy(dtype=np.float32)[0]
        # A silent or very short clip can give NaN in a few F0 functionals: 0 keeps it a valid input.
        return np.nan_to_num(x)


def functionals(corpus, name: str, cache_dir: Path | None, progress: bool = False) -> tuple[np.ndarray, dict]:
    """Float32 (n_clips, dim) in corpus order, and what to record about it."""
    import opensmile

    p = clip_params(name)
    key = cache_key(corpus.fingerprint, name)
    tags = {"harness.features": name, "harness.feature_key": key,
            "harness.encoder": f"opensmile {opensmile.__version__} {SETS[name]} functionals"}
    # A corpus-level array of the cache before per-clip entries is read: it is keyed by this corpus's content
    # and these parameters, so it is right; its rows become per-clip entries (once).
    cached = store.load_vectors(cache_dir, key)
    if cached is not None and cached.shape == (len(corpus.clips), DIMS[name]):
        clipcache.seed_from(cache_dir, p, corpus.clips, cached)
        return cached, tags
    out = clipcache.arrays(corpus.clips, Recipe("harness.train.frontends.functionals:Functionals", (name,)), p,
                           (DIMS[name],), cache_dir, name, progress)
    return out, tags
