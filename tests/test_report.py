"""`harness report`: the ablation table, rebuilt from MLflow runs alone.

No training here: the runs a suite would write are created directly in the
session's sqlite store, with fixed numbers, and every statistic is checked
against scipy called directly or a hand computation.
"""
from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from scipy import stats as scipy_stats

from harness import stats
from harness.cli import main
from harness.report import render as report
from harness.report import runs, table
from harness.corpora.base import SENTIMENTS

CONFUSION = [[5, 1, 0], [1, 4, 1], [0, 2, 6]]


class FakeSuite:
    """Writes runs in the layout the suite runner uses (the report's input contract)."""

    def __init__(self, uri: str, name: str):
        self.c = MlflowClient(uri)
        self.name = name
        self.exp_id = self.c.create_experiment(name)
        self.clock = itertools.count(1_700_000_000_000, 1000)  # start times in a known order
        self.parents: dict[str, tuple[str, str]] = {}

    def row(self, name: str, index: int, claimed: str = "", config_hash: str | None = None, **tags: str) -> str:
        h = config_hash or f"hash-{name}"
        run = self.c.create_run(self.exp_id, start_time=next(self.clock), run_name=name, tags={
            "harness.kind": "row", "harness.row": name, "harness.row_index": str(index), "harness.config_hash": h,
            "harness.claimed_f1": claimed, "harness.note": "", "harness.suite": self.name,
            "harness.profile": "quick", **tags})
        self.c.set_terminated(run.info.run_id)
        self.parents[name] = (run.info.run_id, h)
        return run.info.run_id

    def cell(self, row: str, seed: int, f1: float | None = None, status: str = "FINISHED",
             config_hash: str | None = None, reason: str = "", fingerprint: str = "fp-a", data: str = "ravdess",
             fold: int | None = None) -> str:
        parent, h = self.parents[row]
        tags = {"harness.kind": "cell", "mlflow.parentRunId": parent, "harness.row": row, "harness.seed": str(seed),
                "harness.config_hash": config_hash or h, "harness.data_fingerprint": fingerprint,
                "harness.split": "actor", "harness.git_commit": "abc123def456", "harness.data": data}
        if fold is not None:
            tags["harness.fold"] = str(fold)
        if reason:
            tags["harness.failure_reason"] = reason
        run = self.c.create_run(self.exp_id, start_time=next(self.clock), run_name=f"{row}/seed{seed}", tags=tags)
        rid = run.info.run_id
        params = {"mode": "sentiment", "model": "resnet18", "seed": str(seed)}
        params = [Param(k, v) for k, v in {**params, **({"cv_folds": "4"} if fold is not None else {})}.items()]
        metrics, result_tags = [], []
        if f1 is not None:  # a finished cell: final metrics, the val history (step = epoch), the confusion
            final = {"test_f1_macro": f1, "test_accuracy": f1 + 0.05, "best_epoch": 3, "wall_time_s": 10.0 + seed,
                     "best_val_f1_macro": f1, "n_train_clips": 400, "n_test_clips": 50}  # n_test/n_train = 0.125
            metrics = [Metric(k, v, 0, 0) for k, v in final.items()]
            metrics += [Metric("val_f1_macro", f1 - 0.1 * (3 - e), 0, e) for e in (1, 2, 3)]
            result_tags = [RunTag("harness.test_confusion", str(CONFUSION))]
        self.c.log_batch(rid, metrics=metrics, params=params, tags=result_tags)
        self.c.set_terminated(rid, status=status)
        return rid


BASE = [0.60, 0.62, 0.58, 0.61, 0.59]
CW = [0.66, 0.69, 0.63, 0.68, 0.65]
FOCAL = [0.63, 0.66, 0.61, 0.65]  # seed 4 failed
LS = [0.665, 0.68, 0.645, 0.66, 0.655]
AGGR = [0.55, 0.58, 0.53, 0.55, 0.54]


