"""What a study found, on its MLflow parent run: best trial, importances, Optuna's plots."""
from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import tracking
from harness.study.file import StudySpec

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Outcome:
    name: str
    parent_run_id: str
    trials: tuple[int, ...]  # the trial numbers this invocation ran
    states: dict[str, int]  # the whole study's trials by state
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]


def summarise(spec: StudySpec, study: "optuna.Study", c, exp_id: str, parent: str, ran: tuple[int, ...]) -> Outcome:
    """Best trial, importances and plots of the whole study, on the parent run."""
    from optuna.trial import TrialState

    _close_orphans(c, exp_id, study)
    trials = study.get_trials(deepcopy=False)
    states = {s.name: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED,
                                                                   TrialState.FAIL)}
    mine = [t for t in trials if t.number in ran]
    tracking.log_metrics(c, parent, {f"trials_{k.lower()}": v for k, v in states.items()})
    print(f"this run: {len(mine)} trial(s): " + ", ".join(
        f"{sum(t.state.name == k for t in mine)} {k.lower()}" for k in states))
    notes: list[str] = []
    best = None
    if states["COMPLETE"]:
        best = study.best_trial
        tracking.log_params(c, parent, {f"best.{k}": v for k, v in best.params.items()})
        tracking.log_metrics(c, parent, {"best_value": best.value})
        tracking.set_tags(c, parent, {"harness.best_trial": str(best.number),
                                      "harness.best_run_id": best.user_attrs.get("mlflow_run_id", "")})
        print(f"best: trial {best.number}, {spec.objective} {best.value:.4f} with "
              + ", ".join(f"{k}={v:.4g}" for k, v in best.params.items()))
    else:
        notes.append("no complete trial yet: no best params")
    notes += _importances_and_plots(study, states["COMPLETE"], c, parent)
    for note in notes:
        print(f"note: {note}")
    if notes:
        tracking.set_tags(c, parent, {"harness.summary_notes": "; ".join(notes)})
    return Outcome(name=spec.name, parent_run_id=parent, trials=ran, states=states,
                   best_trial=best.number if best else None, best_value=best.value if best else None,
                   best_params=dict(best.params) if best else {})


def _close_orphans(c, exp_id: str, study: "optuna.Study") -> None:
    """Trial runs left RUNNING by a dead worker (their Optuna trial was failed as stale) end KILLED."""
    from optuna.trial import TrialState

    # MLflow first, Optuna second: a run a live worker starts meanwhile is not in the first list.
    left = c.search_runs([exp_id], filter_string=f"tags.`harness.study` = '{study.study_name}' and "
                                                 f"tags.`harness.kind` = 'trial' and attributes.status = 'RUNNING'")
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)} if left else {}
    for r in left:
        if states.get(int(r.data.tags["harness.trial_number"])) == TrialState.RUNNING:
            continue
        if c.get_run(r.info.run_id).info.status == "RUNNING":  # not just finished by its live worker
            tracking.set_tags(c, r.info.run_id, {"harness.trial_state": "FAIL",
                                                 "harness.failure_reason": "its worker died (heartbeat went stale)"})
            c.set_terminated(r.info.run_id, status="KILLED")


def _importances_and_plots(study: "optuna.Study", n_complete: int, c, parent: str) -> list[str]:
    """Each piece needs enough trials; what cannot be made is a note, not an error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as vis

    notes = []
    importances = False
    if n_complete >= 2:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                imp = optuna.importance.get_param_importances(study)
            # The evaluator warns (rather than fails) when too few trials make the importances equal.
            equal = [w for w in caught if "will be equal" in str(w.message)]
            if equal:
                notes.append(f"no importances: {equal[0].message}")
            else:
                tracking.log_metrics(c, parent, {f"importance.{k}": v for k, v in imp.items()})
                importances = True
        except Exception as e:
            notes.append(f"no importances: {type(e).__name__}: {e}")
    else:
        notes.append(f"no importances: {n_complete} complete trial(s), 2 needed")
    plots = {"optimization_history": (vis.plot_optimization_history, n_complete >= 1),
             "param_importances": (vis.plot_param_importances, importances),
             "intermediate_values": (vis.plot_intermediate_values,
                                     any(t.intermediate_values for t in study.get_trials(deepcopy=False)))}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        for name, (plot, enough) in plots.items():
            if not enough:
                notes.append(f"no {name} plot: not enough trials")
                continue
            try:
                fig = plot(study).figure
                path = Path(tmp) / f"{name}.png"
                fig.savefig(path, dpi=110, bbox_inches="tight")
                plt.close(fig)
                c.log_artifact(parent, str(path), "plots")
            except Exception as e:
                notes.append(f"no {name} plot: {type(e).__name__}: {e}")
    return notes
