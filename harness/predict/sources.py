"""Which trained models a prediction uses: one run, or every counted run of a suite row.

A row's runs are the ones its report counts (`harness.report.runs.select_cells`: the newest parent's
config hash, one FINISHED run per seed or per seed's fold), so a prediction and the report speak of the
same models. Every problem (an unknown run or row, a run that failed or holds no model, runs that
disagree) is a HarnessError before any audio is read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

CHECKPOINT = "best_model.pt"  # what every training run logs (harness.train.run)


@dataclass(frozen=True)
class Source:
    """The runs whose models predict, and how to say so."""
    experiment_id: str
    experiment: str
    run_ids: tuple[str, ...]
    design: str  # "run X", "split design: 3 seeds (0, 1, 2)", "cross-validation: 4 folds x 2 repeats ..."
    row: str = ""  # the suite row, "" for a single run
    parent_run_id: str = ""  # the row's parent run (its answer and settings)
    tags: dict = field(default_factory=dict)  # the first run's tags (front-end, weights' hash)

    def describe(self) -> str:
        what = f"row `{self.row}` of experiment `{self.experiment}`" if self.row else \
            f"run {self.run_ids[0]} of experiment `{self.experiment}`"
        return f"{what}: {self.design}"


def from_run(c, run_id: str) -> Source:
    """One run's model; a row's parent run stands for its row."""
    from mlflow.exceptions import MlflowException

    try:
        run = c.get_run(run_id)
    except MlflowException:
        raise HarnessError(f"--run {run_id}: no such run in the tracking store") from None
    exp = c.get_experiment(run.info.experiment_id)
    tags = run.data.tags
    if tags.get("harness.kind") == "row":
        return from_row(c, exp.name, tags.get("harness.row", run.info.run_name))
    _check_finished(run)
    if not any(a.path == CHECKPOINT for a in c.list_artifacts(run_id)):
        kind = tags.get("harness.kind", "")
        raise HarnessError(f"--run {run_id}: the run holds no model ({CHECKPOINT} not among its artifacts"
                           + (f"; it is a run of kind {kind}" if kind else "") + "): name a training run or a row")
    fold = f", fold {tags['harness.fold']}" if tags.get("harness.fold") else ""
    return Source(experiment_id=exp.experiment_id, experiment=exp.name, run_ids=(run_id,),
                  design=f"one model (seed {run.data.params.get('seed', '?')}{fold})", tags=dict(tags))


def from_row(c, experiment: str, row: str) -> Source:
    """Every counted run of a row: the fold models of every repeat, or the seeds of a split design."""
    from harness.report.runs import FAILED_STATUSES, find_experiment, read_suite, select_cells

    exp = find_experiment(c, experiment)
    rows, cells = read_suite(c, exp.experiment_id)
    if rows.empty:
        raise HarnessError(f"--experiment {experiment!r} holds no suite rows (runs of kind row): is it a suite's "
                           f"experiment?")
    sel = select_cells(rows, cells)
    if row not in set(sel.rows["row"]):
        raise HarnessError(f"--row {row!r}: not a row of experiment {experiment!r} (rows: "
                           f"{', '.join(sel.rows['row'])})")
    mine = sel.finished[sel.finished["row"] == row].sort_values(["seed", "fold"])
    if mine.empty:
        failed = sel.failed[sel.failed["row"] == row]
        why = f"{len(failed)} {'/'.join(FAILED_STATUSES)} run(s), none finished" if len(failed) else "no finished run"
        raise HarnessError(f"--row {row!r} of experiment {experiment!r} has no model to predict with ({why}): "
                           f"run the suite first")
    parent = sel.rows.set_index("row").loc[row, "run_id"]
    first = c.get_run(mine["run_id"].iloc[0])
    return Source(experiment_id=exp.experiment_id, experiment=experiment, run_ids=tuple(mine["run_id"]),
                  design=design_of(mine), row=row, parent_run_id=str(parent), tags=dict(first.data.tags))


def design_of(cells) -> str:
    """How a row's runs were drawn, in words: what a prediction averages over."""
    seeds = sorted({int(s) for s in cells["seed"]})
    listed = ", ".join(str(s) for s in seeds)
    if cells["fold"].notna().any():
        folds = cells["fold"].nunique()
        return (f"cross-validation: {len(cells)} fold models ({folds} folds x {len(seeds)} repeat"
                f"{'' if len(seeds) == 1 else 's'}, seed{'' if len(seeds) == 1 else 's'} {listed}), "
                f"probabilities averaged")
    return (f"split design: {len(cells)} model{'' if len(cells) == 1 else 's'} (seed{'' if len(seeds) == 1 else 's'} "
            f"{listed}), probabilities averaged")


def download(c, source: Source, dest: Path) -> list[Path]:
    """Each run's checkpoint, into `dest` (a temporary folder the caller owns)."""
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per checkpoint is noise
    paths = []
    for run_id in source.run_ids:
        try:
            paths.append(Path(c.download_artifacts(run_id, CHECKPOINT, str(dest / run_id))))
        except Exception as e:  # MLflow raises several types for a missing artifact
            raise HarnessError(f"run {run_id} of {source.describe()} has no model ({CHECKPOINT}: "
                               f"{str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return paths


def _check_finished(run) -> None:
    status = run.info.status
    if status == "FINISHED":
        return
    reason = run.data.tags.get("harness.failure_reason", "")
    raise HarnessError(f"--run {run.info.run_id}: the run is {status}" + (f" ({reason})" if reason else "")
                       + ", so it has no selected model: name a FINISHED run")
