"""Audio at any rate -> mono float32 at a front-end's rate, one resampling kernel per source rate."""
from __future__ import annotations

import numpy as np
import torch


class ToRate:
    def __init__(self, rate: int):
        self.rate = rate
        self._kernels: dict[int, torch.nn.Module] = {}

    def __call__(self, samples: np.ndarray, rate: int) -> torch.Tensor:
        import torchaudio

        wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        if rate == self.rate:
            return wave
        if rate not in self._kernels:
            self._kernels[rate] = torchaudio.transforms.Resample(rate, self.rate)
        with torch.inference_mode():
            return self._kernels[rate](wave)
