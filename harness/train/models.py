"""Classifiers over a one-channel log-mel "image" (batch, 1, n_mels, frames)."""
from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Four conv blocks (conv3x3 -> [BatchNorm] -> ReLU -> 2x2 max-pool),
    global average pooling, [dropout], linear. BatchNorm and dropout are
    opt-in (`--use_bn`, `--dropout`), as in the seed."""

    def __init__(self, n_classes: int, dropout: float = 0.0, use_bn: bool = False,
                 widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in widths:
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not use_bn))
            if use_bn:
                layers.append(nn.BatchNorm2d(c_out))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(x))


def resnet18_1ch(n_classes: int) -> nn.Module:
    """torchvision's ResNet18, trained from scratch, its stem taking one channel."""
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=n_classes)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


# Memory layout per (model, device type), chosen from a measurement: `benchmarks/pipeline.py` (c) times a
# training step (forward, backward, Adam) in both layouts, interleaved, and prints the ratio
# (benchmarks/README.md, "Memory layout"). Channels-last (NHWC) only where it was measured faster on
# the input the model is trained on there; everything else keeps PyTorch's default (NCHW). Not a
# setting: the layout follows from the model and the device, and every run records it
# (tag `harness.memory_format`). A layout changes the order of floating-point reductions, so the
# same seed gives the same numbers at the same layout and thread count (the layout is fixed per
# model and device, so a rerun on the same machine matches).
CHANNELS_LAST: dict[tuple[str, str], bool] = {
    ("smallcnn", "cpu"): True,
}


def channels_last(model: str, device_type: str) -> bool:
    return CHANNELS_LAST.get((model, device_type), False)


def layout_name(model: str, device_type: str) -> str:
    return "channels_last" if channels_last(model, device_type) else "contiguous"


def memory_format(model: str, device_type: str) -> torch.memory_format:
    return torch.channels_last if channels_last(model, device_type) else torch.contiguous_format


def build_model(name: str, n_classes: int, dropout: float = 0.0, use_bn: bool = False) -> nn.Module:
    if name == "resnet18":
        return resnet18_1ch(n_classes)
    return SmallCNN(n_classes, dropout=dropout, use_bn=use_bn)
