"""Frozen self-supervised encoders (torchaudio's wav2vec 2.0, HuBERT and WavLM bundles): frame
embeddings of every transformer layer, per clip, into the ragged store.

Weights: `--encoder_checkpoint PATH`, else torchaudio's own download cache (`torch.hub`,
`$TORCH_HOME/hub/checkpoints/`), downloading there on a connected machine. A checkpoint is either
the bundle's own `.pth` (a state dict for the bundle's architecture) or a dict `{"params":
builder keyword arguments, "state_dict": ...}`: what `tiny_checkpoint` writes, so tests and a fresh
machine run every family's code path on a small randomly initialised model.

Layer N is the output of transformer layer N (1..L), as torchaudio's `extract_features` returns them.
Each clip's frames are cached once, by its content (`harness.train.clipcache`, read by `clipframes`).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from harness.errors import HarnessError
from harness.train import clipcache
from harness.train.clipcache import ClipCache
from harness.train.extract import extract
from harness.train.frontends import store
from harness.train.frontends.clipframes import open_clips
from harness.train.frontends.resample import ToRate

BUNDLES = {"wav2vec2_base": "WAV2VEC2_BASE", "wav2vec2_large": "WAV2VEC2_LARGE", "hubert_base": "HUBERT_BASE",
           "hubert_large": "HUBERT_LARGE", "wavlm_base": "WAVLM_BASE", "wavlm_base_plus": "WAVLM_BASE_PLUS",
           "wavlm_large": "WAVLM_LARGE"}
URL_BASE = "https://download.pytorch.org/torchaudio/models/"  # where torchaudio's bundles download from
# A small configuration of the same builders: what `tiny_checkpoint` saves (about 30 k parameters).
TINY = {"extractor_conv_layer_config": [(16, 10, 5), (16, 3, 2), (16, 3, 2), (16, 3, 2), (16, 3, 2), (16, 2, 2),
                                        (16, 2, 2)],
        "encoder_embed_dim": 32, "encoder_pos_conv_kernel": 16, "encoder_pos_conv_groups": 4,
        "encoder_num_layers": 2, "encoder_num_heads": 2, "encoder_ff_interm_features": 64}


def bundle(name: str):
    import torchaudio.pipelines

    return getattr(torchaudio.pipelines, BUNDLES[name])


def weights_url(name: str) -> str:
    path = bundle(name)._path
    return path if path.startswith("https") else URL_BASE + path


def hub_file(name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights_url(name)).name


def locate_weights(name: str, checkpoint: str | None) -> Path:
    """The weights file, downloading into torchaudio's cache if need be; else one line saying how to get them."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise HarnessError(f"invalid --encoder_checkpoint {checkpoint}: no such file (expected the weights of "
                               f"{name}: torchaudio's {Path(weights_url(name)).name} or a tiny_checkpoint file)")
        if not _torch_file(path):  # before any work, not when the first cell loads it
            raise HarnessError(f"invalid --encoder_checkpoint {checkpoint}: not a torch checkpoint (neither a zip "
                               f"archive nor a pickle, as torch.save writes them)")
        return path
    path = hub_file(name)
    if path.is_file():
        return path
    url = weights_url(name)
    try:
        import urllib.request

        # Reachable first, so that an offline machine is told in seconds, with nothing created.
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=15).close()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=True)
    except Exception as e:  # no network, DNS, HTTP, disk: all mean the same to the user
        reason = str(getattr(e, "reason", e)) or type(e).__name__
        raise HarnessError(f"no weights for --features {name}: not in torchaudio's cache {path} "
                           f"(TORCH_HOME={os.environ.get('TORCH_HOME', 'unset')}) and downloading {url} failed "
                           f"({reason}); fetch that file on a connected machine and pass --encoder_checkpoint PATH "
                           f"(or put it in that cache)") from None
    return path


def _torch_file(path: Path) -> bool:
    """What torch.save writes: a zip archive, or (the legacy format) a pickle, protocol 2 or later."""
    import zipfile

    with open(path, "rb") as f:
        return f.read(1) == b"\x80" or zipfile.is_zipfile(f)


def load_encoder(name: str, path: Path) -> tuple[torch.nn.Module, bool]:
    """The encoder in eval mode, and whether its bundle normalises the waveform first (the large ones)."""
    from torchaudio.models import wav2vec2_model, wavlm_model

    b = bundle(name)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's message runs to several lines: keep the one naming the fault
        lines = [x.strip() for x in str(e).split("WeightsUnpickler error:")[-1].splitlines() if x.strip()]
        first = lines[0] if lines else type(e).__name__
        raise HarnessError(f"invalid --encoder_checkpoint {path}: not a torch checkpoint ({first})") from None
    if isinstance(obj, dict) and "state_dict" in obj and "params" in obj:
        params, state, normalise = {**b._params, **obj["params"]}, obj["state_dict"], bool(obj.get("normalize_waveform"))
    else:
        params, state, normalise = b._params, obj, bool(b._normalize_waveform)
    builder = wavlm_model if b._model_type == "WavLM" else wav2vec2_model
    model = builder(**params)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HarnessError(f"invalid --encoder_checkpoint {path}: its weights do not fit {name} ({first})") from None
    return model.eval(), normalise


