"""A set of trained models applied to new clips: features through the same entry points `prepare` uses,
standardised as each model was trained, class probabilities averaged over the models.

The models of one prediction must agree on what they read and what they answer (front-end and its
settings, label set): `load` says which runs disagree, before any audio is read.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from harness.config import RunConfig
from harness.errors import HarnessError

# What the models of one prediction share: the front-end's input, its standardisation and the answer's meaning.
SHARED = ("features", "sr", "n_mels", "n_fft", "hop_length", "layer", "mode", "normalize")
# `--normalize corpus | speaker`: a group's statistics from fewer clips than this are refused. The z-scores'
# scale is off by the std's relative error, about 1/sqrt(2(n-1)): 24% at 10 clips, 35% at 5, 71% at 2.
MIN_GROUP_CLIPS = 10


@dataclass
class Ensemble:
    models: list[torch.nn.Module]
    checkpoints: list[dict]
    cfg: RunConfig  # the first model's; SHARED is the same for all
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.models)


def load(paths: Sequence[Path], names: Sequence[str], device: torch.device) -> Ensemble:
    """The checkpoints' models; HarnessError naming two runs that disagree on labels or front-end."""
    from harness.train.run import checkpoint_config, load_checkpoint

    models, ckpts = [], []
    for p in paths:
        model, ckpt = load_checkpoint(p, device="cpu")
        models.append(model.to(device))
        ckpts.append(ckpt)
    first = ckpts[0]
    for name, ck in zip(names[1:], ckpts[1:]):
        if list(ck["classes"]) != list(first["classes"]):
            raise HarnessError(f"the runs disagree on labels: {names[0]} answers {', '.join(first['classes'])}, "
                               f"{name} {', '.join(ck['classes'])}: predict with one run (--run)")
        for key in SHARED:  # as each was trained (a checkpoint older than a field: that field's old meaning)
            a, b = getattr(checkpoint_config(first), key), getattr(checkpoint_config(ck), key)
            if a != b:
                raise HarnessError(f"the runs disagree on the front-end: {key} is {a!r} in {names[0]} and {b!r} in "
                                   f"{name}: predict with one run (--run)")
    return Ensemble(models=models, checkpoints=ckpts, cfg=checkpoint_config(first),
                    classes=tuple(first["classes"]))


def features(cfg: RunConfig, corpus, cache_dir: Path | None, device: torch.device, progress: bool = False):
    """The clips' features, exactly as training computed its own (`harness.train.data.corpus_features`)."""
    from harness.train.data import corpus_features

    return corpus_features(cfg, corpus, cache_dir, device, progress)[0]


def check_groups(cfg: RunConfig, clips, where: str) -> None:
    """Before any work: under `--normalize corpus | speaker` every group of the inputs (a manifest's or a
    corpus's speakers, else the whole input) has enough clips for its own statistics."""
    from harness.train.normalize import TRANSDUCTIVE, group_ids

    if cfg.normalize not in TRANSDUCTIVE:
        return
    groups = group_ids(clips, cfg.normalize)
    counts = np.bincount(groups)
    if counts.min() < MIN_GROUP_CLIPS:
        names = sorted({c.corpus if cfg.normalize == "corpus" else c.speaker for c in clips})
        small = names[int(counts.argmin())]
        raise HarnessError(
            f"{where}: the model standardises each {cfg.normalize} by its own clips (--normalize {cfg.normalize}) "
            f"and {cfg.normalize} {small!r} has {counts.min()} clip(s), fewer than the {MIN_GROUP_CLIPS} its "
            f"statistics need: give more clips"
            + (", or a manifest with a speaker column (all clips of one speaker together)"
               if cfg.normalize == "speaker" else ""))


def describe_norm(cfg: RunConfig) -> str:
    if cfg.normalize == "train":
        return "inputs standardised with each model's training statistics"
    return f"inputs standardised per {cfg.normalize} with the inputs' own statistics (--normalize {cfg.normalize})"


def input_norms(ens: Ensemble, feats, clips) -> list:
    """What standardises each model's inputs: its training statistics (`train`, in its checkpoint), or under
    `corpus` / `speaker` the inputs' own groups' statistics (the same for every model)."""
    from harness.train import heads
    from harness.train.normalize import TRANSDUCTIVE, group_ids

    if ens.cfg.normalize in TRANSDUCTIVE:
        own = heads.input_norm(feats, None, group_ids(clips, ens.cfg.normalize))
        return [own] * len(ens)
    return [tuple(ck["norm"]) if ck["norm"] is not None else None for ck in ens.checkpoints]


def probabilities(ens: Ensemble, feats, clips, device: torch.device) -> np.ndarray:
    """(models, clips, classes): each model's softmax on its standardised inputs (`input_norms`)."""
    from harness.train import heads
    from harness.train.run import predict

    idx = np.arange(len(feats))
    out = []
    with torch.inference_mode():
        for model, norm in zip(ens.models, input_norms(ens, feats, clips)):
            x = heads.model_inputs(feats, idx, norm, device)
            out.append(torch.softmax(predict(model, x), 1).cpu().numpy())
    return np.stack(out)


def summarise(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean probabilities (clips, classes), predicted class index, spread): the spread is the standard
    deviation over the models (ddof 1) of the predicted class's probability, 0 for one model."""
    mean = probs.mean(0)
    pred = mean.argmax(1)
    picked = probs[:, np.arange(probs.shape[1]), pred]  # (models, clips)
    spread = picked.std(0, ddof=1) if len(probs) > 1 else np.zeros(probs.shape[1])
    return mean, pred, spread


def predict_corpus(ens: Ensemble, corpus, cache_dir: Path | None, device: torch.device, progress: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean probabilities, predicted class and spread of every clip of `corpus`."""
    feats = features(ens.cfg, corpus, cache_dir, device, progress)
    return summarise(probabilities(ens, feats, corpus.clips, device))


def frame(paths: Sequence[str], classes: Sequence[str], mean: np.ndarray, pred: np.ndarray, spread: np.ndarray,
          with_spread: bool):
    """The predictions as a table: path, label, prob_<class>..., and for several models the spread."""
    import pandas as pd

    out = pd.DataFrame({"path": list(paths), "label": [classes[i] for i in pred]})
    for j, c in enumerate(classes):
        out[f"prob_{c}"] = mean[:, j].astype(float)
    if with_spread:
        out["spread"] = spread.astype(float)
    return out
