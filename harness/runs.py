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

from . import tracking
from .errors import HarnessError

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
                                     "start_time"])
    name = column(parents, "tags.harness.row").where(column(parents, "tags.harness.row") != "",
                                                   column(parents, "tags.mlflow.runName"))
    return pd.DataFrame({
        "run_id": parents["run_id"], "row": name,
        "row_index": pd.to_numeric(column(parents, "tags.harness.row_index", None), errors="coerce"),
        "config_hash": column(parents, "tags.harness.config_hash"),
        "claimed": column(parents, "tags.harness.claimed_f1"),
        "study": column(parents, "tags.harness.study"), "profile": column(parents, "tags.harness.profile"),
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
        out[col] = column(children, f"tags.{tag}")
    seed = out["seed"].where(out["seed"] != "", column(children, "params.seed"))
    out["seed"] = pd.to_numeric(seed, errors="coerce").astype("Int64")
    out["mode"] = column(children, "params.mode")
    out["model"] = column(children, "params.model")
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


def seed_values(finished: pd.DataFrame, row: str, metric: str) -> pd.Series:
    """The metric of one row's finished cells, indexed by seed (cells lacking it dropped)."""
    col = f"metrics.{metric}"
    cells = finished[finished["row"] == row]
    if col not in cells:
        return pd.Series(dtype=float)
    return cells.set_index("seed")[col].dropna().astype(float).sort_index()


def mean_metric(cells: pd.DataFrame, metric: str) -> float:
    col = f"metrics.{metric}"
    return float(cells[col].mean()) if col in cells and cells[col].notna().any() else math.nan


def unresolved_failures(failed: pd.DataFrame, row: str) -> int:
    """Seeds of the row that failed or were killed and have no finished rerun."""
    mine = failed[(failed["row"] == row) & ~failed["rerun_finished"].astype(bool)]
    return int(mine["seed"].nunique())