@pytest.fixture(scope="module")
def suite(tracking_uri) -> FakeSuite:
    """Seven rows covering every case the report must handle; written in scrambled order."""
    s = FakeSuite(tracking_uri, "report-suite")
    # an older parent of the focal row, with another config, and its cells: superseded
    s.row("focal-specaug-30ep", 2, claimed="0.573", config_hash="old-focal")
    s.cell("focal-specaug-30ep", 0, 0.99)
    s.row("cw-specaug-30ep", 1, claimed="0.661")
    s.row("baseline-resnet18-5ep", 0, claimed="0.732,0.532")
    s.row("focal-specaug-30ep", 2, claimed="0.573")
    s.row("cw-specaug-ls-30ep", 3, claimed="0.662")
    s.row("cw-specaug-aggressive-30ep", 4, claimed="0.539")
    s.row("smallcnn-25ep", 5, claimed="0.4-0.5")
    s.row("all-failed", 6)
    for seed, v in enumerate(BASE):
        s.cell("baseline-resnet18-5ep", seed, v)
    s.cell("cw-specaug-30ep", 1, 0.10)  # an earlier finished run of the same cell: the later one wins
    for seed, v in enumerate(CW):
        s.cell("cw-specaug-30ep", seed, v)
    for seed, v in enumerate(FOCAL):
        s.cell("focal-specaug-30ep", seed, v)
    s.cell("focal-specaug-30ep", 4, status="FAILED", reason="NonFiniteLossError: loss | nan")
    s.cell("cw-specaug-aggressive-30ep", 2, status="KILLED", reason="KeyboardInterrupt: ")
    for seed, v in enumerate(AGGR):
        s.cell("cw-specaug-aggressive-30ep", seed, v)
    s.cell("cw-specaug-aggressive-30ep", 0, 0.95, config_hash="stale")  # old config: excluded
    for seed, v in enumerate(LS):
        s.cell("cw-specaug-ls-30ep", seed, v)
    s.cell("smallcnn-25ep", 0, 0.45)
    s.cell("all-failed", 0, status="FAILED", reason="RuntimeError: CUDA out of memory")
    s.cell("all-failed", 1, status="FAILED", reason="RuntimeError: CUDA out of memory")
    return s


@pytest.fixture(scope="module")
def built(suite) -> report.SuiteReport:
    exp = runs.find_experiment(suite.c, suite.name)
    return report.suite_report(suite.c, exp)


def holm_by_hand(p: list[float]) -> list[float]:
    """Holm: the i-th smallest of m p-values times (m − i + 1), running max, capped at 1."""
    m = len(p)
    ranked = sorted(range(m), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(ranked, start=1):
        running = max(running, min(1.0, (m - rank + 1) * p[i]))
        out[i] = running
    return out


# --- the statistics, on fixed numbers ----------------------------------------------

def test_t_interval_is_the_student_t_interval_of_the_mean():
    x = np.array(BASE)
    expected = scipy_stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=scipy_stats.sem(x))
    assert stats.mean_ci(x, "t")[:2] == pytest.approx(expected)


def test_bootstrap_interval_is_scipys_bca_with_a_fixed_seed():
    x = np.array(CW)
    ref = scipy_stats.bootstrap((x,), np.mean, method="BCa", n_resamples=stats.BOOTSTRAP_RESAMPLES,
                          rng=np.random.default_rng(stats.BOOTSTRAP_SEED)).confidence_interval
    low, high, method = stats.mean_ci(x, "bootstrap")
    assert (low, high, method) == (pytest.approx(ref.low), pytest.approx(ref.high), "BCa")
    assert stats.mean_ci(x, "bootstrap") == (low, high, method)  # reproducible


def test_bootstrap_falls_back_to_percentile_when_bca_is_degenerate():
    assert stats.mean_ci([0.5, 0.5, 0.5], "bootstrap") == (0.5, 0.5, "percentile")


def test_an_interval_needs_two_values():
    with pytest.raises(ValueError):
        stats.mean_ci([0.5], "t")


def test_paired_delta_uses_only_the_seeds_both_rows_have():
    row = pd.Series(FOCAL, index=[0, 1, 2, 3])
    base = pd.Series(BASE, index=[0, 1, 2, 3, 4])
    p = stats.paired_delta(row, base)
    d = row.to_numpy() - base.loc[[0, 1, 2, 3]].to_numpy()
    assert p.n == 4
    assert p.delta == pytest.approx(d.mean())
    assert (p.low, p.high) == pytest.approx(scipy_stats.t.interval(0.95, 3, loc=d.mean(), scale=scipy_stats.sem(d)))
    assert p.p == pytest.approx(scipy_stats.ttest_rel(row.to_numpy(), base.loc[[0, 1, 2, 3]].to_numpy()).pvalue)
    assert p.p_improve == 1.0 and p.reason == ""


def test_probability_of_improvement_counts_ties_as_half():
    row = pd.Series([1.0, 2.0, 3.0, 4.0])
    base = pd.Series([0.0, 2.0, 4.0, 3.0])  # win, tie, loss, win
    assert stats.paired_delta(row, base).p_improve == pytest.approx(2.5 / 4)
    assert stats.paired_delta(row, base, higher_better=False).p_improve == pytest.approx(1.5 / 4)


@pytest.mark.parametrize("row, base, reason", [
    ([0.5], [0.5, 0.6], "1 seed"),
    ([], [0.5, 0.6], "no finished seed"),
    ([0.5, 0.6], [0.5], "baseline: 1 seed"),
])
def test_paired_delta_is_na_with_the_reason_below_two_seeds(row, base, reason):
    p = stats.paired_delta(pd.Series(row, dtype=float), pd.Series(base, dtype=float))
    assert p.reason == reason and math.isnan(p.delta) and math.isnan(p.p)


def test_paired_delta_needs_two_common_seeds():
    p = stats.paired_delta(pd.Series([0.5, 0.6], index=[0, 1]), pd.Series([0.5, 0.6], index=[1, 2]))
    assert (p.n, p.reason) == (1, "1 paired seed")


