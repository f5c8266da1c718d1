"""The real RAVDESS clips (actors 01-08) and TurEV-DB clips: the loader, stereo files, a short run end to end, a
cross-corpus suite.

Skipped with a reason where RAVDESS_ROOT is unset (CI sets it)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.config import RunConfig
from harness.corpora.load import load_corpus
from harness.train import run as training
from harness.train.splits import make_split

pytestmark = pytest.mark.real_data


def test_every_real_clip_is_found_and_labelled(ravdess_root, cache_dir):
    corpus = load_corpus([ravdess_root], ['auto'], cache_dir)
    assert len(corpus.clips) == 60 * len(corpus.speakers)
    emotions = {c.label for c in corpus.clips}
    assert len(emotions) == 8
    # RAVDESS: 4 neutral, 8 of each other emotion per actor -> 12 neutral / 16 positive / 32 negative
    assert np.bincount(corpus.labels("sentiment")).tolist() == [12 * len(corpus.speakers), 16 * len(corpus.speakers),
                                                                 32 * len(corpus.speakers)]


def test_stereo_clips_are_mixed_down(ravdess_root):
    stereo = [p for p in sorted(ravdess_root.glob("Actor_0[1-5]/*.wav")) if sf.info(p).channels == 2]
    assert stereo, "expected the corpus's stereo clips among actors 01-05"
    from harness.corpora.base import read_audio
    samples, rate = read_audio(stereo[0])
    assert samples.ndim == 1 and rate == 48000


def test_a_short_smallcnn_run_on_real_audio(ravdess_root, tracking_uri, experiment, tmp_path):
    cfg = RunConfig(data_root=str(ravdess_root), n_mels=64, epochs=2, batch_size=32, device="cpu")
    res = training.run(cfg, experiment, tracking_uri, out_dir=tmp_path)
    assert 0.0 <= res["test_f1_macro"] <= 1.0 and res["best_epoch"] in (1, 2)
    data = training.prepare(cfg)
    s = make_split(data.corpus, RunConfig(train_ratio=0.8, val_ratio=0.1, seed=0))
    assert len(s.test_speakers) == 1 and len(s.val_speakers) == 1 and len(s.train_speakers) == len(data.corpus.speakers) - 2


@pytest.mark.slow
def test_a_cv_suite_on_real_clips_answers_each_comparison(ravdess_root, tracking_uri, experiment,
                                                                          tmp_path):
    """2 rows x 2 repeats x 4-fold speaker CV on actors 01-08 (cheap features, 1 epoch), then the report."""
    import yaml

    from harness.cli import main

    suite = tmp_path / "cv.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "real-cv", "seeds": [0, 1],
        "base": {"model": "smallcnn", "n_mels": 32, "n_fft": 2048, "hop_length": 1024, "epochs": 1,
                 "batch_size": 32, "lr": 0.002, "cv_folds": 4},
        "rows": [{"name": "baseline", "config": {}}, {"name": "class-weights", "config": {"class_weight_loss": True}}]}))
    common = ["--tracking_uri", tracking_uri, "--experiment", experiment]
    assert main(["suite", "run", str(suite), "--data_root", str(ravdess_root), "--storage",
                 f"sqlite:///{tmp_path / 'q.db'}", "--out", str(tmp_path / "art"), *common]) == 0
    out = tmp_path / "report.md"
    assert main(["report", "--out", str(out), "--ci", "speaker", *common]) == 0
    md = out.read_text()
    assert "- design: 2 × 4-fold speaker CV" in md and "- data: ravdess" in md and "on the speaker" in md
    def answer_and_detail(text: str) -> tuple[str, list[str]]:
        """The class-weights row's answer and its cells in "What would sharpen each answer"."""
        said = next(x for x in text.split("## What the data supports")[1].splitlines()
                    if x.startswith("- `class-weights`"))
        detail = next(x for x in text.split("### What would sharpen each answer")[1].splitlines()
                      if x.startswith("| `class-weights` |"))
        return said, [c.strip() for c in detail.split("|")[1:-1]]

    line, cells = answer_and_detail(md)
    # the answer in at most two short sentences; the resolution, the variance split and the floors in the table
    assert len(re.findall(r"[.](?:\s|$)", line.split("`: ", 1)[1])) <= 2
    assert cells[1] == "speaker" and cells[4].startswith("speakers ") and ", training runs " in cells[4]
    assert cells[6].startswith("±") and "(8 speakers)" in cells[6] and "corrected" not in cells[5] + cells[6]
    assert (tmp_path / "report-delta.png").stat().st_size > 5_000
    from harness import tracking

    c = tracking.client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    row = c.search_runs([exp.experiment_id], "tags.`harness.kind` = 'row' and tags.`harness.row` = 'class-weights'")[0]
    decision = row.data.tags["harness.decision"]
    assert decision in ("better", "worse", "equivalent", "undecided") and decision in md.split("## Details")[0]
    assert exp.tags["mlflow.note.content"].startswith("Of 1 row compared with `baseline` on `test_f1_macro`: ")
    # on 2 repeats the default report is the speaker method's, word for word up to what more repeats would
    # give: past the default's cap of 2 that is the corrected t's (a named --ci speaker has no cap)
    assert main(["report", "--out", str(out), *common]) == 0
    default, default_cells = answer_and_detail(out.read_text())
    assert default.split(". ")[0] == line.split(". ")[0] and default_cells[:5] == cells[:5]
    assert default_cells[5].endswith("(the corrected t: past 2 repeats)")
    # the corrected t answers in the same words, its floor named as the correction's
    assert main(["report", "--out", str(out), "--ci", "corrected", *common]) == 0
    line, cells = answer_and_detail(out.read_text())
    assert cells[1] == "corrected" and cells[4].startswith("speakers (the corrected t's floor")
    assert "(8 speakers)" in cells[6]


