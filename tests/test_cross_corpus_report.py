"""The report on a cross-corpus suite (`--test_corpus`): the test corpus's speakers as the unit, one model
per seed. No training: the runs a suite writes are created directly, each with its test predictions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag

from harness import speakers
from harness.cli import main
from harness.report import render as report
from harness.report import calibrated, runs, table
from harness.corpora.base import SENTIMENTS
from test_report import FakeSuite

TEST_SPEAKERS = [f"emodb:{i:02d}" for i in range(10)]
CLIPS_PER_SPEAKER = 12


class CrossCorpusSuite(FakeSuite):
    def cross_cell(self, row: str, seed: int, skill: float, rng: np.random.Generator, tmp_path) -> str:
        """A finished cross-corpus cell: one model, every clip of the test corpus scored once."""
        parent, h = self.parents[row]
        tags = {"harness.kind": "cell", "mlflow.parentRunId": parent, "harness.row": row, "harness.seed": str(seed),
                "harness.config_hash": h, "harness.data_fingerprint": "fp-a", "harness.data": "ravdess,emodb",
                "harness.split": "cross-corpus (test: emodb)", "harness.git_commit": "abc123def456",
                "harness.classes": ",".join(SENTIMENTS)}
        rid = self.c.create_run(self.exp_id, start_time=next(self.clock), run_name=f"{row}/seed{seed}",
                                tags=tags).info.run_id
        lines = []
        for s_i, sp in enumerate(TEST_SPEAKERS):
            own = skill + 0.15 * np.sin(s_i)  # speakers differ, the same in every repeat
            for k in range(CLIPS_PER_SPEAKER):
                true = SENTIMENTS[k % 3]
                pred = true if rng.random() < own else SENTIMENTS[(k + 1) % 3]
                lines.append({"clip": f"{sp}/{k}.wav", "speaker": sp, "true": true, "pred": pred})
        frame = pd.DataFrame(lines)
        path = tmp_path / rid / "test_predictions.csv"
        path.parent.mkdir(parents=True)
        frame.to_csv(path, index=False)
        self.c.log_artifact(rid, str(path))
        from sklearn.metrics import f1_score

        f1 = float(f1_score(frame["true"], frame["pred"], average="macro"))
        self.c.log_batch(rid, metrics=[Metric(k, v, 0, 0) for k, v in {
            "test_f1_macro": f1, "test_accuracy": f1, "n_train_clips": 1440, "n_test_clips": len(frame)}.items()],
            params=[Param("mode", "sentiment"), Param("model", "smallcnn"), Param("seed", str(seed))],
            tags=[RunTag("harness.test_confusion", "[[1]]")])
        self.c.set_terminated(rid)
        return rid


@pytest.fixture(scope="module")
def cross(tracking_uri, tmp_path_factory) -> CrossCorpusSuite:
    s = CrossCorpusSuite(tracking_uri, "cross-corpus-suite")
    rng = np.random.default_rng(5)
    tmp = tmp_path_factory.mktemp("cross-artifacts")
    s.row("baseline", 0)
    s.row("better", 1)
    s.row("one-seed", 2)
    for seed in range(4):
        s.cross_cell("baseline", seed, 0.55 + 0.01 * rng.standard_normal(), rng, tmp)
        s.cross_cell("better", seed, 0.75 + 0.01 * rng.standard_normal(), rng, tmp)
    s.cross_cell("one-seed", 0, 0.6, rng, tmp)
    return s


def test_cross_corpus_cells_are_complete_repeats_of_the_test_corpus(cross):
    exp = runs.find_experiment(cross.c, cross.name)
    rows, cells = runs.read_suite(cross.c, exp.experiment_id)
    sel = runs.select_cells(rows, cells)
    assert runs.cross_corpus(sel.finished).all() and runs.has_repeats(sel.finished)
    clips = runs.read_clips(cross.c, sel.finished)
    assert set(clips["fold"]) == {0}
    per = clips.groupby(["row", "repeat"])["clip"].nunique()
    assert set(per) == {len(TEST_SPEAKERS) * CLIPS_PER_SPEAKER}  # every clip of the test corpus, once per seed
    # a row with one seed cannot state the models' variance, so the suite cannot take the speaker method ...
    assert not calibrated.speaker_ready(sel, clips, "test_f1_macro")
    two = runs.Selection(rows=sel.rows, finished=sel.finished[sel.finished["row"] != "one-seed"], failed=sel.failed)
    assert calibrated.speaker_ready(two, clips, "test_f1_macro")
    # ... and is the default, calibrated by the cross_corpus setting of benchmarks/calibration/, at any seed count
    assert calibrated.default_ci(two, clips, "test_f1_macro") == "speaker"
    assert calibrated.default_max_repeats(two, "speaker") is None


def test_the_speaker_interval_of_a_cross_corpus_row_is_the_crossed_design_of_its_predictions(cross):
    exp = runs.find_experiment(cross.c, cross.name)
    rows, cells = runs.read_suite(cross.c, exp.experiment_id)
    sel = runs.select_cells(rows, cells)
    clips = runs.read_clips(cross.c, sel.finished)
    t = table.build_table(sel, "test_f1_macro", "baseline", ci="speaker", clips=clips)
    mine, ref = clips[clips["row"] == "better"], clips[clips["row"] == "baseline"]
    pv = speakers.pseudo_values(mine, SENTIMENTS, reference=ref)
    comps = speakers.components(pv)
    assert comps.mean_squares.crossed and comps.model > 0  # the repeats' spread is the models' variance
    by_hand = speakers.interval(pv)
    assert t.loc["better", "delta"] == pytest.approx(by_hand.estimate)
    assert (t.loc["better", "delta_low"], t.loc["better", "delta_high"]) == pytest.approx((by_hand.low, by_hand.high))
    assert t.loc["better", "decision"] == "better"
    assert "the test corpus's speakers" in t.loc["better", "answer"].split()
    # one seed: no interval, and the reason says what a second seed would measure
    assert np.isnan(t.loc["one-seed", "ci_low"]) and t.loc["one-seed", "reason"] == table.ONE_MODEL_REASON
    assert np.isnan(t.loc["one-seed", "delta_low"])


def test_asking_for_the_speaker_method_with_one_seed_is_one_line_exit_2(cross, tracking_uri, tmp_path, capsys):
    code = main(["report", "--experiment", cross.name, "--tracking_uri", tracking_uri, "--out",
                 str(tmp_path / "r.md"), "--ci", "speaker"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cross-corpus row two seeds" in err[0]
    # the default report reads the same runs
    assert report.suite_report(cross.c, runs.find_experiment(cross.c, cross.name)).ci == "corrected"


def test_a_cross_corpus_suite_is_reported_on_its_test_speakers_by_default(tracking_uri, tmp_path):
    s = CrossCorpusSuite(tracking_uri, "cross-corpus-default")
    rng = np.random.default_rng(9)
    s.row("baseline", 0)
    s.row("better", 1)
    for seed in range(3):
        s.cross_cell("baseline", seed, 0.55 + 0.01 * rng.standard_normal(), rng, tmp_path)
        s.cross_cell("better", seed, 0.75 + 0.01 * rng.standard_normal(), rng, tmp_path)
    out = tmp_path / "cross.md"
    assert main(["report", "--experiment", s.name, "--tracking_uri", tracking_uri, "--out", str(out)]) == 0
    md = out.read_text()
    # by the rule of benchmarks/calibration/registered/2026-12-02-cross-corpus.md
    assert calibrated.CROSS_CORPUS_SPEAKER_IS_DEFAULT
    assert "- intervals: on the test corpus's speakers (`--ci speaker`, cross-corpus)" in md
    sharpen = md.split("### What would sharpen each answer")[1]
    assert "| `better` | speaker | " in sharpen and "| the test corpus's speakers " in sharpen  # the variance's split


def test_racing_on_a_cross_corpus_suite_decides_on_the_test_speakers_in_the_reports_words(tracking_uri, tmp_path):
    from harness.config import RunConfig
    from harness.suite import racing
    from harness.suite.file import RowSpec

    specs = [RowSpec("baseline", RunConfig(data_root="ravdess,emodb", test_corpus="emodb")),
             RowSpec("better", RunConfig(data_root="ravdess,emodb", test_corpus="emodb", class_weight_loss=True))]
    s = CrossCorpusSuite(tracking_uri, "cross-corpus-race")
    rng = np.random.default_rng(11)
    for i, spec in enumerate(specs):  # parents of the rows' current configs: racing reads only those
        s.row(spec.name, i, config_hash=spec.config.config_hash)
    # Four seeds, as calibrated, and models that differ from seed to seed as trained ones do: the models'
    # variance, on R - 1 df, is most of Δ's (the calibration's cross-corpus setting).
    for seed in range(4):
        s.cross_cell("baseline", seed, 0.4 + 0.06 * rng.standard_normal(), rng, tmp_path)
        s.cross_cell("better", seed, 0.85 + 0.06 * rng.standard_normal(), rng, tmp_path)
    st = racing.standing(s.c, s.exp_id, specs, "baseline", "fp-a")
    a = st.answers["better"]
    # the report's default for this design, the test corpus's speakers crossed with one model per seed ...
    assert a.ev.floor_what == "the test corpus's speakers" and a.ev.n_speakers == len(TEST_SPEAKERS)
    rows, cells = runs.read_suite(s.c, s.exp_id)
    sel = runs.select_cells(rows, cells)
    clips = runs.read_clips(s.c, sel.finished)
    t = table.build_table(sel, "test_f1_macro", "baseline", calibrated.default_ci(sel, clips, "test_f1_macro"),
                          clips=clips)
    assert t.loc["better", "answer"] == a  # ... the same evidence the report states
    assert st.decisions["better"] == "better"  # a +0.4 gain on 10 speakers, decided at racing's P >= 0.99
    # and racing's closing lines answer in the report's words
    out = tmp_path / "race.md"
    assert main(["report", "--experiment", s.name, "--tracking_uri", tracking_uri, "--out", str(out)]) == 0
    said = racing.summary_lines(st, rounds=0, budget=6)
    assert f"  better: {a.short()}" in said and a.short() in out.read_text()
    # and its bottom line is the report's, word for word
    assert said[1] == st.bottom == out.read_text().splitlines()[2] and st.bottom.startswith("Of 1 row compared")