def test_holm_matches_the_hand_computation_and_skips_nan():
    p = [0.01, 0.04, 0.03, math.nan, 0.5]
    expected = holm_by_hand([0.01, 0.04, 0.03, 0.5])
    out = stats.holm(p)
    assert list(out[[0, 1, 2, 4]]) == pytest.approx(expected)
    assert list(out[[0, 1, 2, 4]]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert math.isnan(out[3])
    assert list(stats.holm([0.4, 0.6])) == [0.8, 0.8]  # monotone
    assert list(stats.holm([0.6, 0.7, 0.9])) == [1.0, 1.0, 1.0]  # capped at 1


@pytest.mark.parametrize("claim, verdict", [
    ("0.661", "0.661 inside"),
    ("0.732,0.532", "0.732 above; 0.532 below"),
    ("0.4-0.5", "0.400–0.500 below"),
    ("0.55-0.65", "0.550–0.650 overlaps"),
    ("0.70-0.80", "0.700–0.800 above"),
])
def test_claim_verdicts_against_the_ci(claim, verdict):
    assert stats.claim_verdict(claim, 0.60, 0.68) == verdict


def test_an_unreadable_claim_is_an_error():
    with pytest.raises(ValueError, match="unreadable claim"):
        stats.parse_claim("about 0.7")


@pytest.mark.parametrize("expected, low, high, verdict", [
    ("worse", -0.05, -0.01, "supported"),
    ("worse", -0.05, 0.01, "not supported (difference within noise)"),
    ("worse", 0.01, 0.05, "contradicted (the variant is better)"),
    ("better", 0.01, 0.05, "supported"),
    ("similar", -0.02, 0.03, "supported (no detectable difference)"),
    ("similar", 0.01, 0.03, "contradicted (the variant is better)"),
    ("worse", math.nan, math.nan, "cannot be checked"),
])
def test_pair_verdicts(expected, low, high, verdict):
    assert stats.pair_verdict(expected, low, high) == verdict


# --- which runs count ----------------------------------------------------------------

def test_rows_are_in_suite_order_from_their_newest_parent(built):
    assert list(built.table.index) == ["baseline-resnet18-5ep", "cw-specaug-30ep", "focal-specaug-30ep",
                                       "cw-specaug-ls-30ep", "cw-specaug-aggressive-30ep", "smallcnn-25ep",
                                       "all-failed"]
    assert built.baseline == "baseline-resnet18-5ep"
    assert any("focal-specaug-30ep" in n and "2 parent runs" in n for n in built.sel.notes)


def test_the_latest_of_duplicate_finished_cells_is_taken(built):
    t = built.table
    assert t.loc["cw-specaug-30ep", "mean"] == pytest.approx(np.mean(CW))
    assert any("cw-specaug-30ep` seed 1: 2 finished runs" in n for n in built.sel.notes)


def test_old_config_hash_cells_are_excluded(built):
    t = built.table
    assert t.loc["cw-specaug-aggressive-30ep", "mean"] == pytest.approx(np.mean(AGGR))
    assert t.loc["focal-specaug-30ep", "n"] == 4 and t.loc["focal-specaug-30ep", "max"] == max(FOCAL)
    assert "row `cw-specaug-aggressive-30ep`: 1 run(s) whose config hash is not the row's excluded (seeds 0)" \
        in built.sel.notes


def test_selection_is_a_pure_function_of_run_frames():
    rows = pd.DataFrame({"run_id": ["p1"], "row": ["a"], "row_index": [0], "config_hash": ["h"], "claimed": [""],
                         "study": [""], "profile": [""], "start_time": [1]})
    cells = pd.DataFrame({"run_id": ["c1", "c2", "c3"], "status": ["FINISHED", "RUNNING", "FINISHED"],
                          "start_time": [2, 3, 4], "seed": pd.array([0, 1, 2], dtype="Int64"),
                          "row": ["a", "a", ""], "config_hash": ["h", "h", "h"], "parent_id": ["p1", "p1", "p1"],
                          "metrics.test_f1_macro": [0.5, None, 0.7]})
    sel = runs.select_cells(rows, cells)
    assert list(sel.finished["run_id"]) == ["c1", "c3"]  # c3 names no row: its parent run does
    assert sel.notes == ["1 run(s) not finished yet (RUNNING/SCHEDULED) not counted: `a` seed 1"]
    assert sel.failed.empty


def test_failed_and_killed_runs_are_listed_not_averaged(built):
    f = built.sel.failed.set_index(["row", "seed"])
    assert f.loc[("focal-specaug-30ep", 4), "status"] == "FAILED"
    assert f.loc[("cw-specaug-aggressive-30ep", 2), "status"] == "KILLED"
    assert bool(f.loc[("cw-specaug-aggressive-30ep", 2), "rerun_finished"])  # rerun finished: not missing
    t = built.table
    assert (t.loc["focal-specaug-30ep", "failed"], t.loc["cw-specaug-aggressive-30ep", "failed"]) == (1, 0)
    assert (t.loc["all-failed", "n"], t.loc["all-failed", "failed"]) == (0, 2)
    assert t.loc["all-failed", "reason"] == "no finished seed"


RATIO = 50 / 400  # the fake cells' n_test / n_train


def corrected_by_hand(x: np.ndarray) -> tuple[float, float]:
    """mean ± t(n−1) · sqrt(s² (1/n + n_test/n_train))"""
    half = scipy_stats.t.ppf(0.975, len(x) - 1) * math.sqrt(x.var(ddof=1) * (1 / len(x) + RATIO))
    return x.mean() - half, x.mean() + half


def corrected_p_by_hand(d: np.ndarray) -> float:
    t = d.mean() / math.sqrt(d.var(ddof=1) * (1 / len(d) + RATIO))
    return 2 * scipy_stats.t.sf(abs(t), len(d) - 1)


def test_table_numbers_are_the_corrected_resampled_t_by_default(built):
    t = built.table
    for row, values in [("baseline-resnet18-5ep", BASE), ("cw-specaug-30ep", CW), ("focal-specaug-30ep", FOCAL)]:
        x = np.array(values)
        assert t.loc[row, "n"] == len(x)
        assert t.loc[row, "mean"] == pytest.approx(x.mean())
        assert t.loc[row, "std"] == pytest.approx(x.std(ddof=1))
        assert t.loc[row, "ratio"] == pytest.approx(RATIO)
        assert (t.loc[row, "ci_low"], t.loc[row, "ci_high"]) == pytest.approx(corrected_by_hand(x))
        assert t.loc[row, "ci_method"] == "corrected"
        assert t.loc[row, "accuracy"] == pytest.approx(x.mean() + 0.05)
    # the focal row lacks seed 4: paired over seeds 0-3 only
    d = np.array(FOCAL) - np.array(BASE[:4])
    assert t.loc["focal-specaug-30ep", "n_pairs"] == 4
    assert t.loc["focal-specaug-30ep", "delta"] == pytest.approx(d.mean())
    assert (t.loc["focal-specaug-30ep", "delta_low"], t.loc["focal-specaug-30ep", "delta_high"]) == \
        pytest.approx(corrected_by_hand(d))
    # Holm over every non-baseline row that has a p-value; p from the same corrected t
    compared = ["cw-specaug-30ep", "focal-specaug-30ep", "cw-specaug-ls-30ep", "cw-specaug-aggressive-30ep"]
    values = {"cw-specaug-30ep": CW, "focal-specaug-30ep": FOCAL, "cw-specaug-ls-30ep": LS,
              "cw-specaug-aggressive-30ep": AGGR}
    raw = [corrected_p_by_hand(np.array(values[r]) - BASE[:len(values[r])]) for r in compared]
    assert list(t.loc[compared, "p_holm"]) == pytest.approx(holm_by_hand(raw))
    assert t.loc["cw-specaug-aggressive-30ep", "p_improve"] == 0.0
    assert math.isnan(t.loc["baseline-resnet18-5ep", "p_holm"])


def test_the_plain_t_stays_available_and_matches_scipy(suite):
    t = report.suite_report(suite.c, runs.find_experiment(suite.c, suite.name), ci="t").table
    x = np.array(CW)
    assert (t.loc["cw-specaug-30ep", "ci_low"], t.loc["cw-specaug-30ep", "ci_high"]) == pytest.approx(
        scipy_stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=scipy_stats.sem(x)))
    raw = scipy_stats.ttest_rel(CW, BASE).pvalue
    assert t.loc["cw-specaug-30ep", "p"] == pytest.approx(raw)
    # the corrected interval is wider than the plain one for the same numbers
    c = built_table = report.suite_report(suite.c, runs.find_experiment(suite.c, suite.name)).table
    assert (c.loc["cw-specaug-30ep", "ci_high"] - c.loc["cw-specaug-30ep", "ci_low"]) > \
        (t.loc["cw-specaug-30ep", "ci_high"] - t.loc["cw-specaug-30ep", "ci_low"])
    assert built_table is c


