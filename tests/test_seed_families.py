"""benchmarks/calibration/seed_families.py's figures on constructed populations: a row whose seeds share a part across
repeats is found, and rows of one recipe with independent seeds are not."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks" / "calibration"))

import seed_families as sf  # noqa: E402

ROWS = ["plain", "aa", "s100000", "ep3"]


def populations(persistent_sd: float, seed: int = 0, P: int = 80, R: int = 4) -> np.ndarray:
    """P populations × rows × R repeats of pooled F1: a population's level, each repeat's fold deal (shared by
    the rows), independent seed noise, and for aa a part its repeats share (sd `persistent_sd`)."""
    rng = np.random.default_rng(seed)
    level = rng.normal(0.45, 0.05, (P, 1, 1))
    deal = rng.normal(0, 0.03, (P, 1, R))
    noise = rng.normal(0, 0.05, (P, len(ROWS), R))
    y = level + deal + noise
    y[:, 1] += rng.normal(0, persistent_sd, (P, 1))
    y[:, 3] += 0.1  # ep3: a real effect, the same in every population
    return y


def test_rows_of_one_recipe_with_independent_seeds_show_no_shared_part():
    lines = sf.figures(ROWS, populations(0.0))
    f = float(lines[0].split(": F ")[1].split()[0])
    p = float(lines[0].split("permutation p ")[1].split(")")[0])
    assert 0.7 < f < 1.4 and p > 0.01
    assert sf.repeat_ratio(populations(0.0)[:, 1] - populations(0.0)[:, 0]) < 1.5


def test_a_seed_family_whose_repeats_share_a_part_is_found_by_the_anova_and_its_pairs():
    y = populations(0.05)
    lines = sf.figures(ROWS, y)
    assert float(lines[0].split("permutation p ")[1].split(")")[0]) < 0.01
    aa_plain = next(line for line in lines if "aa − plain" in line)
    assert float(aa_plain.split("sign-flip p ")[1].split(";")[0]) < 0.01
    assert sf.repeat_ratio(y[:, 1] - y[:, 0]) > 2  # against 1 for independent repeats
    # the shared part is the population's own variance of the pair's Δ, about 0.05² here
    assert abs(sf.own_variance(y[:, 1] - y[:, 0]) - 0.05 ** 2) < 0.0015
    # and the pair of independent rows stays near 0
    assert abs(sf.own_variance(y[:, 2] - y[:, 0])) < 0.001


def test_the_figures_read_a_run_and_its_new_rows_without_an_effect_row(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(3)
    run, fam = tmp_path / "run", tmp_path / "families"
    run.mkdir(), fam.mkdir()
    classes = ["neutral", "positive", "negative"]
    for rep in range(3):
        frames = {}
        for row in ("plain", "aa", "s100000"):
            frames[row] = pd.DataFrame([{"row": row, "repeat": r, "fold": f, "clip": f"{f}/{i}", "true": classes[i % 3],
                                         "pred": classes[rng.integers(3)]}
                                        for r in range(2) for f in range(2) for i in range(12)])
        pd.concat([frames["plain"], frames["aa"]]).to_csv(run / f"ravdess24_r4-{rep:03d}-predictions.csv.gz",
                                                         index=False)
        frames["s100000"].to_csv(fam / f"ravdess24_r4-{rep:03d}-families.csv.gz", index=False)
    rows, y, reps = sf.pooled_f1(run, fam, "ravdess24_r4")
    assert rows == ["plain", "aa", "s100000"] and y.shape == (3, 3, 2) and reps == [0, 1, 2]
    lines = sf.figures(rows, y)
    assert len(lines) == 4 and not any("ep3" in line for line in lines)  # the ANOVA and three pairs
