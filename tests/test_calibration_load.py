"""benchmarks/calibration/calibration.py --load on constructed predictions: every figure is recomputed from a saved
run, and `--repeats` scores each population's first R repeats, as a user who adds repeats one at a time has run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "calibration"
sys.path[:0] = [str(BENCH), str(BENCH.parent)]  # calibration/ and benchmarks/ (precision, common)

import calibration_estimators as ce  # noqa: E402

CLASSES = ["neutral", "positive", "negative"]


def saved_run(folder: Path, populations: int = 4, repeats: int = 4, speakers: int = 8, k: int = 4) -> Path:
    """A saved run in calibration.py's format: rows plain, aa (same accuracy) and ep3 (more accurate)."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    for rep in range(populations):
        lines, folds = [], []
        for r in range(repeats):
            deal = rng.permutation(speakers) % k
            for row, hit in (("plain", 0.6), ("aa", 0.6), ("ep3", 0.75)):
                for s in range(speakers):
                    for i in range(9):
                        true = CLASSES[i % 3]
                        pred = true if rng.random() < hit else CLASSES[rng.integers(3)]
                        lines.append({"row": row, "repeat": r, "fold": int(deal[s]), "speaker": f"{s:02d}",
                                      "corpus": "ravdess", "gender": "f", "clip": f"{s:02d}/{i}", "true": true,
                                      "pred": pred})
                for f in range(k):
                    folds.append({"row": row, "repeat": r, "fold": f, "f1": 0.5 + rng.normal(0, 0.05),
                                  "ratio": 1 / (k - 1)})
        pd.DataFrame(lines).to_csv(folder / f"ravdess24_r6-{rep:03d}-predictions.csv.gz", index=False)
        pd.DataFrame(folds).assign(classes=",".join(CLASSES)).to_csv(folder / f"ravdess24_r6-{rep:03d}-folds.csv",
                                                                     index=False)
    return folder


def test_the_first_r_repeats_of_each_population_are_scored_as_a_design_of_their_own(tmp_path):
    pops = ce.load_populations([saved_run(tmp_path / "run")])
    cut = ce.first_repeats(pops, [2, 3, 6])
    # no population has 6 repeats: that count is left out, not padded
    assert sorted({p.setting for p in cut}) == ["ravdess24_r6@2", "ravdess24_r6@3"]
    two = [p for p in cut if p.setting.endswith("@2")]
    assert all(set(p.preds["repeat"]) == {0, 1} and set(p.folds["repeat"]) == {0, 1} for p in two)
    # the first repeats, the same clips and predictions as in the whole run
    whole = pops[0].preds[pops[0].preds["repeat"] < 2].reset_index(drop=True)
    assert two[0].preds.reset_index(drop=True).equals(whole)


def test_the_median_half_width_is_reported_per_repeat_count_and_checked_not_to_grow(tmp_path):
    pops = ce.first_repeats(ce.load_populations([saved_run(tmp_path / "run")]), [2, 4])
    checks, lines = ce.width_report(ce.stated_all(pops), "speaker_deff")
    assert len(lines) == 6 and all("2 repeats ±" in line and "4 repeats ±" in line for line in lines)
    assert [c.name.split(": ")[-1] for c in checks] == ["median half-width 4 / 2 repeats"] * 2
    assert all(c.value > 0 for c in checks)


def test_load_with_repeats_prints_every_repeat_count_and_the_candidate_s_checks(tmp_path):
    run = saved_run(tmp_path / "run")
    p = subprocess.run([sys.executable, str(BENCH / "calibration.py"), "--load", str(run), "--repeats", "2,4",
                        "--estimator", "speaker_deff"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout
    for setting in ("ravdess24_r6@2", "ravdess24_r6@4"):
        assert f"{setting} speaker_deff: coverage" in out and f"{setting} speaker: coverage" in out
    assert "median Δ half-width 2 repeats" in out and "median half-width 4 / 2 repeats" in out


def test_a_repeat_count_without_load_or_an_unknown_estimator_is_one_line(tmp_path):
    for args, word in ((["--repeats", "2,4"], "--repeats needs --load"),
                       (["--load", str(tmp_path), "--repeats", "two"], "expected repeat counts"),
                       (["--load", str(tmp_path), "--estimator", "nope"], "--estimator 'nope'")):
        p = subprocess.run([sys.executable, str(BENCH / "calibration.py"), *args], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 2 and word in p.stderr and "Traceback" not in p.stderr


def test_repeat_seeds_move_every_repeat_s_seed_and_zero_keeps_the_runs_before():
    import calibration

    assert [calibration.repeat_seed(0, 7, r) for r in range(3)] == [7000, 7001, 7002]  # runs 1-7
    seeds = {calibration.repeat_seed(300000, rep, r) for rep in range(100) for r in range(6)}
    assert len(seeds) == 600 and min(seeds) == 300000
    assert not seeds & {calibration.repeat_seed(0, rep, r) for rep in range(100) for r in range(6)}
    assert "--repeat-seeds BASE" in subprocess.run([sys.executable, str(BENCH / "calibration.py"), "--help"],
                                                   capture_output=True, text=True, timeout=120).stdout