def test_each_row_gets_the_bayesian_probabilities_and_a_decision_against_the_baseline(built):
    t = built.table
    for row, values in [("cw-specaug-30ep", CW), ("cw-specaug-aggressive-30ep", AGGR)]:
        d = np.array(values) - BASE
        # baycomp's correlated t-test on the same differences and correction
        from baycomp.single import Posterior
        left, rope, right = Posterior(d.mean(), d.var(ddof=1) * (1 / len(d) + RATIO), len(d) - 1, 0.01).probs()
        assert (t.loc[row, "p_better"], t.loc[row, "p_equivalent"], t.loc[row, "p_worse"]) == \
            pytest.approx((right, rope, left))
    assert t.loc["cw-specaug-30ep", "decision"] == "better"
    assert t.loc["cw-specaug-aggressive-30ep", "decision"] == "worse"
    assert t.loc["baseline-resnet18-5ep", "decision"] == ""


def test_a_single_seed_row_is_na_with_its_reason(built):
    t = built.table.loc["smallcnn-25ep"]
    assert (t["n"], t["mean"], t["reason"], t["delta_reason"]) == (1, 0.45, "1 seed", "1 seed")
    assert math.isnan(t["ci_low"]) and t["verdict"] == "n/a (1 seed)" and t["decision"] == ""


