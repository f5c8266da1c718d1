"""`harness report`: the ablation table with confidence intervals, rebuilt from MLflow.

It reads only the tracking store (never local training files) and changes no
run; the report and its plots are logged to a new run of kind "report".

Three layers, so the statistics can be tested on fixed numbers:

1. reading: MLflow runs -> DataFrames shaped like `mlflow.search_runs`
   (`run_id`, `status`, `start_time`, `metrics.*`, `params.*`, `tags.*`),
   then `rows_frame` / `cells_frame` give them plain column names;
2. computing, pure: `select_cells` (which child runs count), `mean_ci`,
   `paired_delta`, `holm`, `claim_verdict`, `build_table`,
   `check_seed_claims`, `what_the_data_supports`, `summarize_study`;
3. writing: `render_markdown`, the `plot_*` functions, `log_report`.
"""
from __future__ import annotations

import argparse
import ast
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from . import tracking
from .errors import HarnessError

DEFAULT_METRIC = "test_f1_macro"
CLAIM_METRIC = "test_f1_macro"  # the seed's claimed numbers are single-run test macro-F1
HISTORY_METRIC = "val_f1_macro"
LEVEL = 0.95
ALPHA = 0.05
BOOTSTRAP_SEED = 0  # fixed: the same runs always give the same bootstrap CI
BOOTSTRAP_RESAMPLES = 9999
FAILED_STATUSES = ("FAILED", "KILLED")


# --- the seed's conclusions, checked by a paired Δ between two rows ------------------

@dataclass(frozen=True)
class SeedClaim:
    text: str
    reference: str  # row A
    variant: str  # row B; the claim is about Δ = B − A
    expected: str  # "better", "worse" or "similar"


SEED_CLAIMS: tuple[SeedClaim, ...] = (
    SeedClaim("focal loss performed worse than class-weighted loss (\"didn't help\")",
              "cw-specaug-30ep", "focal-specaug-30ep", "worse"),
    SeedClaim("more aggressive SpecAugment hurt performance",
              "cw-specaug-30ep", "cw-specaug-aggressive-30ep", "worse"),
    SeedClaim("label smoothing performed similarly",
              "cw-specaug-30ep", "cw-specaug-ls-30ep", "similar"),
)


def higher_is_better(metric: str) -> bool:
    """Scores go up; losses and times go down."""
    return not any(word in metric for word in ("loss", "time"))


# --- reading MLflow ----------------------------------------------------------------

def find_experiment(c, name: str):
    exp = c.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage == "deleted":
        names = sorted(e.name for e in c.search_experiments())
        shown = ", ".join(names[:10]) + (f", ... ({len(names) - 10} more)" if len(names) > 10 else "")
        raise HarnessError(f"experiment {name!r} not found in the tracking store; existing: {shown or 'none'}")
    return exp


def search_frame(c, experiment_ids: Sequence[str], kind: str) -> pd.DataFrame:
    """All active runs of one `harness.kind`, as a `mlflow.search_runs`-shaped DataFrame.

    Selecting by kind is what keeps report, study and trial runs out of the rows and cells."""
    records, token = [], None
    while True:
        page = c.search_runs(list(experiment_ids), filter_string=f"tags.`harness.kind` = '{kind}'",
                             max_results=1000, page_token=token)
        for run in page:
            rec = {"run_id": run.info.run_id, "status": run.info.status, "start_time": run.info.start_time,
                   "experiment_id": run.info.experiment_id}
            rec.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
            rec.update({f"params.{k}": v for k, v in run.data.params.items()})
            rec.update({f"tags.{k}": v for k, v in run.data.tags.items()})
            records.append(rec)
        token = page.token
        if not token:
            return pd.DataFrame(records)


def _col(df: pd.DataFrame, name: str, default: object = "") -> pd.Series:
    return df[name].fillna(default) if name in df else pd.Series(default, index=df.index, dtype=object)


def rows_frame(parents: pd.DataFrame) -> pd.DataFrame:
    """Row parent runs with plain column names."""
    if parents.empty:
        return pd.DataFrame(columns=["run_id", "row", "row_index", "config_hash", "claimed", "study", "profile",
                                     "start_time"])
    name = _col(parents, "tags.harness.row").where(_col(parents, "tags.harness.row") != "",
                                                   _col(parents, "tags.mlflow.runName"))
    return pd.DataFrame({
        "run_id": parents["run_id"], "row": name,
        "row_index": pd.to_numeric(_col(parents, "tags.harness.row_index", None), errors="coerce"),
        "config_hash": _col(parents, "tags.harness.config_hash"),
        "claimed": _col(parents, "tags.harness.claimed_f1"),
        "study": _col(parents, "tags.harness.study"), "profile": _col(parents, "tags.harness.profile"),
        "start_time": parents["start_time"],
    })


CELL_TAGS = {"seed": "harness.seed", "row": "harness.row", "config_hash": "harness.config_hash",
             "parent_id": tracking.PARENT_TAG, "fingerprint": "harness.data_fingerprint", "data": "harness.data",
             "split": "harness.split", "git_commit": "harness.git_commit", "confusion": "harness.test_confusion",
             "failure_reason": "harness.failure_reason"}


