"""Losses and samplers for imbalanced classes: class weights, focal loss,
label smoothing and a class-balanced sampler."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

# Class weights are inverse class frequencies normalised to mean 1, then
# clipped so that a rare class cannot dominate the loss (the seed: "Extreme
# weights are clipped to prevent training instability").
WEIGHT_CLIP = (0.25, 4.0)


def class_weights(train_labels: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(train_labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    present = counts > 0
    w[present] /= w[present].mean()
    w[present] = np.clip(w[present], *WEIGHT_CLIP)
    return torch.tensor(w, dtype=torch.float32)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) with optional class weights and label smoothing.

    Per example: sum_c q_c * w_c * (1 - p_c)^gamma * (-log p_c), where q is the
    (smoothed) target distribution, reduced like `nn.CrossEntropyLoss`
    (divided by the summed weight of the true classes). With gamma=0 it is
    exactly weighted, label-smoothed cross-entropy.
    """

    def __init__(self, gamma: float, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits.float(), dim=1)
        k = logits.shape[1]
        w = self.weight if self.weight is not None else torch.ones(k, device=logits.device)
        per_class = -w * (1.0 - logp.exp()).pow(self.gamma) * logp  # (batch, k)
        eps = self.label_smoothing
        true = per_class.gather(1, target[:, None]).squeeze(1)
        loss = (1.0 - eps) * true + (eps / k) * per_class.sum(1)
        return loss.sum() / w[target].sum()


def build_loss(cfg, train_labels: np.ndarray, n_classes: int) -> tuple[nn.Module, torch.Tensor | None]:
    """The criterion a config asks for, and the class weights it uses (or None)."""
    weights = None
    if cfg.class_weight_loss or cfg.focal_loss:  # focal uses class weights, as in the seed
        weights = class_weights(train_labels, n_classes)
    if cfg.focal_loss:
        return FocalLoss(cfg.focal_gamma, weights, cfg.label_smoothing), weights
    return nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing), weights


def balanced_sampler(train_labels: np.ndarray, gen: torch.Generator) -> torch.utils.data.WeightedRandomSampler:
    """Draws each class equally often in expectation (with replacement)."""
    counts = np.bincount(train_labels)
    per_sample = 1.0 / counts[train_labels]
    return torch.utils.data.WeightedRandomSampler(
        torch.as_tensor(per_sample, dtype=torch.double), num_samples=len(train_labels),
        replacement=True, generator=gen)
