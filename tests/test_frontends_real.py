"""eGeMAPS for real on RAVDESS clips (RAVDESS_ROOT; skipped with the reason where unset): 88
functionals per clip, a tracked linear head, the cache reused, same seed same numbers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.config import RunConfig
from harness.train import run as training

ACTORS, PER_ACTOR = 5, 12  # 60 clips: an actor-disjoint 3/1/1 split, about 10 s of extraction


@pytest.fixture(scope="module")
def ravdess_subset(ravdess_root, tmp_path_factory) -> Path:
    """The first clips of five actors, linked (not copied) into a folder of their own."""
    root = tmp_path_factory.mktemp("ravdess-subset")
    for actor in sorted(ravdess_root.glob("Actor_*"))[:ACTORS]:
        (root / actor.name).mkdir()
        for wav in sorted(actor.glob("*.wav"))[:PER_ACTOR]:
            (root / actor.name / wav.name).symlink_to(wav)
    return root


def test_egemaps_gives_88_finite_functionals_per_real_clip_and_a_tracked_linear_head(
        ravdess_subset, tracking_uri, experiment, tmp_path, monkeypatch):
    import mlflow
    import opensmile

    cfg = RunConfig(data_root=str(ravdess_subset), features="egemaps", model="linear", epochs=5, lr=0.01,
                    device="cpu", train_ratio=0.6, val_ratio=0.2, class_weight_loss=True)
    data = training.prepare(cfg)
    assert tuple(data.features.shape) == (ACTORS * PER_ACTOR, 88)
    assert np.isfinite(data.features.numpy()).all() and float(data.features.std(0).min()) > 0
    res = training.run(cfg, experiment=experiment, tracking_uri=tracking_uri, out_dir=tmp_path, data=data)
    tags = mlflow.tracking.MlflowClient(tracking_uri).get_run(res["run_id"]).data.tags
    assert tags["harness.features"] == "egemaps" and "eGeMAPSv02" in tags["harness.encoder"]
    assert 0.0 <= res["test_f1_macro"] <= 1.0

    # The second time the corpus is cached: openSMILE is not run again, and the numbers are the same.
    monkeypatch.setattr(opensmile, "Smile", None)
    again = training.prepare(cfg)
    assert np.array_equal(again.features.numpy(), data.features.numpy())
    assert training.fit(cfg, again).history == training.fit(cfg, data).history
