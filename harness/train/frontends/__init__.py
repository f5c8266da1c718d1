"""Front-ends other than log-mel: openSMILE functionals and frozen self-supervised encoders,
extracted once per clip into a content-keyed cache (`harness.train.clipcache`), trained on by a head
(`harness.train.heads`). `features(cfg, corpus, ...)` is the one entry point `prepare` calls."""
from __future__ import annotations

from pathlib import Path

from harness.config import FUNCTIONALS, RunConfig


def check_weights(cfg: RunConfig) -> None:
    """Before any work: an encoder without weights is one line saying where it looked and how to get them."""
    if cfg.features != "logmel" and cfg.features not in FUNCTIONALS:
        from harness.train.frontends import ssl

        ssl.locate_weights(cfg.features, cfg.encoder_checkpoint)


def features(cfg: RunConfig, corpus, cache_dir: Path, device, progress: bool = False):
    """(features, tags): a float32 (n_clips, dim) array of functionals, or a `store.FrameStore` of encoder
    frames; the tags record the front-end, its weights' hash and its layers."""
    if cfg.features in FUNCTIONALS:
        from harness.train.frontends.functionals import functionals

        return functionals(corpus, cfg.features, cache_dir, progress)
    from harness.train.frontends.ssl import encoder_frames

    return encoder_frames(corpus, cfg.features, cfg.encoder_checkpoint, cfg.layer, cache_dir, device, progress)


def extraction_status(cfg: RunConfig, fingerprint: str, n_clips: int, cache_dir: Path, clips=None) -> str:
    """One line for `--dry-run`: this front-end cached for this corpus, or what extracting the clips it lacks
    will cost at the rate last measured on this machine (any corpus). With the corpus's `clips`, the clips
    already cached by content (another corpus, another label filter) are counted."""
    import json

    from harness.train.frontends import store

    if cfg.features in FUNCTIONALS:
        from harness.train.clipcache import ClipCache
        from harness.train.frontends.functionals import cache_key, clip_params

        keys = [cache_key(fingerprint, cfg.features)]
        caches = [ClipCache(cache_dir, clip_params(cfg.features))]
    else:
        from harness.train.frontends import ssl

        digest = store.sha256_file(ssl.locate_weights(cfg.features, cfg.encoder_checkpoint), cache_dir)
        keys = ssl.candidate_keys(fingerprint, cfg.features, digest, cfg.layer)
        caches = ssl.clip_caches(cache_dir, cfg.features, digest, cfg.layer)
    base = store.root(cache_dir)
    if any((base / f"{k}.npy").exists() or (base / k / "meta.json").exists() for k in keys):
        return f"{cfg.features}: cached for this corpus (key {keys[0]}), nothing to extract"
    todo, cached_note = n_clips, ""
    if clips is not None:
        contents = {c.sha1 for c in clips}
        have = set().union(*(c.present(contents) for c in caches))
        todo = len(contents - have)
        if not todo:
            return f"{cfg.features}: cached for this corpus (every clip, key {caches[0].key}), nothing to extract"
        if have:
            cached_note = f" ({len(have)} of {len(contents)} already cached)"
    rates = []
    metas = list(base.glob("*.json")) + list(base.glob("*/meta.json")) + list((Path(cache_dir) / "clips").glob("*/meta.json"))
    for meta in metas:
        try:
            m = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if m.get("frontend") == cfg.features and m.get("clips_per_second"):
            rates.append(float(m["clips_per_second"]))
    if not rates:
        return f"{cfg.features}: {todo} clips to extract once{cached_note}, not timed on this machine yet " \
               f"(figures per family: benchmarks/README.md, frontends.py)"
    rate = sum(rates) / len(rates)
    return f"{cfg.features}: {todo} clips to extract once{cached_note}, about {todo / rate / 60:.1f} min " \
           f"at the {rate:.1f} clips/s measured here"
