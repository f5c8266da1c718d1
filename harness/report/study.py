"""The report's study section: an Optuna study read back from its MLflow runs."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from harness import tracking
from harness.errors import HarnessError
from harness.report.markdown import md_table, num, param_text
from harness.report.runs import column, search_frame


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
        trials = trials.assign(number=pd.to_numeric(column(trials, "tags.harness.trial_number", None), errors="coerce"),
                               state=column(trials, "tags.harness.trial_state", "UNKNOWN"))
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
    top = pd.DataFrame({"trial": top["number"].astype("Int64"), TRIAL_VALUE: column(top, value, math.nan),
                        **{p: column(top, f"params.{p}") for p in shown}})
    best_value = float(head["metrics.best_value"]) if len(with_best) else math.nan
    return StudySummary(name=name, experiment=experiment, experiment_id=str(head.get("experiment_id", "")),
                        run_id=head["run_id"], status=head["status"],
                        best_value=best_value, best_params=best_params, states=states,
                        importances=dict(sorted(importances.items(), key=lambda kv: -kv[1])), top=top)


def read_study(c, name: str, experiments: Sequence) -> StudySummary:
    ids = [e.experiment_id for e in experiments]
    parents = search_frame(c, ids, "study")
    mine = parents[column(parents, "tags.harness.study") == name] if len(parents) else parents
    if mine.empty:
        others = sorted(set(column(parents, "tags.harness.study"))) if len(parents) else []
        raise HarnessError(f"no study {name!r} in experiment(s) {', '.join(repr(e.name) for e in experiments)}"
                           + (f"; studies there: {', '.join(others)}" if others else "")
                           + ": run `python -m harness study run ...` first")
    trials = search_frame(c, ids, "trial")
    if len(trials):
        trials = trials[column(trials, f"tags.{tracking.PARENT_TAG}").isin(set(mine["run_id"]))]
    exp_name = next(e.name for e in experiments if e.experiment_id == mine.iloc[0]["experiment_id"])
    return summarize_study(mine, trials, name, exp_name)



def render_study(s: StudySummary) -> str:
    out = [f"## Study `{s.name}`", "",
           f"- experiment: `{s.experiment}`; study run `{s.run_id}` ({s.status})",
           f"- best value (the study's objective, on the validation split): {num(s.best_value)}",
           "- best params: " + (", ".join(f"`{k}` = {param_text(v)}" for k, v in s.best_params.items()) or "not recorded"),
           "- trials by state: " + (", ".join(f"{k} {v}" for k, v in sorted(s.states.items())) or "none"),
           "- parameter importances: " + (", ".join(f"`{k}` {v:.3f}" for k, v in s.importances.items())
                                          or "not recorded"), "", f"Top {len(s.top)} complete trials:", ""]
    out += md_table(list(s.top.columns), [[num(v) if isinstance(v, float) else param_text(v) for v in r]
                                          for r in s.top.itertuples(index=False)])
    return "\n".join(out) + "\n"