def test_claim_verdicts_in_the_table(built):
    v = built.table["verdict"]
    assert v["baseline-resnet18-5ep"] == "0.732 above; 0.532 below"
    assert v["cw-specaug-30ep"] == "0.661 inside"
    assert v["focal-specaug-30ep"] == "0.573 below"
    assert v["all-failed"] == ""


def test_the_seeds_conclusions_are_checked_by_the_decision_on_the_paired_delta(built):
    checks = {c.claim.variant: c for c in built.checks}
    assert checks["focal-specaug-30ep"].verdict == "supported"
    assert checks["focal-specaug-30ep"].paired.n == 4
    assert checks["focal-specaug-30ep"].paired.delta == pytest.approx(np.mean(np.array(FOCAL) - CW[:4]))
    assert checks["cw-specaug-aggressive-30ep"].verdict == "supported"
    # "similar" needs evidence of equivalence (within the ROPE), not just no significant difference:
    # five seeds whose differences spread ±0.02 do not show it.
    assert checks["cw-specaug-ls-30ep"].paired.bayes.p_equivalent < 0.95
    assert checks["cw-specaug-ls-30ep"].verdict == "undecided (the data cannot tell yet)"


def test_claims_are_not_judged_where_the_runs_did_not_test_them(tracking_uri, experiment):
    s = FakeSuite(tracking_uri, experiment)
    s.row("baseline", 0, claimed="0.6")
    s.row("cw", 1, claimed="0.7", **{"harness.profile_changes": "epochs 15 → 3, n_mels 128 → 32"})
    for seed, (a, b) in enumerate(zip(BASE, CW)):
        s.cell("baseline", seed, a, data="synthetic")
        s.cell("cw", seed, b, data="synthetic")
    rep = report.suite_report(s.c, runs.find_experiment(s.c, experiment))
    assert rep.table.loc["baseline", "verdict"] == "not comparable: synthetic corpus, not RAVDESS"
    assert rep.table.loc["cw", "verdict"] == ("not comparable: profile quick changes epochs 15 → 3, n_mels 128 → 32; "
                                              "synthetic corpus, not RAVDESS")
    supports = report.render_markdown(rep).split("## What the data supports")[1]
    assert "**not tested** here" in supports and "consistent with" not in supports and "not reproduced" not in supports


def test_intervals_stay_inside_the_metrics_range(tracking_uri, experiment):
    s = FakeSuite(tracking_uri, experiment)
    s.row("baseline", 0)
    for seed, v in enumerate([0.97, 0.99, 0.6]):
        s.cell("baseline", seed, v)
    t = report.suite_report(s.c, runs.find_experiment(s.c, experiment)).table
    assert t.loc["baseline", "ci_high"] == 1.0 and 0.0 <= t.loc["baseline", "ci_low"] < t.loc["baseline", "mean"]


def test_cross_validated_cells_pair_by_seed_and_fold(tracking_uri, experiment):
    s = FakeSuite(tracking_uri, experiment)
    s.row("baseline", 0)
    s.row("variant", 1)
    base = {(seed, fold): 0.5 + 0.01 * fold + 0.005 * seed for seed in (0, 1) for fold in range(4)}
    for (seed, fold), v in base.items():
        s.cell("baseline", seed, v, fold=fold)
        if (seed, fold) != (1, 3):  # a missing fold: paired over the 7 others
            s.cell("variant", seed, v + 0.02 + 0.002 * fold, fold=fold)
    t = report.suite_report(s.c, runs.find_experiment(s.c, experiment)).table
    assert (t.loc["baseline", "n"], t.loc["baseline", "n_seeds"], t.loc["baseline", "design"]) == \
        (8, 2, "2 × 4-fold CV")
    assert t.loc["variant", "n_pairs"] == 7
    assert t.loc["variant", "delta"] == pytest.approx(np.mean([0.02 + 0.002 * f for s_ in (0, 1) for f in range(4)
                                                             if (s_, f) != (1, 3)]))


def test_the_baseline_can_be_chosen_and_an_unknown_one_is_an_error(suite):
    exp = runs.find_experiment(suite.c, suite.name)
    rep = report.suite_report(suite.c, exp, baseline="cw-specaug-30ep")
    assert bool(rep.table.loc["cw-specaug-30ep", "baseline"])
    assert rep.table.loc["baseline-resnet18-5ep", "delta"] == pytest.approx(np.mean(np.array(BASE) - CW))
    with pytest.raises(report.HarnessError, match="unknown --baseline 'nope'; rows: baseline-resnet18-5ep, cw-"):
        report.suite_report(suite.c, exp, baseline="nope")


