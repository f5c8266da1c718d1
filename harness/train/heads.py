"""Heads on a frozen front-end: `linear` and `mlp` (the EmoBox head: 256 hidden, ReLU, dropout).

Input is either a vector per clip (openSMILE functionals) or an encoder's frames (batch, frames,
layers, dim) with each clip's length, both z-scored with the training split's statistics (per
feature; per layer and dimension over the frames), or with each corpus's or speaker's own
(`--normalize`, harness.train.normalize). Frames: the layers are combined by a learned
softmax-weighted sum (SUPERB; one layer with `--layer N`), then statistics pooling (mean and std
over the clip's own frames).

`Frames` is a padded batch that supports what training does to a batch (index, scale, add, mask),
so the training loop treats it like a tensor.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from harness.train.normalize import GroupNorm, group_norm

HIDDEN = 256


class Head(nn.Module):
    """`net` on a clip's vector: the functionals, or an encoder's layers mixed and statistics-pooled (`pool`).
    `net` is given for scikit-learn's models (harness.train.classic), whose layers stay uniformly mixed."""

    def __init__(self, kind: str, n_classes: int, dim: int, n_layers: int = 0, dropout: float = 0.0,
                 net: nn.Module | None = None):
        super().__init__()
        self.frames = n_layers > 0  # 0: a vector per clip
        self.layer_logits = nn.Parameter(torch.zeros(n_layers)) if n_layers > 1 else None
        d = 2 * dim if self.frames else dim
        drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if net is not None:
            self.net = net
        elif kind == "linear":
            self.net = nn.Sequential(drop, nn.Linear(d, n_classes))
        else:
            self.net = nn.Sequential(nn.Linear(d, HIDDEN), nn.ReLU(), drop, nn.Linear(HIDDEN, n_classes))

    def layer_weights(self) -> torch.Tensor | None:
        return None if self.layer_logits is None else torch.softmax(self.layer_logits.detach(), 0)

    def forward(self, x) -> torch.Tensor:
        return self.net(self.pool(x))

    def pool(self, x) -> torch.Tensor:
        """The vector `net` reads: the input itself, or mean and std over the frames of the mixed layers."""
        if not self.frames:
            return x
        if isinstance(x, Moments):  # the same pooling, from each clip's moments (no frames to read)
            w = torch.softmax(self.layer_logits, 0) if self.layer_logits is not None else x.mean.new_ones(1)
            mean = torch.einsum("bld,l->bd", x.mean, w)
            second = torch.einsum("blmd,l,m->bd", x.second, w, w)
            std = ((second - mean * mean).clamp_min(0) + 1e-5).sqrt()
            return torch.cat([mean, std], 1)
        h = x.x  # (batch, frames, layers, dim), z-scored per layer and dimension
        if self.layer_logits is not None:
            h = torch.einsum("btld,l->btd", h, torch.softmax(self.layer_logits, 0))
        else:
            h = h[:, :, 0]
        mask = (torch.arange(h.shape[1], device=h.device)[None] < x.lengths[:, None]).unsqueeze(-1).to(h.dtype)
        n = x.lengths[:, None].to(h.dtype)
        mean = (h * mask).sum(1) / n
        std = ((((h - mean[:, None]) ** 2) * mask).sum(1) / n + 1e-5).sqrt()
        return torch.cat([mean, std], 1)


def head_shape(features) -> dict:
    """What a head needs to know of its input (saved in the checkpoint to rebuild it)."""
    if isinstance(features, torch.Tensor):
        return {"dim": int(features.shape[1]), "n_layers": 0}
    return {"dim": features.dim, "n_layers": features.n_layers}


def head_shape_dim(shape: dict) -> int:
    """The length of the vector a head's `net` reads: the functionals, or mean and std of the pooled frames."""
    return 2 * shape["dim"] if shape["n_layers"] else shape["dim"]


def build_head(kind: str, n_classes: int, dropout: float, shape: dict) -> Head:
    return Head(kind, n_classes, shape["dim"], shape["n_layers"], dropout)


class Frames:
    """A padded batch of frame embeddings (batch, frames, layers, dim) and each clip's length."""

    def __init__(self, x: torch.Tensor, lengths: torch.Tensor):
        self.x, self.lengths = x, lengths

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def shape(self) -> torch.Size:
        return self.x.shape

    @property
    def device(self) -> torch.device:
        return self.x.device

    def __getitem__(self, idx) -> "Frames":
        return Frames(self.x[idx], self.lengths[idx])

    def __rmul__(self, lam: float) -> "Frames":
        return Frames(lam * self.x, self.lengths)

    def __add__(self, other: "Frames") -> "Frames":
        # Mixup of two clips: their padded frames summed, the longer one's length (the other's padding is 0).
        return Frames(self.x + other.x, torch.maximum(self.lengths, other.lengths))

    def contiguous(self, memory_format=None) -> "Frames":
        return self