def tiny_checkpoint(name: str, path: Path, seed: int = 0) -> Path:
    """A randomly initialised small model of `name`'s family, saved as a checkpoint `load_encoder` reads."""
    from torchaudio.models import wav2vec2_model, wavlm_model

    b = bundle(name)
    torch.manual_seed(seed)
    params = {**b._params, **TINY}
    model = (wavlm_model if b._model_type == "WavLM" else wav2vec2_model)(**params)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params": TINY, "state_dict": model.state_dict(), "normalize_waveform": False}, path)
    return path


@torch.inference_mode()
def embed(model: torch.nn.Module, wave: torch.Tensor, layers: list[int], normalise: bool):
    """One clip (samples,) at the encoder's rate -> float16 (frames, len(layers), dim) on the CPU."""
    wave = wave[None]
    if normalise:
        wave = torch.nn.functional.layer_norm(wave, wave.shape)
    hidden, _ = model.extract_features(wave, num_layers=layers[-1])
    return torch.stack([hidden[i - 1][0] for i in layers], 1).to(torch.float16).cpu().numpy()


def n_layers(model: torch.nn.Module) -> int:
    return len(model.encoder.transformer.layers)


def cache_key(fingerprint: str, name: str, digest: str, layers: list[int] | str) -> str:
    """A corpus's key: its `harness.feature_key` tag, and the name of its store in the cache before per-clip entries."""
    return store.store_key(fingerprint, {"frontend": name, "weights_sha256": digest, "layers": layers,
                                         "sr": bundle(name).sample_rate})


def candidate_keys(fingerprint: str, name: str, digest: str, layer: int | None) -> list[str]:
    """The corpus-level stores that can serve a request, best first: all layers, then the one layer alone."""
    return [cache_key(fingerprint, name, digest, "all")] + (
        [cache_key(fingerprint, name, digest, [layer])] if layer is not None else [])


def clip_caches(cache_dir: Path, name: str, digest: str, layer: int | None) -> list[ClipCache]:
    """The per-clip entries that can serve a request: all layers first, then (for one layer) that layer's."""
    def params(layers: list[int] | str) -> dict:
        return {"frontend": name, "weights_sha256": digest, "layers": layers, "sr": bundle(name).sample_rate,
                "store_version": store.STORE_VERSION}
    return [ClipCache(cache_dir, params("all"))] + ([ClipCache(cache_dir, params([layer]))] if layer is not None else [])


class Embedder:
    """A clip's file -> its frames (frames, len(layers), dim) float16, from a loaded encoder."""

    def __init__(self, model: torch.nn.Module, rate: int, layers: list[int], normalise: bool, device: torch.device):
        self.model, self.layers, self.normalise, self.device = model, layers, normalise, device
        self.to_rate = ToRate(rate)

    def __call__(self, path: Path):
        from harness.corpora.base import read_audio

        samples, sr = read_audio(path)
        return embed(self.model, self.to_rate(samples, sr).to(self.device), self.layers, self.normalise)


def encoder_frames(corpus, name: str, checkpoint: str | None, layer: int | None, cache_dir: Path | None,
                   device: torch.device, progress: bool = False):
    """Every clip's frames of `name` (all layers, or `layer` alone): a `clipframes.ClipFrameStore` of the
    per-clip cache, each clip extracted once whatever corpus it is read in; or a corpus's old store."""
    path = locate_weights(name, checkpoint)
    cache_dir = Path(cache_dir) if cache_dir is not None else clipcache.scratch_dir()  # frames live in files
    digest = store.sha256_file(path, cache_dir)
    rate = bundle(name).sample_rate
    tags = {"harness.features": name, "harness.encoder": name, "harness.encoder_sha256": digest}

    # A contiguous store of the cache before per-clip entries is read for the corpus it was made for (keyed
    # by that corpus's content, so it is right); it is not split into per-clip files, which would double
    # gigabytes on disk: a pooled or filtered corpus extracts its clips into per-clip entries once more.
    for k in candidate_keys(corpus.fingerprint, name, digest, layer):
        found = store.open_frames(cache_dir, k, layer)
        if found is not None and len(found) == len(corpus.clips):  # (a layer it lacks does not open)
            return found, {**tags, "harness.feature_key": k, "harness.encoder_layers": _layers_tag(found, layer)}

    key = cache_key(corpus.fingerprint, name, digest, "all" if layer is None else [layer])
    caches = clip_caches(cache_dir, name, digest, layer)
    found, missing = open_clips(caches, corpus.clips, layer)
    if found is None:
        model, normalise = load_encoder(name, path)
        total = n_layers(model)
        if layer is not None and layer > total:
            raise HarnessError(f"invalid --layer {layer}: {name} has transformer layers 1..{total}")
        layers = list(range(1, total + 1)) if layer is None else [layer]
        target = caches[-1]  # all layers, or the one layer asked for
        target.record({"weights": str(path), "layers": layers, "n_layers_total": total})
        bar = store.Progress(name, len(missing), progress)
        # In this process, not spawned ones: torch already uses every core for an encoder, and a GPU is
        # not to be shared by processes.
        extract(missing, Embedder(model.to(device), rate, layers, normalise, device), target, bar, parallel=False)
        target.timed(bar.close(), len(missing))
        found, missing = open_clips(caches, corpus.clips, layer)
    return found, {**tags, "harness.feature_key": key, "harness.encoder_layers": _layers_tag(found, layer)}


def _layers_tag(found, layer: int | None) -> str:
    total = found.meta["n_layers_total"]
    return f"layer {layer} of 1..{total}" if layer is not None else f"weighted sum of layers 1..{total}"

