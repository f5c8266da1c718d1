"""Speaker-grouped cross-validation: folds, repeats, pooled predictions, CV suites and their statistics."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import baycomp
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as scipy_stats
from sklearn.metrics import f1_score

from harness import stats, tracking
from harness.cli import main
from harness.config import RunConfig
from harness.errors import ConfigError
from harness.suite import planning
from harness.suite.file import load_suite
from harness.suite.runner import run_suite
from harness.train import cv
from harness.corpora.load import load_corpus
from harness.train.splits import cv_folds, make_split

RAVDESS_24 = [f"ravdess:{a:02d}" for a in range(1, 25)]
GENDER = {s: "m" if int(s[-2:]) % 2 else "f" for s in RAVDESS_24}  # RAVDESS: odd actors are men


def is_male(speaker: str) -> bool:
    return GENDER[speaker] == "m"


def scan_corpus(root, cache_dir=None):
    return load_corpus([root], ["auto"], cache_dir)


# --- the folds ------------------------------------------------------------------------

@pytest.mark.parametrize("actors, k", [(RAVDESS_24, 4), (RAVDESS_24, 6), (RAVDESS_24, 24), (RAVDESS_24[:8], 3),
                                       (RAVDESS_24[:5], 2)])
def test_every_actor_is_in_exactly_one_test_fold_per_seed(actors, k):
    for seed in range(5):
        folds = cv_folds(actors, k, seed, GENDER)
        assert len(folds) == k and all(folds)
        assert sorted(a for f in folds for a in f) == sorted(actors)
        assert max(map(len, folds)) - min(map(len, folds)) <= 1


def test_folds_are_gender_balanced_where_the_corpus_allows():
    for seed in range(5):
        for fold in cv_folds(RAVDESS_24, 4, seed, GENDER):  # 12 men, 12 women: 3 + 3 per fold
            assert sum(map(is_male, fold)) == 3 and len(fold) == 6
        for fold in cv_folds(RAVDESS_24, 6, seed, GENDER):
            assert sum(map(is_male, fold)) == 2 and len(fold) == 4
        men = [sum(map(is_male, f)) for f in cv_folds(RAVDESS_24[:8], 3, seed, GENDER)]  # 4 men over 3 folds
        assert sorted(men) == [1, 1, 2]


def test_folds_depend_on_the_seed_only_so_rows_are_paired(synth_root, cache_dir):
    corpus = scan_corpus(synth_root, cache_dir)
    assert cv_folds(RAVDESS_24, 4, 0, GENDER) != cv_folds(RAVDESS_24, 4, 1, GENDER)  # repeats deal anew
    for fold in range(2):
        a = make_split(corpus, RunConfig(val_ratio=0.2, seed=3, mode="sentiment", cv_folds=2, fold=fold))
        b = make_split(corpus, RunConfig(val_ratio=0.2, seed=3, mode="emotion", cv_folds=2, fold=fold))
        assert a.test_speakers == b.test_speakers and a.val_speakers == b.val_speakers
        assert set(a.test_speakers).isdisjoint(a.val_speakers) and set(a.train_speakers).isdisjoint(a.test_speakers)
        assert len(a.val_speakers) == 1 and len(a.train_speakers) >= 1  # round(5 x 0.2) validation speakers
        assert sorted(a.train_speakers + a.val_speakers + a.test_speakers) == corpus.speakers


# --- bad values: one line, exit 2 --------------------------------------------------------

@pytest.mark.parametrize("values, key, needle", [
    ({"cv_folds": 1}, "cv_folds", ">= 2"),
    ({"cv_folds": -3}, "cv_folds", ">= 2"),
    ({"fold": 0}, "fold", "only means something with --cv_folds"),
    ({"cv_folds": 4, "fold": 4}, "fold", "0..3"),
    ({"cv_folds": 4, "fold": -1}, "fold", "0..3"),
    ({"cv_folds": 4, "train_ratio": 0.7}, "train_ratio", "no meaning with --cv_folds"),
    ({"cv_folds": 4, "split": "random"}, "cv_folds", "--split actor"),
])
def test_impossible_cv_settings_are_config_errors(values, key, needle):
    with pytest.raises(ConfigError) as e:
        RunConfig(**values)
    assert e.value.key == key and needle in e.value.problem


def _one_line_exit_2(argv: list[str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.parametrize("argv, needle", [
    (["--cv_folds", "1"], "invalid --cv_folds"),
    (["--fold", "1"], "invalid --fold: only means something with --cv_folds"),
    (["--cv_folds", "3", "--fold", "3"], "invalid --fold: expected 0..2"),
    (["--cv_folds", "3", "--train_ratio", "0.7"], "invalid --train_ratio: has no meaning with --cv_folds 3"),
])
def test_bad_cv_flags_exit_2_with_one_line(argv, needle):
    assert needle in _one_line_exit_2(["train", *argv])


def test_more_folds_than_actors_exit_2_before_any_run(synth_root, tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    line = _one_line_exit_2(["train", "--data_root", str(synth_root), "--cv_folds", "6", "--tracking_uri", uri])
    assert "--cv_folds 6 needs at least 6 speakers" in line and "has 5" in line
    assert not (tmp_path / "m.db").exists()


def test_help_says_train_ratio_has_no_meaning_under_cv():
    out = subprocess.run([sys.executable, "-m", "harness", "train", "--help"], capture_output=True, text=True).stdout
    assert "--cv_folds" in out and "--fold" in out and "no meaning with --cv_folds" in " ".join(out.split())


# --- runs -------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_repeat_runs_every_fold_nested_and_pools_every_clip_once(tiny, tracking_uri, experiment, tmp_path):
    out = tmp_path / "art"
    assert main(["train", "--data_root", str(tiny().data_root), "--cv_folds", "2", "--val_ratio", "0.2",
                 "--n_mels", "32", "--epochs", "1", "--batch_size", "64", "--device", "cpu", "--seed", "4",
                 "--tracking_uri", tracking_uri, "--experiment", experiment, "--out", str(out)]) == 0
    c = tracking.client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    (repeat,) = c.search_runs([exp.experiment_id], "tags.`harness.kind` = 'repeat'")
    folds = c.search_runs([exp.experiment_id], "tags.`harness.kind` = 'fold'")
    assert sorted(r.data.tags["harness.fold"] for r in folds) == ["0", "1"]
    assert {r.data.tags["mlflow.parentRunId"] for r in folds} == {repeat.info.run_id}
    # The repeat's score is the pooled predictions' macro-F1, recomputed here from the fold artifacts.
    frames = [cv.read_predictions(Path(c.download_artifacts(r.info.run_id, "test_predictions.csv", str(tmp_path))))
              for r in folds]
    pooled = pd.concat(frames, ignore_index=True)
    assert len(pooled) == 300 and pooled["clip"].is_unique  # every clip of the 5 actors scored once
    assert set(pooled.columns) == {"clip", "speaker", "true", "pred", "prob_neutral", "prob_positive", "prob_negative"}
    assert np.allclose(pooled[["prob_neutral", "prob_positive", "prob_negative"]].sum(axis=1), 1.0, atol=1e-4)
    f1 = f1_score(pooled["true"], pooled["pred"], labels=["neutral", "positive", "negative"], average="macro",
                  zero_division=0)
    assert repeat.data.metrics["test_f1_macro"] == pytest.approx(f1)
    assert repeat.data.metrics["test_f1_macro_fold_mean"] == pytest.approx(
        np.mean([r.data.metrics["test_f1_macro"] for r in folds]))
    # one confusion figure, of the pooled predictions, on the repeat; the folds keep theirs as numbers
    assert "confusion_matrix.png" in {a.path for a in c.list_artifacts(repeat.info.run_id)}
    assert all("confusion_matrix.png" not in {a.path for a in c.list_artifacts(r.info.run_id)} for r in folds)
    assert all(r.data.tags["harness.test_confusion"].startswith("[[") for r in folds)
    # each fold's own artifact agrees with its logged test score
    for r, frame in zip(folds, frames):
        assert r.data.metrics["test_f1_macro"] == pytest.approx(f1_score(
            frame["true"], frame["pred"], labels=["neutral", "positive", "negative"], average="macro",
            zero_division=0))
        assert r.data.metrics["n_test_clips"] == len(frame)


def write_cv_suite(path: Path, synth_root: Path, seeds=(0, 1)) -> Path:
    doc = {"name": path.stem, "seeds": list(seeds),
           "base": {"model": "smallcnn", "n_mels": 32, "epochs": 1, "batch_size": 64, "val_ratio": 0.2,
                    "cv_folds": 2},
           "rows": [{"name": "baseline", "config": {}}, {"name": "weighted", "config": {"class_weight_loss": True}}]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.slow
def test_a_cv_suite_runs_row_seed_fold_cells_resumes_and_reports(tmp_path, synth_root, tracking_uri, experiment):
    path = write_cv_suite(tmp_path / "cvsuite.yaml", synth_root)
    kw = dict(data_root=str(synth_root), tracking_uri=tracking_uri, experiment=experiment,
              storage=f"sqlite:///{tmp_path / 'q.db'}", progress=False, out_dir=str(tmp_path / "art"))
    first = run_suite(load_suite(path), **kw)
    assert (first.done, first.skipped, first.failed) == (8, 0, 0)  # 2 rows x 2 seeds x 2 folds
    c = tracking.client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    cells = planning.search_runs(c, exp.experiment_id, "tags.`harness.kind` = 'cell'")
    assert sorted((r.data.tags["harness.row"], r.data.tags["harness.seed"], r.data.tags["harness.fold"])
                  for r in cells) == [(row, s, f) for row in ("baseline", "weighted") for s in "01" for f in "01"]
    # the same seed and fold hold out the same actors in both rows: a paired design
    held_out = {}
    for r in cells:
        held_out.setdefault((r.data.tags["harness.seed"], r.data.tags["harness.fold"]), set()).add(
            r.data.tags["harness.split_actors"])
    assert all(len(v) == 1 for v in held_out.values())
    again = run_suite(load_suite(path), **kw)
    assert (again.done, again.skipped) == (0, 8)
    # the parent summarises its resamples with the report's corrected interval
    parents = c.search_runs([exp.experiment_id], "tags.`harness.kind` = 'row'")
    assert {(p.data.tags["harness.row"], p.data.metrics["n_seeds"], p.data.metrics["n_resamples"])
            for p in parents} == {("baseline", 2, 4), ("weighted", 2, 4)}

    out = tmp_path / "cv.md"
    assert main(["report", "--experiment", experiment, "--tracking_uri", tracking_uri, "--out", str(out)]) == 0
    md = out.read_text()
    # the default interval on 2 repeats is the speaker method (calibrated there): the pooled predictions'
    # variance split, named in the header; the header states the CV design
    assert "4 (2 × 2-fold CV)" in md and "on the speaker (`--ci speaker`" in md and "| speakers " in md
    assert "- design: 2 × 2-fold speaker CV" in md and "- split:" not in md
    details = md.split("## Details")[1].split("### What would sharpen")[0]
    assert details.count("(2)") == 2  # pooled F1 over 2 complete repeats, for both rows
    # the corrected t on request
    assert main(["report", "--experiment", experiment, "--tracking_uri", tracking_uri, "--out", str(out),
                 "--ci", "corrected"]) == 0
    assert "- intervals: corrected resampled t" in out.read_text()

    # --target-ci adds a whole repeat (every fold of the next seed) to a row still too wide
    more = run_suite(load_suite(path), target_ci=1e-6, max_seeds=3, **kw)
    cells = planning.search_runs(c, exp.experiment_id, "tags.`harness.kind` = 'cell' and tags.`harness.seed` = '2'")
    folds_by_row: dict[str, list[str]] = {}
    for r in cells:
        folds_by_row.setdefault(r.data.tags["harness.row"], []).append(r.data.tags["harness.fold"])
    assert folds_by_row and all(sorted(f) == ["0", "1"] for f in folds_by_row.values())
    assert more.done == 2 * len(folds_by_row)


# 2 rows x 2 seeds x 2 folds = 8 cells first; a racing round adds a repeat to the baseline and one row: 4 cells
@pytest.mark.parametrize("flags, reaches", [
    (["--n-seeds", "2"], 0), (["--n-seeds", "3"], 3), (["--seeds", "0,1,2,3,4,5"], 6),
    (["--until-decided", "--budget", "8"], 0),  # no round: 2 repeats, the last the speaker method serves
    (["--until-decided", "--budget", "12"], 3),  # one round: a 3rd repeat
    (["--target-ci", "0.01", "--max-seeds", "2"], 0), (["--target-ci", "0.01", "--max-seeds", "5"], 5),
])
def test_a_dry_run_warns_in_one_line_before_a_repeat_past_the_default_intervals_cap(
        tmp_path, synth_root, tracking_uri, experiment, capsys, flags, reaches):
    path = write_cv_suite(tmp_path / "cap.yaml", synth_root)
    assert main(["suite", "run", str(path), "--data_root", str(synth_root), "--tracking_uri", tracking_uri,
                 "--experiment", experiment, "--dry-run", *flags]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    if not reaches:
        assert warnings == []
        return
    line, = warnings
    assert line.startswith(f"warning: this run can reach {reaches} repeats: from the 3rd repeat of a cross-validated "
                           f"comparison the report's default interval is the corrected t, not the speaker method")
    assert "about twice as wide as needed (measured 2.0-2.4x: std(Δ̂)/SE 0.42-0.49 over 3 repeats" in line


def test_a_split_suite_of_many_seeds_is_not_warned(tmp_path, synth_root, tracking_uri, experiment, capsys):
    path = write_cv_suite(tmp_path / "split.yaml", synth_root)
    doc = yaml.safe_load(path.read_text())
    doc["base"].pop("cv_folds")
    doc["base"]["train_ratio"] = 0.6
    path.write_text(yaml.safe_dump(doc))  # no speaker method to switch from: the corrected t at every count
    assert main(["suite", "run", str(path), "--data_root", str(synth_root), "--tracking_uri", tracking_uri,
                 "--experiment", experiment, "--dry-run", "--n-seeds", "5"]) == 0
    assert "warning:" not in capsys.readouterr().out


def test_the_run_itself_warns_when_it_starts(tmp_path, synth_root, tracking_uri, experiment, capsys, monkeypatch):
    from harness.suite import runner
    from harness.train import run as training

    monkeypatch.setattr(training, "prepare", lambda *a, **k: None)  # the warning, not the training, is tested
    monkeypatch.setattr(runner, "drain", lambda *a, **k: None)
    path = write_cv_suite(tmp_path / "start.yaml", synth_root)
    run_suite(load_suite(path), seeds=(0, 1, 2), data_root=str(synth_root), tracking_uri=tracking_uri,
              experiment=experiment, storage=f"sqlite:///{tmp_path / 'q.db'}", progress=False,
              out_dir=str(tmp_path / "art"))
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("suite 'start'"))
    assert lines[start + 1].startswith("warning: this run can reach 3 repeats: from the 3rd repeat")


def test_a_cv_suite_the_corpus_cannot_hold_is_refused_before_any_run(tmp_path, synth_root, tracking_uri, experiment):
    path = write_cv_suite(tmp_path / "toomany.yaml", synth_root)
    doc = yaml.safe_load(path.read_text())
    doc["base"]["cv_folds"] = 9
    path.write_text(yaml.safe_dump(doc))
    assert main(["suite", "run", str(path), "--data_root", str(synth_root), "--tracking_uri", tracking_uri,
                 "--experiment", experiment]) == 2
    assert tracking.client(tracking_uri).get_experiment_by_name(experiment) is None


# --- the statistics, on fixed numbers -----------------------------------------------------

SCORES = np.array([0.61, 0.58, 0.66, 0.63, 0.60, 0.64, 0.59, 0.65])


def test_the_corrected_interval_is_nadeau_bengio_by_hand():
    # J = 8 resamples, n_test/n_train = 6/16: var of the mean = s^2 (1/8 + 0.375)
    s2 = np.sum((SCORES - SCORES.mean()) ** 2) / 7
    half = scipy_stats.t.ppf(0.975, 7) * math.sqrt(s2 * (1 / 8 + 6 / 16))
    low, high, method = stats.mean_ci(SCORES, "corrected", test_train_ratio=6 / 16)
    assert method == "corrected"
    assert (low, high) == pytest.approx((SCORES.mean() - half, SCORES.mean() + half))
    plain = stats.mean_ci(SCORES, "t")
    assert high - low == pytest.approx((plain[1] - plain[0]) * math.sqrt((1 / 8 + 6 / 16) / (1 / 8)))


def test_the_interval_is_cut_to_the_metrics_range():
    low, high, _ = stats.mean_ci([0.99, 0.97, 0.6], "corrected", test_train_ratio=0.375, bounds=(0.0, 1.0))
    assert high == 1.0 and low > 0.0


def test_the_bayesian_probabilities_are_baycomps_correlated_t_test():
    # Two repeats of 4-fold CV: baycomp's own correction is 1/(K - 1) = n_test/n_train of plain K-fold.
    rng = np.random.default_rng(1)
    base = rng.normal(0.6, 0.04, 8)
    row = base + rng.normal(0.015, 0.02, 8)
    p_left, p_rope, p_right = baycomp.two_on_single(base, row, rope=0.01, runs=2)
    b = stats.bayes_delta(row - base, test_train_ratio=1 / 3, rope=0.01)
    assert (b.p_better, b.p_equivalent, b.p_worse) == pytest.approx((p_right, p_rope, p_left))
    lower_is_better = stats.bayes_delta(row - base, test_train_ratio=1 / 3, rope=0.01, higher_better=False)
    assert (lower_is_better.p_better, lower_is_better.p_worse) == pytest.approx((p_left, p_right))


@pytest.mark.parametrize("probs, decision", [((0.96, 0.03, 0.01), "better"), ((0.01, 0.03, 0.96), "worse"),
                                             ((0.02, 0.97, 0.01), "equivalent"), ((0.6, 0.3, 0.1), "undecided")])
def test_a_decision_needs_one_probability_at_the_threshold(probs, decision):
    assert stats.decide(*probs) == decision