class FrameInputs:
    """Clips `idx` of a frame store as batches: `inputs[positions]` reads and pads those clips."""

    def __init__(self, store, idx: np.ndarray, norm, device: torch.device):
        self.store, self.idx, self.device, self.norm = store, np.asarray(idx), device, norm

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, pos) -> Frames:
        clips = np.atleast_1d(self.idx[pos.cpu().numpy() if isinstance(pos, torch.Tensor) else pos])
        arrays = [self.store.clip(int(i)) for i in clips]
        t = max(a.shape[0] for a in arrays)
        x = np.zeros((len(arrays), t, *arrays[0].shape[1:]), dtype=np.float32)
        for j, a in enumerate(arrays):
            x[j, :a.shape[0]] = a
        lengths = torch.tensor([a.shape[0] for a in arrays], device=self.device)
        mean, std = _stats(self.norm, clips, self.device)  # (layers, dim), or per clip (batch, layers, dim)
        if mean.dim() == 3:
            mean, std = mean[:, None], std[:, None]
        x = (torch.from_numpy(x).to(self.device) - mean) / std
        pad = torch.arange(t, device=self.device)[None] >= lengths[:, None]
        x[pad] = 0.0  # padding stays 0 after standardising: the head's mask ignores it, mixup adds nothing
        return Frames(x, lengths)


class Moments:
    """A batch of clips as the standardised layers' moments over each clip's frames: E[z_l] (batch, layers,
    dim) and E[z_l z_m] (batch, layers, layers, dim). Statistics pooling of any weighted sum of layers is
    exact from them, so a head that neither masks nor mixes frames trains on these, not on the frames
    (about 14x less to read for a base encoder's 12 layers; `benchmarks/frontends.py` (e))."""

    def __init__(self, mean: torch.Tensor, second: torch.Tensor):
        self.mean, self.second = mean, second

    def __len__(self) -> int:
        return self.mean.shape[0]

    def __getitem__(self, idx) -> "Moments":
        return Moments(self.mean[idx], self.second[idx])

    def contiguous(self, memory_format=None) -> "Moments":
        return self


class MomentInputs:
    """Clips `idx` of a frame store as `Moments`, standardised with the training frames' mean and std."""

    def __init__(self, store, idx: np.ndarray, norm, device: torch.device):
        m1, m2 = store.moments()
        self.m1, self.m2, self.idx, self.device, self.norm = m1, m2, np.asarray(idx), device, norm

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, pos) -> Moments:
        clips = np.atleast_1d(self.idx[pos.cpu().numpy() if isinstance(pos, torch.Tensor) else pos])
        m1 = torch.from_numpy(np.stack([self.m1[i] for i in clips])).to(self.device)
        m2 = torch.from_numpy(np.stack([self.m2[i] for i in clips])).to(self.device)
        mu, sd = _stats(self.norm, clips, self.device)
        if mu.dim() == 2:  # one (layers, dim) for every clip
            mu, sd = mu[None], sd[None]
        mean = (m1 - mu) / sd
        # E[(x_l - mu_l)(x_m - mu_m)] / (sd_l sd_m), from E[x_l x_m] and E[x_l]; axes (batch, l, m, dim)
        second = (m2 - mu[:, :, None] * m1[:, None] - mu[:, None] * m1[:, :, None] + mu[:, :, None] * mu[:, None]) \
            / (sd[:, :, None] * sd[:, None])
        return Moments(mean, second)


class FrameMasks(nn.Module):
    """SpecAugment on frame embeddings: per clip one time mask (up to `time` frames, inside the clip) and
    one channel mask (up to `channels` embedding dimensions), set to 0 on every layer."""

    def __init__(self, channels: int, time: int):
        super().__init__()
        self.channels, self.time = channels, time

    def forward(self, b: Frames) -> Frames:
        x = b.x.clone()
        n, t, _, d = x.shape
        for j in range(n):
            length = int(b.lengths[j])
            w = int(torch.randint(0, min(self.time, length) + 1, ()))
            s = int(torch.randint(0, length - w + 1, ()))
            x[j, s:s + w] = 0
            w = int(torch.randint(0, min(self.channels, d) + 1, ()))
            s = int(torch.randint(0, d - w + 1, ()))
            x[j, :, :, s:s + w] = 0
        return Frames(x, b.lengths)


def _stats(norm, clips: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std that standardise `clips`: one pair for all, or each clip's group's (`GroupNorm`)."""
    mean, std = norm.of(clips) if isinstance(norm, GroupNorm) else norm
    return torch.as_tensor(mean, device=device), torch.as_tensor(std, device=device)


def input_norm(features, tr: np.ndarray, groups: np.ndarray | None = None):
    """Standardisation from the training split: a scalar for log-mel (as ever), per feature for
    functionals, per layer and dimension over the training clips' frames for an encoder. With `groups`
    (`--normalize corpus | speaker`), each group's own statistics instead (`normalize.GroupNorm`)."""
    if groups is not None:
        return group_norm(features, groups)
    if not isinstance(features, torch.Tensor):
        mean, std = features.frame_stats(tr)
        return torch.from_numpy(mean), torch.from_numpy(std)
    train = features[tr]
    if train.dim() == 2:
        return train.mean(0), train.std(0) + 1e-6
    return float(train.mean()), float(train.std()) + 1e-6


def model_inputs(features, idx: np.ndarray, norm, device: torch.device, frames: bool = False):
    """What a model takes for clips `idx`: standardised tensors on `device`; for an encoder, the clips'
    moments, or with `frames` (training batches that SpecAugment masks or mixup mixes) their frames."""
    if not isinstance(features, torch.Tensor):
        return (FrameInputs if frames else MomentInputs)(features, idx, norm, device)
    mean, std = _stats(norm, np.asarray(idx), features.device)
    return ((features[idx] - mean) / std).to(device)
