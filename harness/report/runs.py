"""Reading a suite back from MLflow, and choosing which of its runs count.

`read_suite` gives the row parent runs and the cell runs as DataFrames with
plain column names; `select_cells` keeps, per row, the newest parent and per
(row, seed) the latest FINISHED cell with that parent's config hash, and says
in notes what it left out and why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from harness import tracking
from harness.errors import HarnessError

HISTORY_METRIC = "val_f1_macro"
FAILED_STATUSES = ("FAILED", "KILLED")


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


def column(df: pd.DataFrame, name: str, default: object = "") -> pd.Series:
    return df[name].fillna(default) if name in df else pd.Series(default, index=df.index, dtype=object)


def rows_frame(parents: pd.DataFrame) -> pd.DataFrame:
    """Row parent runs with plain column names."""
    if parents.empty:
        return pd.DataFrame(columns=["run_id", "row", "row_index", "config_hash", "claimed", "study", "profile",
                                     "profile_changes", "racing", "start_time"])
    name = column(parents, "tags.harness.row").where(column(parents, "tags.harness.row") != "",
                                                   column(parents, "tags.mlflow.runName"))
    return pd.DataFrame({
        "run_id": parents["run_id"], "row": name,
        "row_index": pd.to_numeric(column(parents, "tags.harness.row_index", None), errors="coerce"),
        "config_hash": column(parents, "tags.harness.config_hash"),
        "claimed": column(parents, "tags.harness.claimed_f1"),
        "study": column(parents, "tags.harness.study"), "profile": column(parents, "tags.harness.profile"),
        "profile_changes": column(parents, "tags.harness.profile_changes"),
        "racing": column(parents, "tags.harness.racing"), "start_time": parents["start_time"],
    })


CELL_TAGS = {"seed": "harness.seed", "row": "harness.row", "config_hash": "harness.config_hash",
             "parent_id": tracking.PARENT_TAG, "fingerprint": "harness.data_fingerprint", "data": "harness.data",
             "split": "harness.split", "git_commit": "harness.git_commit", "confusion": "harness.test_confusion",
             "failure_reason": "harness.failure_reason", "fold": "harness.fold", "duplicate": "harness.duplicate",
             "classes": "harness.classes", "corpora": "harness.corpora", "normalize": "harness.normalize"}


def cells_frame(children: pd.DataFrame) -> pd.DataFrame:
    """Seed child runs with plain column names; metrics keep their `metrics.` prefix."""
    base = ["run_id", "status", "start_time", *CELL_TAGS, "resample", "mode", "model", "protocol", "ratio", "cv_folds"]
    if children.empty:
        return pd.DataFrame(columns=base)
    out = children[["run_id", "status", "start_time"]].copy()
    for col, tag in CELL_TAGS.items():
        out[col] = column(children, f"tags.{tag}")
    seed = out["seed"].where(out["seed"] != "", column(children, "params.seed"))
    out["seed"] = pd.to_numeric(seed, errors="coerce").astype("Int64")
    out["fold"] = pd.to_numeric(out["fold"].replace("", None), errors="coerce").astype("Int64")
    # The unit of resampling, what paired differences are matched on: a seed, or a seed's fold.
    out["resample"] = [str(s) if pd.isna(f) else f"{s}/{f}" for s, f in zip(out["seed"], out["fold"])]
    out["mode"] = column(children, "params.mode")
    out["model"] = column(children, "params.model")
    out["protocol"] = column(children, "params.protocol", "kfold").replace("", "kfold")
    out["ratio"] = _test_train_ratio(children)
    out["cv_folds"] = pd.to_numeric(column(children, "params.cv_folds", 0).replace("", 0), errors="coerce").fillna(0)
    metrics = [c for c in children.columns if c.startswith("metrics.")]
    return pd.concat([out, children[metrics]], axis=1)


def _test_train_ratio(children: pd.DataFrame) -> pd.Series:
    """n_test / n_train of each cell: its clip counts, or (older runs) the ratios of its config."""
    from harness.stats import run_ratio

    n_test = pd.to_numeric(column(children, "metrics.n_test_clips", None), errors="coerce")
    n_train = pd.to_numeric(column(children, "metrics.n_train_clips", None), errors="coerce")
    return pd.Series([run_ratio(*args) for args in zip(n_test, n_train, column(children, "params.train_ratio"),
                                                       column(children, "params.val_ratio"),
                                                       column(children, "params.cv_folds"))],
                     index=children.index, dtype=float)


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
    finished: pd.DataFrame  # one FINISHED cell per (row, resample) with the row's current config hash
    failed: pd.DataFrame  # FAILED/KILLED cells with the current hash; `rerun_finished` says if a rerun replaced it
    notes: list[str] = field(default_factory=list)


def select_cells(rows: pd.DataFrame, cells: pd.DataFrame) -> Selection:
    """Newest parent per row name; per (row, resample) the latest FINISHED cell with that parent's config hash
    (a resample is a seed, or under cross-validation a seed's fold)."""
    notes: list[str] = []
    if "resample" not in cells:  # frames built by hand: single-split cells unless a fold says otherwise
        folds = cells["fold"] if "fold" in cells else pd.Series(pd.NA, index=cells.index)
        cells = cells.assign(resample=[str(s) if pd.isna(f) else f"{s}/{f}" for s, f in zip(cells["seed"], folds)])
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
    # A worker that lost its queue claim while it trained marks its run a duplicate: never a result, never a failure.
    dup = cur[column(cur, "duplicate") == "true"]
    if len(dup):
        notes.append(f"{len(dup)} duplicate run(s) not counted (trained while another worker owned the cell): "
                     + ", ".join(f"`{r}` {_resample_text(k)}" for r, k in zip(dup["row"], dup["resample"])))
        cur = cur.drop(dup.index)

    fin = cur[cur["status"] == "FINISHED"]
    for (name, key), group in fin[fin.duplicated(["row", "resample"], keep=False)].groupby(["row", "resample"]):
        notes.append(f"row `{name}` {_resample_text(key)}: {len(group)} finished runs with the current config "
                     f"(a cell trained more than once); counted one, the latest ({group['run_id'].iloc[-1]})")
    fin = fin.drop_duplicates(["row", "resample"], keep="last").reset_index(drop=True)

    failed = cur[cur["status"].isin(FAILED_STATUSES)].copy()
    done = set(zip(fin["row"], fin["resample"]))
    failed["rerun_finished"] = [(r, s) in done for r, s in zip(failed["row"], failed["resample"])]
    running = cur[~cur["status"].isin(("FINISHED", *FAILED_STATUSES))]
    if len(running):
        notes.append(f"{len(running)} run(s) not finished yet (RUNNING/SCHEDULED) not counted: "
                     + ", ".join(f"`{r}` {_resample_text(k)}" for r, k in zip(running["row"], running["resample"])))
    return Selection(rows=rows, finished=fin, failed=failed.reset_index(drop=True), notes=notes)


def _resample_text(key: str) -> str:
    seed, _, fold = str(key).partition("/")
    return f"seed {seed}" + (f" fold {fold}" if fold else "")


def available_metrics(cells: pd.DataFrame) -> list[str]:
    return sorted(c.removeprefix("metrics.") for c in cells.columns
                  if c.startswith("metrics.") and cells[c].notna().any())


def seed_values(finished: pd.DataFrame, row: str, metric: str) -> pd.Series:
    """The metric of one row's finished cells, indexed by resample ("3", or "3/1" for seed 3's fold 1;
    cells lacking the metric dropped)."""
    col = f"metrics.{metric}"
    cells = finished[finished["row"] == row]
    if col not in cells:
        return pd.Series(dtype=float)
    return cells.set_index("resample")[col].dropna().astype(float).sort_index()


_PREDICTIONS: dict[str, pd.DataFrame] = {}  # run id -> its test predictions: a finished run never changes


CROSS_CORPUS_SPLIT = "cross-corpus"  # how `harness.split` of a --test_corpus cell begins (train.run)


def cross_corpus(cells: pd.DataFrame) -> pd.Series:
    """Which cells were trained on other corpora and scored on every clip of one test corpus."""
    if "split" not in cells:
        return pd.Series(False, index=cells.index)
    return cells["split"].fillna("").astype(str).str.startswith(CROSS_CORPUS_SPLIT) & cells["fold"].isna()


def has_repeats(cells: pd.DataFrame) -> bool:
    """Whether any cell belongs to a repeat whose pooled predictions `read_clips` reads (CV or cross-corpus)."""
    return bool(len(cells)) and bool((cells["fold"].notna() | cross_corpus(cells)).any())


def read_clips(c, finished: pd.DataFrame) -> pd.DataFrame:
    """The per-clip test predictions of every complete cross-validation repeat (a row's seed whose every fold
    finished: every clip scored once) and of every cross-corpus cell (fold 0: one model per seed scores the whole
    test corpus), from the runs' `test_predictions.csv` artifacts. Columns row, repeat (the seed), fold, speaker
    (the actor), clip, true, pred. Each run's file is downloaded once per process."""
    import os
    import tempfile

    from harness.train.cv import read_predictions
    from harness.train.run import PREDICTIONS

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file is noise here
    columns = ["row", "repeat", "fold", "speaker", "clip", "true", "pred"]
    out = []
    # A cross-corpus cell is a complete repeat on its own: one model scores every clip of the test corpus.
    cross = cross_corpus(finished)
    cv = finished[finished["fold"].notna() | cross].assign(fold=finished["fold"].where(~cross, 0))
    with tempfile.TemporaryDirectory(prefix="harness-report-") as tmp:
        for (row, seed), group in cv.groupby(["row", "seed"]):
            if len(group) < max(int(group["cv_folds"].max()), 1):
                continue  # a repeat with folds missing scores only part of the corpus
            try:
                for r in group["run_id"]:
                    if r not in _PREDICTIONS:
                        _PREDICTIONS[r] = read_predictions(c.download_artifacts(r, PREDICTIONS, f"{tmp}/{r}"))
            except Exception:
                continue  # runs from before predictions were logged
            for r, fold in zip(group["run_id"], group["fold"]):
                p = _PREDICTIONS[r]
                out.append(pd.DataFrame({"row": row, "repeat": int(seed), "fold": int(fold), "speaker": p["speaker" if "speaker" in p else "actor"],
                                         "clip": p["clip"], "true": p["true"], "pred": p["pred"]}))
    return pd.concat(out, ignore_index=True)[columns] if out else pd.DataFrame(columns=columns)


def read_pooled(clips: pd.DataFrame, finished: pd.DataFrame) -> pd.DataFrame:
    """Per (row, seed) of a complete repeat: the macro-F1 of its pooled predictions (every clip scored once).
    Columns row, seed, pooled_f1, n_clips."""
    from harness.train.cv import pooled_scores

    out = [{"row": row, "seed": int(seed), "n_clips": len(g),
            "pooled_f1": pooled_scores(g)["test_f1_macro"]}
           for (row, seed), g in clips.groupby(["row", "repeat"])]
    return pd.DataFrame(out, columns=["row", "seed", "pooled_f1", "n_clips"])


def row_classes(finished: pd.DataFrame, row: str) -> tuple[str, ...]:
    """The classes a row's runs were trained on, in their order (tag `harness.classes`)."""
    from harness.corpora.base import EMOTIONS, SENTIMENTS

    cells = finished[finished["row"] == row]
    tagged = column(cells, "classes")
    tagged = tagged[tagged != ""]
    if len(tagged):
        return tuple(tagged.iloc[0].split(","))
    # Runs logged before the tag existed read one corpus layout only: 3 sentiments or its 8 emotions.
    return SENTIMENTS if cells["mode"].iloc[0] == "sentiment" else tuple(e for e in EMOTIONS if e != "boredom")


def mean_metric(cells: pd.DataFrame, metric: str) -> float:
    col = f"metrics.{metric}"
    return float(cells[col].mean()) if col in cells and cells[col].notna().any() else math.nan


def unresolved_failures(failed: pd.DataFrame, row: str) -> int:
    """Resamples of the row that failed or were killed and have no finished rerun."""
    mine = failed[(failed["row"] == row) & ~failed["rerun_finished"].astype(bool)]
    return int(mine["resample"].nunique())