def test_default_baseline_is_the_first_baseline_row_else_the_first():
    assert table.default_baseline(["a", "baseline-x", "baseline-y"]) == "baseline-x"
    assert table.default_baseline(["a", "b"]) == "a"


# --- the markdown ----------------------------------------------------------------------

def table_lines(md: str) -> list[list[str]]:
    return [re.split(r"(?<!\\)\|", line)[1:-1] for line in md.splitlines() if line.startswith("|")]


def test_markdown_tables_have_the_same_columns_on_every_line(built):
    md = report.render_markdown(built)
    blocks = [b for b in md.split("\n\n") if b.startswith("|")]
    assert len(blocks) == 4  # the main table, its details, what would sharpen each answer and the failed runs
    for block in blocks:
        widths = {len(cells) for cells in table_lines(block)}
        assert len(widths) == 1, block
    assert "loss \\| nan" in md  # a `|` in a failure reason is escaped


def test_markdown_states_what_was_measured_and_what_the_data_supports(built):
    md = report.render_markdown(built)
    assert "metric: `test_f1_macro`" in md and "fp-a" in md and "actor" in md and "resnet18" in md
    assert "Nadeau & Bengio" in md and "baycomp" in md and "Holm" in md and "ties ½" in md
    main_table = md.split("## Details")[0]
    lines = {cells[1].strip(): [c.strip() for c in cells] for cells in table_lines(main_table)}
    assert lines["`smallcnn-25ep`"][3] == "0.450 (1 seed)" and lines["`smallcnn-25ep`"][4] == "n/a (1 seed)"
    assert lines["`baseline-resnet18-5ep`"][3].startswith(f"{np.mean(BASE):.3f} [")
    assert lines["`cw-specaug-30ep`"][5].startswith("**better**")
    assert len(lines["`cw-specaug-30ep`"]) == 9  # one glance: #, row, n, mean, Δ, decision, rules out, p, claim
    assert lines["`cw-specaug-30ep`"][6].startswith("any loss, a gain smaller than +0.0") and \
        " and a gain above +0.0" in lines["`cw-specaug-30ep`"][6]
    assert "`all-failed`" not in lines and "No finished run yet: `all-failed`." in md
    supports = md.split("## What the data supports")[1]
    assert "`cw-specaug-30ep`: the seed's claim 0.661" in supports and "consistent" in supports
    assert "`cw-specaug-aggressive-30ep` is **worse than** `baseline-resnet18-5ep`" in supports
    assert "\"label smoothing performed similarly\"" in supports and "synthetic corpus" not in supports
    assert "WARNING" not in md


def test_the_report_opens_with_its_bottom_line_then_the_main_table_and_ends_with_its_methods(built):
    md = report.render_markdown(built)
    lines = md.splitlines()
    t = built.table
    compared = t[(t["n"] > 0) & ~t["baseline"].astype(bool)]
    # the title, one paragraph, then the main table
    assert lines[0] == "# Ablation report: report-suite" and lines[1] == "" and lines[3] == ""
    assert lines[4].startswith("| # | row | n |")
    bottom = lines[2]
    counts = {d: int((compared["decision"] == d).sum()) for d in ("better", "equivalent", "worse", "undecided")}
    assert bottom.startswith(
        f"Of {len(compared)} rows compared with `baseline-resnet18-5ep` on `test_f1_macro`: {counts['better']} "
        f"better, {counts['equivalent']} equivalent (within ±0.01), {counts['worse']} worse, "
        f"{counts['undecided']} undecided, 1 without a Δ.")
    best = compared["delta"].astype(float).idxmax()
    assert best == "cw-specaug-30ep" and (f"Best: `{best}`, Δ {t.loc[best, 'delta']:+.3f} "
                                          f"[{t.loc[best, 'delta_low']:.3f}, {t.loc[best, 'delta_high']:.3f}] "
                                          f"({t.loc[best, 'decision']})." in bottom)
    # what would decide it, said once for the suite
    assert "Next: `smallcnn-25ep` needs runs paired with the baseline's for a Δ (1 seed)." in bottom
    # each row's answer in at most two short sentences; the detail in the tables below
    supports = md.split("## What the data supports")[1].split("## Details")[0]
    for row, r in compared.iterrows():
        if r["decision"]:
            line = next(x for x in supports.splitlines() if x.startswith(f"- `{row}` "))
            answer_words = line.split("`: ", 1)[1].split(" The seed's claimed gain")[0]
            assert answer_words.replace("**", "") == r["answer"].short()
            assert len(re.findall(r"[.](?:\s|$)", answer_words)) <= 2, line
    sharpen = md.split("### What would sharpen each answer")[1].split("## Failed")[0]
    a = t.loc["cw-specaug-ls-30ep", "answer"]
    assert (f"| `cw-specaug-ls-30ep` | corrected | {a.resolution()[0]} | {a.resolution()[1]} | {a.split()} | "
            f"{a.more_repeats()} | {a.floor()} |") in sharpen
    # the methods last: what was measured, the interval's and the decisions' methods, how to read the tables
    body, methods = md.split("\n## Methods\n")
    assert "- intervals:" not in body and "How to read this" not in body and "- data fingerprint:" not in body
    assert "- intervals: corrected resampled t" in methods and "**How to read this.**" in methods
    assert "- data fingerprint: fp-a" in methods and "\n## " not in methods


