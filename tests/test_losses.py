"""Losses and sampling for imbalanced classes."""
from __future__ import annotations

import numpy as np
import torch

from harness.config import RunConfig
from harness.train.losses import WEIGHT_CLIP, FocalLoss, balanced_sampler, build_loss, class_weights


def test_class_weights_are_inverse_frequency_normalised_and_clipped():
    w = class_weights(np.array([0] * 10 + [1] * 20 + [2] * 40), 3)
    assert torch.allclose(w.mean(), torch.tensor(1.0))
    assert w[0] > w[1] > w[2]
    extreme = class_weights(np.array([0] * 1 + [1] * 1000), 2)
    assert extreme.max() <= WEIGHT_CLIP[1] and extreme.min() >= WEIGHT_CLIP[0]


def test_focal_loss_with_gamma_zero_is_weighted_smoothed_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(32, 3), torch.randint(0, 3, (32,))
    w = torch.tensor([2.0, 0.5, 1.0])
    for eps in (0.0, 0.1):
        ce = torch.nn.CrossEntropyLoss(weight=w, label_smoothing=eps)(logits, target)
        assert torch.allclose(FocalLoss(0.0, w, eps)(logits, target), ce, atol=1e-6)


def test_focal_loss_down_weights_easy_examples():
    easy = torch.tensor([[5.0, 0.0, 0.0]])
    hard = torch.tensor([[0.2, 0.0, 0.0]])
    t = torch.tensor([0])
    ce, fl = torch.nn.CrossEntropyLoss(), FocalLoss(2.0)
    assert fl(easy, t) / ce(easy, t) < fl(hard, t) / ce(hard, t) < 1.0


def test_flags_choose_the_criterion():
    y = np.array([0, 0, 1, 2, 2, 2])
    plain, w = build_loss(RunConfig(), y, 3)
    assert isinstance(plain, torch.nn.CrossEntropyLoss) and plain.weight is None and w is None
    cw, w = build_loss(RunConfig(class_weight_loss=True, label_smoothing=0.05), y, 3)
    assert torch.equal(cw.weight, w) and cw.label_smoothing == 0.05
    focal, w = build_loss(RunConfig(focal_loss=True, focal_gamma=1.5), y, 3)
    assert isinstance(focal, FocalLoss) and focal.gamma == 1.5 and w is not None  # focal uses class weights


def test_balanced_sampler_draws_classes_evenly():
    y = np.array([0] * 10 + [1] * 30 + [2] * 160)
    drawn = y[list(balanced_sampler(y, torch.Generator().manual_seed(0)))]
    share = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.all(np.abs(share - 1 / 3) < 0.06), share