def test_a_cross_corpus_suite_trains_on_ravdess_and_tests_on_every_turev_clip(ravdess_root, turev_root, tracking_uri,
                                                                              experiment, tmp_path):
    """experiments/cross_corpus.yaml on the real clips of both corpora: the four shared emotions, RAVDESS's other
    four left out and counted, no TurEV speaker in training, every TurEV clip tested once, the report naming both."""
    from harness import tracking
    from harness.cli import main
    from harness.train.cv import read_predictions

    common = ["--tracking_uri", tracking_uri, "--experiment", experiment]
    suite = Path(__file__).parent.parent / "experiments" / "cross_corpus.yaml"
    assert main(["suite", "run", str(suite), "--profile", "quick", "--rows", "baseline", "--seeds", "0",
                 "--data_root", f"{ravdess_root},{turev_root}", "--storage", f"sqlite:///{tmp_path / 'q.db'}",
                 "--out", str(tmp_path / "art"), *common]) == 0
    c = tracking.client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    run = c.search_runs([exp.experiment_id], "tags.`harness.kind` = 'cell'")[0]
    assert run.info.status == "FINISHED"
    tags, m = run.data.tags, run.data.metrics
    assert tags["harness.classes"] == "calm,happy,sad,angry"
    assert tags["harness.labels_dropped"].startswith("neutral, fearful, disgust, surprised: ")
    assert "turev (528 clips, 6 speakers, 4 classes)" in tags["harness.corpora"]
    assert tags["harness.split"] == "cross-corpus (test: turev)"
    train_part = tags["harness.split_actors"].split(" val=")[0]
    assert "turev:" not in train_part and "ravdess:" in train_part
    assert m["n_test_clips"] == 528 and {"test_ua", "test_wa", "test_f1_macro"} <= set(m)
    pred = read_predictions(c.download_artifacts(run.info.run_id, "test_predictions.csv", str(tmp_path / "dl")))
    assert len(pred) == 528 and pred["speaker"].str.startswith("turev:").all() and pred["clip"].is_unique
    out = tmp_path / "report.md"
    assert main(["report", "--out", str(out), *common]) == 0
    header = out.read_text().split("**How to read this.**")[0]
    assert "- corpora: ravdess (256 of 480 clips, 8 speakers, 4 of 8 classes); turev (528 clips" in header
    assert "- split: cross-corpus (test: turev)" in header