def test_different_data_fingerprints_are_a_loud_warning(tracking_uri, experiment):
    s = FakeSuite(tracking_uri, experiment)
    s.row("baseline", 0)
    s.cell("baseline", 0, 0.5, fingerprint="fp-a")
    s.cell("baseline", 1, 0.6, fingerprint="fp-b")
    md = report.render_markdown(report.suite_report(s.c, runs.find_experiment(s.c, experiment)))
    assert "**WARNING: the cells were trained on 2 different data sets**" in md


# --- the command ----------------------------------------------------------------------

def test_report_command_writes_markdown_plots_and_a_report_run(suite, tracking_uri, capsys):
    out = Path("out") / "suite.md"
    assert main(["report", "--experiment", suite.name, "--tracking_uri", tracking_uri, "--out", str(out)]) == 0
    md = out.read_text()
    rows_run = ["cw-specaug-30ep", "baseline-resnet18-5ep", "focal-specaug-30ep", "cw-specaug-ls-30ep",
                "cw-specaug-aggressive-30ep", "smallcnn-25ep"]  # every row with a finished run; not all-failed
    pngs = ["suite-forest.png", "suite-delta.png", "suite-val-f1.png", *(f"suite-confusion-{r}.png" for r in rows_run)]
    for name in pngs:
        data = (out.parent / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, name
        assert f"]({name})" in md
    runs = suite.c.search_runs([suite.exp_id], "tags.`harness.kind` = 'report'")
    assert len(runs) == 1 and runs[0].info.run_name == "report" and runs[0].info.status == "FINISHED"
    assert sorted(a.path for a in suite.c.list_artifacts(runs[0].info.run_id)) == sorted(["suite.md", *pngs])
    assert runs[0].info.run_id in capsys.readouterr().out

    # a second report ignores the first report run and logs a new one; bootstrap CIs on request
    assert main(["report", "--experiment", suite.name, "--tracking_uri", tracking_uri, "--ci", "bootstrap"]) == 0
    assert "intervals: bootstrap BCa" in Path("reports/report-suite.md").read_text()
    assert len(suite.c.search_runs([suite.exp_id], "tags.`harness.kind` = 'report'")) == 2


def test_the_report_draws_each_rows_test_confusion_summed_from_its_runs_tags(built, monkeypatch, tmp_path):
    drawn = {}

    def confusion_png(cm, classes, path, title):
        drawn[path.name] = (cm, classes, title)
        return path
    monkeypatch.setattr(report, "confusion_png", confusion_png)
    monkeypatch.setattr(report, "read_histories", lambda c, finished: pd.DataFrame())
    monkeypatch.setattr(report, "plot_forest", lambda *a, **k: tmp_path / "f.png")
    monkeypatch.setattr(report, "plot_delta", lambda *a, **k: tmp_path / "d.png")
    plots = report.write_plots(None, built, tmp_path / "r.md")
    n_runs = {"baseline-resnet18-5ep": 5, "cw-specaug-30ep": 5, "cw-specaug-ls-30ep": 5, "focal-specaug-30ep": 4,
              "cw-specaug-aggressive-30ep": 5, "smallcnn-25ep": 1}
    assert set(drawn) == {f"r-confusion-{row}.png" for row in n_runs}  # none for a row without a finished run
    for row, n in n_runs.items():
        cm, classes, title = drawn[f"r-confusion-{row}.png"]
        assert cm == (n * np.array(CONFUSION)).tolist() and classes == SENTIMENTS
        assert title.splitlines()[0] == row and title.endswith(f"sum of {n} runs")
    best = "cw-specaug-30ep"  # the highest mean test macro-F1
    assert "(best mean test_f1_macro)" in drawn[f"r-confusion-{best}.png"][2]
    assert plots[f"test confusion matrix of `{best}` (best mean)"] == f"r-confusion-{best}.png"


def test_rope_sets_the_equivalence_band_of_the_decisions(suite, tracking_uri, capsys):
    # label smoothing vs the baseline: Δ ≈ +0.06, wins on every seed; with a band of ±0.2 that is "equivalent"
    exp = runs.find_experiment(suite.c, suite.name)
    narrow = report.suite_report(suite.c, exp).table.loc["cw-specaug-ls-30ep"]
    wide = report.suite_report(suite.c, exp, rope=0.2).table.loc["cw-specaug-ls-30ep"]
    assert narrow["decision"] == "better" and wide["decision"] == "equivalent"
    assert wide["p_equivalent"] > narrow["p_equivalent"]
    out = Path("out") / "rope.md"
    assert main(["report", "--experiment", suite.name, "--tracking_uri", tracking_uri, "--rope", "0.2",
                 "--out", str(out)]) == 0
    assert "region of practical equivalence ±0.2" in out.read_text()
    assert main(["report", "--experiment", suite.name, "--tracking_uri", tracking_uri, "--rope", "-1"]) == 2
    assert "invalid --rope -1.0" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needles", [
    (["--experiment", "no-such-experiment"], ["experiment 'no-such-experiment' not found", "report-suite"]),
    (["--experiment", "report-suite", "--metric", "f1"], ["metric 'f1' not found", "available: best_epoch, best_val_f1_macro, n_test_clips", "test_f1_macro"]),
    (["--experiment", "report-suite", "--baseline", "x"], ["unknown --baseline 'x'", "smallcnn-25ep"]),
    ([], ["--experiment"]),
])
def test_user_errors_are_one_line_exit_2(suite, tracking_uri, capsys, argv, needles):
    assert main(["report", *argv, "--tracking_uri", tracking_uri]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for needle in needles:
        assert needle in err, err


def test_an_experiment_without_suite_runs_is_a_clear_error(tracking_uri, experiment, capsys):
    MlflowClient(tracking_uri).create_experiment(experiment)
    assert main(["report", "--experiment", experiment, "--tracking_uri", tracking_uri]) == 2
    assert f"no suite runs in experiment '{experiment}': run `python -m harness suite run" in capsys.readouterr().err


# --- studies ------------------------------------------------------------------------------

def write_study(c: MlflowClient, exp_id: str, name: str, importances: bool) -> None:
    parent = c.create_run(exp_id, run_name=name, tags={"harness.kind": "study", "harness.study": name}).info.run_id
    params = [Param("best.focal_gamma", "1.5"), Param("best.lr", "0.0005")]
    metrics = [Metric("best_value", 0.71, 0, 0)]
    if importances:
        metrics += [Metric("importance.lr", 0.8, 0, 0), Metric("importance.focal_gamma", 0.2, 0, 0)]
    c.log_batch(parent, metrics=metrics, params=params)
    states = ["COMPLETE"] * 6 + ["PRUNED", "PRUNED", "FAIL"]
    for number, state in enumerate(states):
        rid = c.create_run(exp_id, tags={"harness.kind": "trial", "mlflow.parentRunId": parent,
                                         "harness.trial_number": str(number), "harness.trial_state": state}).info.run_id
        c.log_batch(rid, metrics=[Metric("best_val_f1_macro", 0.5 + 0.03 * number, 0, 0)],
                    params=[Param("focal_gamma", str(number / 2)), Param("lr", "0.001")])
        c.set_terminated(rid, "FINISHED" if state != "FAIL" else "FAILED")
    c.set_terminated(parent)


def test_study_section_reads_best_params_states_importances_and_top_trials(tracking_uri, capsys):
    c = MlflowClient(tracking_uri)
    write_study(c, c.create_experiment("tune-focal"), "tune-focal", importances=True)
    assert main(["report", "--study", "tune-focal", "--tracking_uri", tracking_uri]) == 0
    md = Path("reports/tune-focal.md").read_text()
    assert "best value (the study's objective, on the validation split): 0.710" in md
    assert "`focal_gamma` = 1.5" in md and "`lr` = 0.0005" in md
    assert "COMPLETE 6, FAIL 1, PRUNED 2" in md
    assert "`lr` 0.800, `focal_gamma` 0.200" in md
    top = table_lines(md)[2:]  # after the header and the separator
    assert [int(cells[0]) for cells in top] == [5, 4, 3, 2, 1]  # complete trials, best first
    assert len(c.search_runs([c.get_experiment_by_name("tune-focal").experiment_id],
                             "tags.`harness.kind` = 'report'")) == 1
    capsys.readouterr()
    assert main(["report", "--experiment", "tune-focal", "--tracking_uri", tracking_uri]) == 2
    assert "it holds studies (tune-focal): use --study NAME" in capsys.readouterr().err


def test_study_without_importances_says_not_recorded_and_study_best_is_a_row(tracking_uri, experiment):
    s = FakeSuite(tracking_uri, experiment)
    write_study(s.c, s.exp_id, "tune-2", importances=False)
    s.row("baseline", 0)
    s.row("study-best", 1, **{"harness.study": "tune-2"})
    for seed, v in enumerate(BASE):
        s.cell("baseline", seed, v)
        s.cell("study-best", seed, v + 0.05)
    out = Path("both.md")
    assert main(["report", "--experiment", experiment, "--study", "tune-2", "--tracking_uri", tracking_uri,
                 "--out", str(out)]) == 0
    md = out.read_text()
    assert "parameter importances: not recorded" in md
    assert "| `study-best` (study `tune-2`) |" in md and "+0.050" in md


def test_unknown_study_is_a_clear_error(suite, tracking_uri, capsys):
    assert main(["report", "--study", "nope", "--experiment", suite.name, "--tracking_uri", tracking_uri]) == 2
    assert "no study 'nope' in experiment(s) 'report-suite'" in capsys.readouterr().err
