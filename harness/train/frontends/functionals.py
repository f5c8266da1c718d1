"""openSMILE functionals: eGeMAPS v02 (88, Eyben et al. 2016) and ComParE 2016 (6,373) per clip.

The `opensmile` wheel carries its own binary and configurations: no weights, CPU only. Audio is
resampled to 16 kHz first (the rate the feature sets were designed and published at), so corpora
recorded at different rates give comparable features.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.train.frontends import store
from harness.train.frontends.resample import ToRate

RATE = 16000
SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}


def params(name: str) -> dict:
    import opensmile

    return {"frontend": name, "feature_set": SETS[name], "level": "functionals", "sr": RATE,
            "opensmile": opensmile.__version__}


def cache_key(fingerprint: str, name: str) -> str:
    return store.store_key(fingerprint, params(name))


def functionals(corpus, name: str, cache_dir: Path | None, progress: bool = False) -> tuple[np.ndarray, dict]:
    """Float32 (n_clips, dim) in corpus order, and what to record about it."""
    import opensmile

    from harness.corpora.base import read_audio

    p = params(name)
    key = cache_key(corpus.fingerprint, name)
    tags = {"harness.features": name, "harness.feature_key": key,
            "harness.encoder": f"opensmile {opensmile.__version__} {SETS[name]} functionals"}
    cached = store.load_vectors(cache_dir, key)
    if cached is not None and len(cached) == len(corpus.clips):
        return cached, tags
    smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, SETS[name]),
                            feature_level=opensmile.FeatureLevel.Functionals)
    to_rate = ToRate(RATE)
    out = np.empty((len(corpus.clips), len(smile.feature_names)), dtype=np.float32)
    bar = store.Progress(name, len(corpus.clips), progress)
    for i, clip in enumerate(corpus.clips):
        samples, rate = read_audio(clip.path)
        out[i] = smile.process_signal(to_rate(samples, rate).numpy(), RATE).to_numpy(dtype=np.float32)[0]
        bar.step()
    timing = bar.close()
    # A silent or very short clip can give NaN in a few F0 functionals: 0 keeps it a valid input.
    np.nan_to_num(out, copy=False)
    store.save_vectors(cache_dir, key, out, {"data_root": str(corpus.root), "fingerprint": corpus.fingerprint,
                                             "n_clips": len(out), **p, **timing})
    return out, tags