def cells_frame(children: pd.DataFrame) -> pd.DataFrame:
    """Seed child runs with plain column names; metrics keep their `metrics.` prefix."""
    base = ["run_id", "status", "start_time", *CELL_TAGS, "mode", "model"]
    if children.empty:
        return pd.DataFrame(columns=base)
    out = children[["run_id", "status", "start_time"]].copy()
    for col, tag in CELL_TAGS.items():
        out[col] = _col(children, f"tags.{tag}")
    seed = out["seed"].where(out["seed"] != "", _col(children, "params.seed"))
    out["seed"] = pd.to_numeric(seed, errors="coerce").astype("Int64")
    out["mode"] = _col(children, "params.mode")
    out["model"] = _col(children, "params.model")
    metrics = [c for c in children.columns if c.startswith("metrics.")]
    return pd.concat([out, children[metrics]], axis=1)


def read_suite(c, experiment_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (rows_frame(search_frame(c, [experiment_id], "row")),
            cells_frame(search_frame(c, [experiment_id], "cell")))


def read_histories(c, cells: pd.DataFrame, key: str = HISTORY_METRIC) -> pd.DataFrame:
    """Per-epoch values of `key` for each cell: columns row, seed, step, value."""
    recs = [{"row": cell.row, "seed": cell.seed, "step": m.step, "value": m.value}
            for cell in cells.itertuples() for m in c.get_metric_history(cell.run_id, key)]
    return pd.DataFrame(recs, columns=["row", "seed", "step", "value"])


# --- which runs count --------------------------------------------------------------

@dataclass
class Selection:
    rows: pd.DataFrame  # newest parent per row name, in suite order
    finished: pd.DataFrame  # one FINISHED cell per (row, seed) with the row's current config hash
    failed: pd.DataFrame  # FAILED/KILLED cells with the current hash; `rerun_finished` says if a rerun replaced it
    notes: list[str] = field(default_factory=list)


def select_cells(rows: pd.DataFrame, cells: pd.DataFrame) -> Selection:
    """Newest parent per row name; per (row, seed) the latest FINISHED cell with that parent's config hash."""
    notes: list[str] = []
    # a cell names its row; an older writer may only have nested it under the parent run
    cells = cells.assign(row=cells["row"].where(cells["row"] != "",
                                                cells["parent_id"].map(dict(zip(rows["run_id"], rows["row"])))))
    rows = rows.sort_values("start_time", ascending=False)
    for name, group in rows.groupby("row", sort=False):
        if len(group) > 1 and group["config_hash"].nunique() > 1:
            notes.append(f"row `{name}` has {len(group)} parent runs with different configs; "
                         f"used the newest (config hash {group['config_hash'].iloc[0]})")
    rows = rows.drop_duplicates("row").sort_values(["row_index", "row"], na_position="last").reset_index(drop=True)

    current = cells["row"].map(dict(zip(rows["row"], rows["config_hash"])))
    orphans = cells[current.isna()]
    if len(orphans):
        notes.append(f"{len(orphans)} cell run(s) of rows without a parent run ignored: "
                     f"{', '.join(sorted(set(orphans['row'])))}")
    stale = cells[current.notna() & (cells["config_hash"] != current)]
    for name, group in stale.groupby("row"):
        seeds = ", ".join(str(s) for s in sorted(group["seed"].dropna().unique()))
        notes.append(f"row `{name}`: {len(group)} run(s) whose config hash is not the row's excluded (seeds {seeds})")
    cur = cells[cells["config_hash"] == current].sort_values("start_time")

    fin = cur[cur["status"] == "FINISHED"]
    for (name, seed), group in fin[fin.duplicated(["row", "seed"], keep=False)].groupby(["row", "seed"]):
        notes.append(f"row `{name}` seed {seed}: {len(group)} finished runs with the current config; "
                     f"took the latest ({group['run_id'].iloc[-1]})")
    fin = fin.drop_duplicates(["row", "seed"], keep="last").reset_index(drop=True)

    failed = cur[cur["status"].isin(FAILED_STATUSES)].copy()
    done = set(zip(fin["row"], fin["seed"]))
    failed["rerun_finished"] = [(r, s) in done for r, s in zip(failed["row"], failed["seed"])]
    running = cur[~cur["status"].isin(("FINISHED", *FAILED_STATUSES))]
    if len(running):
        notes.append(f"{len(running)} run(s) not finished yet (RUNNING/SCHEDULED) not counted: "
                     + ", ".join(f"`{r}` seed {s}" for r, s in zip(running["row"], running["seed"])))
    return Selection(rows=rows, finished=fin, failed=failed.reset_index(drop=True), notes=notes)


def available_metrics(cells: pd.DataFrame) -> list[str]:
    return sorted(c.removeprefix("metrics.") for c in cells.columns
                  if c.startswith("metrics.") and cells[c].notna().any())


# --- statistics ----------------------------------------------------------------------

def _quiet(fn, *args, **kwargs):
    # scipy warns on degenerate samples (identical values); those cases are handled by the caller.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval for the mean: mean ± t(n−1) · s/√n."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def bootstrap_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, str]:
    """BCa bootstrap interval of the mean; percentile where BCa is degenerate."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    for method in ("BCa", "percentile"):
        try:
            ci = _quiet(stats.bootstrap, (x,), np.mean, method=method, confidence_level=level,
                        n_resamples=BOOTSTRAP_RESAMPLES, rng=np.random.default_rng(BOOTSTRAP_SEED)).confidence_interval
        except ValueError:
            continue
        if np.isfinite(ci.low) and np.isfinite(ci.high):
            return float(ci.low), float(ci.high), method
    return float(x.mean()), float(x.mean()), "degenerate"


def mean_ci(values: Sequence[float], method: str = "t", level: float = LEVEL) -> tuple[float, float, str]:
    """(low, high, method used) of the mean; needs at least 2 values."""
    if len(values) < 2:
        raise ValueError("a confidence interval needs at least 2 values")
    if method == "bootstrap":
        return bootstrap_interval(values, level)
    return (*t_interval(values, level), "t")


@dataclass(frozen=True)
class Paired:
    n: int  # seeds both have
    delta: float = math.nan  # mean of (row − reference) over those seeds
    low: float = math.nan
    high: float = math.nan
    p: float = math.nan  # paired t-test, unadjusted
    p_improve: float = math.nan  # share of seeds where the row beats the reference, ties ½
    reason: str = ""  # why the numbers are n/a


def seeds_reason(n: int, what: str = "seed") -> str:
    """Why a row of n seeds has no interval: "1 seed", "no finished seed"."""
    return f"no finished {what}" if n == 0 else f"{n} {what}{'' if n == 1 else 's'}"


def paired_delta(row: pd.Series, reference: pd.Series, higher_better: bool = True,
                 level: float = LEVEL, reference_label: str = "baseline") -> Paired:
    """Δ = row − reference over the seeds both have (Series indexed by seed)."""
    from scipy import stats

    seeds = row.index.intersection(reference.index)
    if len(row) < 2:
        return Paired(n=len(seeds), reason=seeds_reason(len(row)))
    if len(reference) < 2:
        return Paired(n=len(seeds), reason=f"{reference_label}: {seeds_reason(len(reference))}")
    if len(seeds) < 2:
        return Paired(n=len(seeds), reason=seeds_reason(len(seeds), "paired seed"))
    a, b = row.loc[seeds].to_numpy(float), reference.loc[seeds].to_numpy(float)
    d = a - b
    low, high = t_interval(d, level)
    p = float(_quiet(stats.ttest_rel, a, b).pvalue)
    wins = (d > 0) if higher_better else (d < 0)
    p_improve = (wins.sum() + 0.5 * (d == 0).sum()) / len(d)
    return Paired(n=len(seeds), delta=float(d.mean()), low=low, high=high, p=p, p_improve=float(p_improve))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (monotone, capped at 1); NaN stays NaN and is not counted."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m, running = len(order), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out


_NUMBER = r"\d*\.?\d+"


def parse_claim(claim: str) -> list[tuple[float, float]]:
    """The seed's claim as intervals: "0.661" -> [(0.661, 0.661)], "0.732,0.532" -> two, "0.4-0.5" -> one range."""
    out = []
    for part in filter(None, (p.strip().lstrip("~") for p in claim.split(","))):
        m = re.fullmatch(rf"({_NUMBER})\s*[-–]\s*({_NUMBER})", part)
        if m:
            out.append((float(m.group(1)), float(m.group(2))))
        elif re.fullmatch(_NUMBER, part):
            out.append((float(part), float(part)))
        else:
            raise ValueError(f"unreadable claim {claim!r}")
    return out


def claim_positions(claim: str, low: float, high: float) -> list[tuple[str, str]]:
    """(claimed number or range, where): a number inside / above / below [low, high]; a range overlaps / above / below."""
    out = []
    for a, b in parse_claim(claim):
        where = "above" if a > high else "below" if b < low else "inside" if a == b else "overlaps"
        out.append((_num(a) if a == b else f"{_num(a)}–{_num(b)}", where))
    return out


def claim_verdict(claim: str, low: float, high: float) -> str:
    return "; ".join(f"{text} {where}" for text, where in claim_positions(claim, low, high))


# --- the table ---------------------------------------------------------------------

TABLE_COLUMNS = ["n", "failed", "mean", "ci_low", "ci_high", "ci_method", "std", "min", "max", "reason",
                 "baseline", "n_pairs", "delta", "delta_low", "delta_high", "p", "p_holm", "p_improve",
                 "delta_reason", "claimed", "verdict", "study", "accuracy", "best_epoch", "wall_time_s"]


def default_baseline(row_names: Sequence[str]) -> str:
    return next((r for r in row_names if r.startswith("baseline")), row_names[0])


def seed_values(finished: pd.DataFrame, row: str, metric: str) -> pd.Series:
    """The metric of one row's finished cells, indexed by seed (cells lacking it dropped)."""
    col = f"metrics.{metric}"
    cells = finished[finished["row"] == row]
    if col not in cells:
        return pd.Series(dtype=float)
    return cells.set_index("seed")[col].dropna().astype(float).sort_index()


def _mean_metric(cells: pd.DataFrame, metric: str) -> float:
    col = f"metrics.{metric}"
    return float(cells[col].mean()) if col in cells and cells[col].notna().any() else math.nan


def _unresolved_failures(failed: pd.DataFrame, row: str) -> int:
    """Seeds of the row that failed or were killed and have no finished rerun."""
    mine = failed[(failed["row"] == row) & ~failed["rerun_finished"].astype(bool)]
    return int(mine["seed"].nunique())


def build_table(sel: Selection, metric: str, baseline: str, ci: str = "t") -> pd.DataFrame:
    """One line per row (suite order) with every number the report shows; NaN where n/a."""
    better = higher_is_better(metric)
    base_values = seed_values(sel.finished, baseline, metric)
    lines = []
    for row in sel.rows.itertuples():
        v = seed_values(sel.finished, row.row, metric)
        cells = sel.finished[sel.finished["row"] == row.row]
        n = len(v)
        line = dict.fromkeys(TABLE_COLUMNS, math.nan) | {
            "row": row.row, "n": n, "claimed": row.claimed, "verdict": "", "ci_method": "", "study": row.study,
            "failed": _unresolved_failures(sel.failed, row.row),
            "reason": "" if n >= 2 else seeds_reason(n),
            "baseline": row.row == baseline, "delta_reason": "",
            "accuracy": _mean_metric(cells, "test_accuracy"), "best_epoch": _mean_metric(cells, "best_epoch"),
            "wall_time_s": _mean_metric(cells, "wall_time_s")}
        if n:
            line.update(mean=v.mean(), min=v.min(), max=v.max())
        if n >= 2:
            low, high, method = mean_ci(v.to_numpy(), ci)
            line.update(ci_low=low, ci_high=high, ci_method=method, std=v.std(ddof=1))
        if row.row != baseline:
            paired = paired_delta(v, base_values, better)
            line.update(n_pairs=paired.n, delta=paired.delta, delta_low=paired.low, delta_high=paired.high, p=paired.p,
                        p_improve=paired.p_improve, delta_reason=paired.reason)
        if row.claimed:
            if metric != CLAIM_METRIC:
                line["verdict"] = f"n/a (claim is {CLAIM_METRIC})"
            elif n < 2:
                line["verdict"] = f"n/a ({line['reason']})"
            else:
                try:
                    line["verdict"] = claim_verdict(row.claimed, line["ci_low"], line["ci_high"])
                except ValueError as e:
                    line["verdict"] = f"n/a ({e})"
        lines.append(line)
    table = pd.DataFrame(lines).set_index("row")
    table["p_holm"] = holm(table["p"].to_numpy())
    return table


@dataclass(frozen=True)
class ClaimCheck:
    claim: SeedClaim
    paired: Paired
    verdict: str


def pair_verdict(expected: str, low: float, high: float, higher_better: bool = True) -> str:
    """A claim about Δ = B − A against the 95% CI of the paired Δ."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "cannot be checked"
    if low <= 0 <= high:
        return "supported (no detectable difference)" if expected == "similar" \
            else "not supported (difference within noise)"
    observed = "better" if (low > 0) == higher_better else "worse"
    if expected == "similar":
        return f"contradicted (the variant is {observed})"
    return "supported" if observed == expected else f"contradicted (the variant is {observed})"


def check_seed_claims(sel: Selection, metric: str,
                      claims: Iterable[SeedClaim] = SEED_CLAIMS) -> list[ClaimCheck]:
    """The seed's conclusions whose two rows are both in the suite, paired by seed."""
    names = set(sel.rows["row"])
    out = []
    for claim in claims:
        if claim.reference in names and claim.variant in names:
            paired = paired_delta(seed_values(sel.finished, claim.variant, metric),
                                  seed_values(sel.finished, claim.reference, metric), higher_is_better(metric),
                                  reference_label=claim.reference)
            out.append(ClaimCheck(claim, paired, pair_verdict(claim.expected, paired.low, paired.high,
                                                              higher_is_better(metric))))
    return out


# --- number formatting ---------------------------------------------------------------

def _num(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def fmt_ci(low: float, high: float) -> str:
    return f"[{_num(low)}, {_num(high)}]"


def fmt_delta(d: float) -> str:
    return f"{d:+.3f}"


def _na(reason: str) -> str:
    return f"n/a ({reason})" if reason else "n/a"


def what_the_data_supports(table: pd.DataFrame, checks: Sequence[ClaimCheck], metric: str, baseline: str,
                           data_kind: str = "") -> list[str]:
    """Bullet points generated from the numbers: claims vs CIs, rows vs baseline, the seed's conclusions."""
    out = []
    for row, t in table.iterrows():
        if not t["claimed"]:
            continue
        if not t["verdict"] or t["verdict"].startswith("n/a"):
            out.append(f"`{row}`: the seed's claim {t['claimed']} cannot be checked: {t['verdict']}.")
            continue
        outside = sorted({w for _, w in claim_positions(t["claimed"], t["ci_low"], t["ci_high"])}
                         - {"inside", "overlaps"})
        summary = ("consistent with the mean over seeds" if not outside else
                   f"not reproduced: {' and '.join(outside)} the CI, so not what these seeds give on average "
                   f"(a single run spreads more than the mean: compare with min–max)")
        out.append(f"`{row}`: the seed's claim {t['claimed']} vs the 95% CI {fmt_ci(t['ci_low'], t['ci_high'])} "
                   f"of the mean over {t['n']} seeds ({t['verdict']}): {summary}.")
    for row, t in table.iterrows():
        if t["baseline"]:
            continue
        if not math.isfinite(t["p_holm"]):
            reason = t["delta_reason"] or "no p-value: identical differences"
            out.append(f"`{row}` vs `{baseline}`: no comparison possible ({reason}).")
            continue
        p = fmt_p(t["p_holm"])
        d = (f"Δ = {fmt_delta(t['delta'])} {fmt_ci(t['delta_low'], t['delta_high'])} over {int(t['n_pairs'])} "
             f"paired seeds, Holm p {p.replace('<', '< ') if p.startswith('<') else '= ' + p}")
        if t["p_holm"] < ALPHA:
            direction = "better" if (t["delta"] > 0) == higher_is_better(metric) else "worse"
            out.append(f"`{row}` vs `{baseline}`: {d}: significantly {direction} at α = {ALPHA}.")
        else:
            out.append(f"`{row}` vs `{baseline}`: {d}: not significant at α = {ALPHA} (within seed noise).")
    for check in checks:
        c, p = check.claim, check.paired
        numbers = (f"Δ = {fmt_delta(p.delta)} {fmt_ci(p.low, p.high)} over {p.n} paired seeds"
                   if not p.reason else f"n/a ({p.reason})")
        out.append(f"The seed's conclusion \"{c.text}\" (`{c.variant}` − `{c.reference}`): {numbers} → "
                   f"**{check.verdict}**.")
    if data_kind == "synthetic":
        out.append("These runs used the synthetic corpus, not RAVDESS: they exercise the harness, "
                   "they do not test the seed's RAVDESS numbers.")
    return out


# --- markdown ----------------------------------------------------------------------

def md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], lines: Iterable[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(md_cell(c) for c in line) + " |" for line in lines]
    return out


def _values_summary(series: pd.Series, width: int | None = None) -> str:
    counts = series[series != ""].astype(str).str[:width].value_counts()
    return ", ".join(f"{k} ({v} runs)" if len(counts) > 1 else k for k, v in counts.items()) or "not recorded"


@dataclass
class SuiteReport:
    experiment: str
    metric: str
    ci: str
    baseline: str
    sel: Selection
    table: pd.DataFrame
    checks: list[ClaimCheck]


def header_facts(sel: Selection) -> tuple[list[tuple[str, str]], list[str]]:
    """What was measured, and loud warnings when the cells are not comparable."""
    f, warn = sel.finished, []
    fps = f.loc[f["fingerprint"] != "", "fingerprint"].unique()
    if len(fps) > 1:
        by = f.groupby("fingerprint")["row"].unique()
        warn.append(f"**WARNING: the cells were trained on {len(fps)} different data sets** (fingerprints: "
                    + "; ".join(f"{fp}: {', '.join(rows)}" for fp, rows in by.items())
                    + "): rows are not comparable.")
    if f["split"].nunique() > 1:
        warn.append("**WARNING: the cells mix split kinds** (" + _values_summary(f["split"]) + "): "
                    "actor-disjoint and random-clip splits measure different things.")
    seeds = sorted(int(s) for s in f["seed"].dropna().unique())
    facts = [("data fingerprint", ", ".join(fps) or "not recorded"), ("data", _values_summary(f["data"])),
             ("split", _values_summary(f["split"])), ("seeds", ", ".join(map(str, seeds)) or "none finished"),
             ("profile", _values_summary(sel.rows["profile"])),
             ("git commit", _values_summary(f["git_commit"], 12)),
             ("mode", _values_summary(f["mode"])), ("model", _values_summary(f["model"]))]
    return facts, warn


def render_markdown(rep: SuiteReport, plots: dict[str, str] | None = None) -> str:
    t, metric = rep.table, rep.metric
    facts, warn = header_facts(rep.sel)
    ci_name = "Student t" if rep.ci == "t" else "bootstrap BCa (percentile where BCa is degenerate)"
    n_holm = int(t["p"].notna().sum())
    out = [f"# Ablation report: {rep.experiment}", "",
           f"- experiment: `{rep.experiment}`; metric: `{metric}` "
           f"({'higher' if higher_is_better(metric) else 'lower'} is better); baseline: `{rep.baseline}`"]
    out += [f"- {k}: {v}" for k, v in facts]
    out += ["", *[f"> {w}" for w in warn], *([""] if warn else [])]
    out += [f"**How to read this.** Each row was trained once per seed; the seed fixes the data split and the "
            f"initialisation. *95% CI* ({ci_name}) is where the mean over seeds plausibly lies, not the range of "
            f"a single run: a single run spreads more (see min–max). *Δ* is the row minus the baseline on the same "
            f"seeds (same split), with a t interval on those paired differences; a Δ CI that excludes 0 and a Holm "
            f"p < {ALPHA} mean the difference is larger than seed-to-seed noise. p is a paired t-test, adjusted "
            f"with Holm over the {n_holm} row{'' if n_holm == 1 else 's'} compared with the baseline. *P(better)* is the share of paired "
            f"seeds where the row beats the baseline (ties count ½).", ""]
    header = ["#", "row", "seeds", "failed", f"mean {metric}", f"95% CI ({rep.ci})", "std", "min–max",
              "Δ vs baseline", "Δ 95% CI", "pairs", "p (Holm)", "P(better)", "claimed (single run)",
              "claim vs CI", "accuracy", "best epoch", "wall s/run"]
    lines = []
    for i, (row, r) in enumerate(t.iterrows()):
        ok = r["n"] >= 2
        if r["baseline"]:
            delta = ["baseline"] + ["—"] * 4
        elif math.isfinite(r["delta"]):
            delta = [fmt_delta(r["delta"]), fmt_ci(r["delta_low"], r["delta_high"]), int(r["n_pairs"]),
                     fmt_p(r["p_holm"]), _num(r["p_improve"], 2)]
        else:
            delta = [_na(r["delta_reason"])] * 2 + [int(r["n_pairs"]), _na(r["delta_reason"]), "n/a"]
        label = f"`{row}`" + (f" (study `{r['study']}`)" if r["study"] else "")
        lines.append([i, label, int(r["n"]), int(r["failed"]), _num(r["mean"]),
                      fmt_ci(r["ci_low"], r["ci_high"]) if ok else _na(r["reason"]),
                      _num(r["std"]) if ok else "n/a",
                      f"{_num(r['min'])}–{_num(r['max'])}" if r["n"] else "n/a", *delta,
                      r["claimed"] or "—", r["verdict"] or "—", _num(r["accuracy"]),
                      _num(r["best_epoch"], 1), _num(r["wall_time_s"], 1)])
    out += md_table(header, lines)
    fb = sorted(set(t.index[t["ci_method"] == "percentile"]))
    if fb:
        out += ["", f"Bootstrap BCa was degenerate for {', '.join(f'`{r}`' for r in fb)}: percentile interval used."]

    f = rep.sel.failed
    out += ["", "## Failed and killed runs", ""]
    if len(f):
        out += md_table(["row", "seed", "status", "reason", "finished on rerun", "run"],
                        [[f"`{r.row}`", r.seed, r.status, r.failure_reason or "not recorded",
                          "yes" if r.rerun_finished else "no", r.run_id] for r in f.itertuples()])
        out += ["", "They are counted (column *failed*: seeds without a finished rerun) and never averaged."]
    else:
        out.append("None.")
    if rep.sel.notes:
        out += ["", "## Notes on run selection", "", *[f"- {n}" for n in rep.sel.notes]]
    if plots:
        out += ["", "## Plots", ""] + [f"![{title}]({name})" for title, name in plots.items()]
    kinds = rep.sel.finished["data"].unique()
    data_kind = kinds[0] if len(kinds) == 1 else ""
    out += ["", "## What the data supports", "",
            *[f"- {s}" for s in what_the_data_supports(t, rep.checks, metric, rep.baseline, data_kind)]]
    return "\n".join(out) + "\n"


# --- plots ------------------------------------------------------------------------------

def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_forest(rep: SuiteReport, path: Path) -> Path:
    """Mean and CI per row, each seed as a dot, the baseline mean as a line, the seed's claims as x."""
    plt = _pyplot()
    t = rep.table
    y = np.arange(len(t))[::-1]  # first row on top
    fig, ax = plt.subplots(figsize=(8.5, 2.4 + 0.5 * len(t)), dpi=110)
    labelled: set[str] = set()

    def once(label: str) -> str:
        # one legend entry per kind of mark: matplotlib skips labels starting with "_"
        if label in labelled:
            return "_"
        labelled.add(label)
        return label

    for yi, (row, r) in zip(y, t.iterrows()):
        seeds = seed_values(rep.sel.finished, row, rep.metric)
        if seeds.empty:
            ax.annotate("no finished seed", (0.01, yi), xycoords=("axes fraction", "data"), va="center",
                        fontsize=8, color="grey")
        ax.scatter(seeds, np.full(len(seeds), yi), s=12, color="grey", alpha=0.6, label=once("one seed"))
        if r["n"] >= 2:
            ax.errorbar(r["mean"], yi, xerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]], fmt="o",
                        color="C0", capsize=4, label=once(f"mean and 95% CI ({rep.ci})"))
        if r["claimed"] and rep.metric == CLAIM_METRIC:
            try:
                claims = parse_claim(r["claimed"])
            except ValueError:
                claims = []
            for a, b in claims:
                if a != b:
                    ax.plot([a, b], [yi + 0.2] * 2, color="C3", lw=1.5)
                ax.scatter([a, b] if a != b else [a], [yi + 0.2] * (2 if a != b else 1), marker="x", color="C3",
                           s=50, zorder=3, label=once("seed's single-run claim"))
    base = t.loc[rep.baseline, "mean"] if rep.baseline in t.index else math.nan
    if math.isfinite(base):
        ax.axvline(base, ls="--", color="C2", label=f"baseline mean ({rep.baseline})")
    ax.set_yticks(y, [f"{row} (n={int(r['n'])}{', baseline' if r['baseline'] else ''})" for row, r in t.iterrows()])
    ax.set_ylim(-0.7, len(t) - 0.4)
    ax.set_xlabel(rep.metric)
    ax.set_title(f"{rep.experiment}: {rep.metric} per row, mean and 95% CI over seeds", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_val_curves(history: pd.DataFrame, order: Sequence[str], path: Path, title: str) -> Path:
    """Validation macro-F1 per epoch: mean over seeds with a min–max band, one colour per row."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8.5, 5), dpi=110)
    colours = plt.get_cmap("tab20" if len(order) > 10 else "tab10")
    for i, row in enumerate(order):
        h = history[history["row"] == row]
        if h.empty:
            continue
        g = h.groupby("step")["value"]
        mean, lo, hi = g.mean(), g.min(), g.max()
        colour = colours(i % colours.N)
        ax.plot(mean.index, mean.to_numpy(), color=colour, label=f"{row} (n={h['seed'].nunique()})")
        ax.fill_between(mean.index, lo.to_numpy(), hi.to_numpy(), color=colour, alpha=0.15)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"validation macro-F1 ({HISTORY_METRIC})")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", title="line = mean over seeds, band = min–max", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def summed_confusion(cells: pd.DataFrame) -> np.ndarray | None:
    """The test confusion matrices of these cells summed; None when absent or of different shapes."""
    mats = [np.array(ast.literal_eval(s)) for s in cells["confusion"] if s]
    if not mats or len({m.shape for m in mats}) > 1:
        return None
    return np.sum(mats, axis=0)


def best_row(table: pd.DataFrame, metric: str) -> str | None:
    means = table["mean"].dropna()
    if means.empty:
        return None
    return str(means.idxmax() if higher_is_better(metric) else means.idxmin())


# --- the study section -----------------------------------------------------------------

@dataclass
class StudySummary:
    name: str
    experiment: str
    experiment_id: str
    run_id: str
    status: str
    best_value: float
    best_params: dict[str, str]
    states: dict[str, int]
    importances: dict[str, float]  # empty: not recorded
    top: pd.DataFrame  # the best COMPLETE trials: number, value, the searched params


TRIAL_VALUE = "best_val_f1_macro"
SEARCHED_PARAMS = ("focal_gamma", "specaug_freq", "specaug_time", "lr")  # when the parent names none


def summarize_study(parents: pd.DataFrame, trials: pd.DataFrame, name: str, experiment: str,
                    top_k: int = 5) -> StudySummary:
    """Study parents (newest first) and their trials -> best params/value, states, importances, top trials."""
    parents = parents.sort_values("start_time", ascending=False)
    with_best = parents[parents["metrics.best_value"].notna()] if "metrics.best_value" in parents else parents[:0]
    head = (with_best if len(with_best) else parents).iloc[0]
    best_params = {c.removeprefix("params.best."): v for c, v in head.items()
                   if c.startswith("params.best.") and isinstance(v, str)}
    importances = {c.removeprefix("metrics.importance."): float(v) for c, v in head.items()
                   if c.startswith("metrics.importance.") and pd.notna(v)}
    if len(trials):
        trials = trials.assign(number=pd.to_numeric(_col(trials, "tags.harness.trial_number", None), errors="coerce"),
                               state=_col(trials, "tags.harness.trial_state", "UNKNOWN"))
        # a resumed study may log a trial twice: its latest run wins
        trials = trials.sort_values("start_time").drop_duplicates("number", keep="last")
    else:
        trials = pd.DataFrame(columns=["number", "state"])
    states = {str(k): int(v) for k, v in trials["state"].value_counts().items()}
    shown = list(best_params) or [p for p in SEARCHED_PARAMS if f"params.{p}" in trials]
    value = f"metrics.{TRIAL_VALUE}"
    done = trials[(trials["state"] == "COMPLETE")]
    done = done[done[value].notna()] if value in done else done[:0]
    top = done.sort_values(value, ascending=False).head(top_k)
    top = pd.DataFrame({"trial": top["number"].astype("Int64"), TRIAL_VALUE: _col(top, value, math.nan),
                        **{p: _col(top, f"params.{p}") for p in shown}})
    best_value = float(head["metrics.best_value"]) if len(with_best) else math.nan
    return StudySummary(name=name, experiment=experiment, experiment_id=str(head.get("experiment_id", "")),
                        run_id=head["run_id"], status=head["status"],
                        best_value=best_value, best_params=best_params, states=states,
                        importances=dict(sorted(importances.items(), key=lambda kv: -kv[1])), top=top)


def read_study(c, name: str, experiments: Sequence) -> StudySummary:
    ids = [e.experiment_id for e in experiments]
    parents = search_frame(c, ids, "study")
    mine = parents[_col(parents, "tags.harness.study") == name] if len(parents) else parents
    if mine.empty:
        others = sorted(set(_col(parents, "tags.harness.study"))) if len(parents) else []
        raise HarnessError(f"no study {name!r} in experiment(s) {', '.join(repr(e.name) for e in experiments)}"
                           + (f"; studies there: {', '.join(others)}" if others else "")
                           + ": run `python -m harness study run ...` first")
    trials = search_frame(c, ids, "trial")
    if len(trials):
        trials = trials[_col(trials, f"tags.{tracking.PARENT_TAG}").isin(set(mine["run_id"]))]
    exp_name = next(e.name for e in experiments if e.experiment_id == mine.iloc[0]["experiment_id"])
    return summarize_study(mine, trials, name, exp_name)


def _param(v) -> str:
    """A sampled value as a reader wants it: 2.744, 4.312e-04, 23 (params come back as strings)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return str(v) if f.is_integer() and "." not in str(v) else f"{f:.4g}"


def render_study(s: StudySummary) -> str:
    out = [f"## Study `{s.name}`", "",
           f"- experiment: `{s.experiment}`; study run `{s.run_id}` ({s.status})",
           f"- best value (the study's objective, on the validation split): {_num(s.best_value)}",
           "- best params: " + (", ".join(f"`{k}` = {_param(v)}" for k, v in s.best_params.items()) or "not recorded"),
           "- trials by state: " + (", ".join(f"{k} {v}" for k, v in sorted(s.states.items())) or "none"),
           "- parameter importances: " + (", ".join(f"`{k}` {v:.3f}" for k, v in s.importances.items())
                                          or "not recorded"), "", f"Top {len(s.top)} complete trials:", ""]
    out += md_table(list(s.top.columns), [[_num(v) if isinstance(v, float) else _param(v) for v in r]
                                          for r in s.top.itertuples(index=False)])
    return "\n".join(out) + "\n"


# --- putting it together ----------------------------------------------------------------

class NoSuiteRuns(HarnessError):
    """The experiment holds no row runs."""


def suite_report(c, exp, metric: str = DEFAULT_METRIC, baseline: str | None = None, ci: str = "t") -> SuiteReport:
    rows, cells = read_suite(c, exp.experiment_id)
    if rows.empty:
        raise NoSuiteRuns(f"no suite runs in experiment {exp.name!r}: run `python -m harness suite run ...` first")
    sel = select_cells(rows, cells)
    available = available_metrics(sel.finished)
    if len(sel.finished) and metric not in available:
        raise HarnessError(f"metric {metric!r} not found in any finished cell of {exp.name!r}; "
                           f"available: {', '.join(available)}")
    names = list(sel.rows["row"])
    if baseline is None:
        baseline = default_baseline(names)
    elif baseline not in names:
        raise HarnessError(f"unknown --baseline {baseline!r}; rows: {', '.join(names)}")
    return SuiteReport(experiment=exp.name, metric=metric, ci=ci, baseline=baseline, sel=sel,
                       table=build_table(sel, metric, baseline, ci), checks=check_seed_claims(sel, metric))


def write_plots(c, rep: SuiteReport, out: Path) -> dict[str, str]:
    """The PNGs beside the markdown; returns {title: relative file name}."""
    from .data import class_names
    from .training import confusion_png

    stem = out.with_suffix("")
    plots = {}
    forest = plot_forest(rep, Path(f"{stem}-forest.png"))
    plots[f"{rep.metric}: mean and 95% CI per row"] = forest.name
    history = read_histories(c, rep.sel.finished)
    if len(history):
        curves = plot_val_curves(history, list(rep.table.index), Path(f"{stem}-val-f1.png"),
                                 f"{rep.experiment}: validation macro-F1 per epoch "
                                 f"(mean over seeds, band = min–max)")
        plots["validation macro-F1 per epoch"] = curves.name
    best = best_row(rep.table, rep.metric)
    cells = rep.sel.finished[rep.sel.finished["row"] == best]
    cm = summed_confusion(cells) if best else None
    if cm is not None:
        classes = class_names(cells["mode"].iloc[0])
        if len(classes) == cm.shape[0]:
            # short lines: the figure is sized for the class count, not the title
            png = confusion_png(cm.tolist(), classes, Path(f"{stem}-confusion.png"),
                                f"{best}\n(best mean {rep.metric})\ntest confusion, sum of {len(cells)} seeds")
            plots[f"test confusion matrix of `{best}`"] = png.name
    return plots


def log_report(c, experiment_id: str, files: Sequence[Path], tags: dict[str, str]) -> str:
    """A new run of kind "report" holding the markdown and the plots; the suite runs are untouched."""
    with tracking.tracked_run(c, experiment_id, "report", {"harness.kind": "report", **tags}) as run_id:
        for f in files:
            c.log_artifact(run_id, str(f))
    return run_id


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "report"


def cmd_report(args: argparse.Namespace) -> int:
    if not args.experiment and not args.study:
        raise HarnessError("give --experiment NAME (a suite's experiment) and/or --study NAME")
    c = tracking.client(args.tracking_uri)
    out = Path(args.out) if args.out else Path("reports") / f"{_slug(args.experiment or args.study)}.md"
    exp = find_experiment(c, args.experiment) if args.experiment else None

    rep = None
    if exp is not None:
        try:
            rep = suite_report(c, exp, args.metric, args.baseline, args.ci)
        except NoSuiteRuns as e:
            if not args.study:  # without rows, an experiment given beside --study is where the study lives
                studies = search_frame(c, [exp.experiment_id], "study")
                if len(studies):
                    names = ", ".join(sorted(set(_col(studies, "tags.harness.study"))))
                    raise HarnessError(f"{e}; it holds studies ({names}): use --study NAME") from None
                raise
    study = None
    if args.study:
        # Studies log to an experiment named after the study unless told otherwise.
        named = c.get_experiment_by_name(args.study)
        where = [e for e in (named, exp) if e is not None and e.lifecycle_stage != "deleted"]
        if not where:
            find_experiment(c, args.study)  # raises, listing the experiments
        study = read_study(c, args.study, where)

    out.parent.mkdir(parents=True, exist_ok=True)
    plots = write_plots(c, rep, out) if rep else {}
    text = render_markdown(rep, plots) if rep else f"# Study report: {args.study}\n"
    if study:
        text += "\n" + render_study(study)
    out.write_text(text)

    log_exp = exp.experiment_id if rep else study.experiment_id
    tags = {"harness.report.metric": args.metric, "harness.report.ci": args.ci,
            "harness.report.baseline": rep.baseline if rep else "", "harness.report.study": args.study or ""}
    run_id = log_report(c, log_exp, [out, *(out.parent / p for p in plots.values())], tags)
    if rep:
        for w in header_facts(rep.sel)[1]:
            print(w.replace("**", ""))
    print(f"wrote {out} ({len(plots)} plot(s)); logged as run {run_id} (kind report)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="the ablation table with CIs, paired Δ and plots, from MLflow")
    p.add_argument("--experiment", metavar="NAME", help="the suite's MLflow experiment")
    p.add_argument("--study", metavar="NAME", help="add a section for this Optuna study (looked up in the "
                                                   "experiment named after it, else in --experiment)")
    p.add_argument("--baseline", metavar="ROW", help="row to compare with (default: the first row named "
                                                     "baseline*, else the first row)")
    p.add_argument("--metric", default=DEFAULT_METRIC, help=f"cell metric to tabulate (default: {DEFAULT_METRIC})")
    p.add_argument("--ci", choices=("t", "bootstrap"), default="t",
                   help="CI of the mean: Student t (default), or BCa bootstrap with a fixed seed")
    p.add_argument("--out", type=Path, metavar="FILE", help="markdown file (default: reports/<experiment>.md); "
                                                           "plots are written beside it")
    p.add_argument("--tracking_uri", metavar="URI",
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    p.set_defaults(func=cmd_report)
