"""Optuna studies: search a few RunConfig fields for the best validation macro-F1.

A study file (YAML, `studies/*.yaml`) is data: the base config (inline `config:`
and/or a `suite:` + `row:`), the search space, the objective, sampler, pruner,
budget, training seed and `profiles:` (e.g. a cheap `quick` one). It is checked
whole before anything runs (`load_spec`); every error names the file and key.

`study run` optimises with one or more worker processes on an Optuna RDB storage
(its own sqlite file by default, never MLflow's: both use alembic). Each trial is
one `training.run` with `score_on_test=False`, so the test split is never scored
while searching; the per-epoch validation macro-F1 feeds the pruner. The study
is resumable by name, and trials of a dead worker are retried once their
heartbeat goes stale.

MLflow layout (experiment = the study name unless `--experiment`): one parent run
per `study run` invocation (`harness.kind=study`), one nested run per trial
(`harness.kind=trial`, `harness.trial_number`, `harness.trial_state`
COMPLETE/PRUNED/FAIL; pruned runs end KILLED), and at the end on the parent
`best.<param>` params, `best_value`, `importance.<param>` and Optuna's plots.

`study confirm` trains the best trial's config as the row `study-best` of a suite
over seeds 0..N-1, test split scored, beside the suite's rows.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from . import tracking
from .suite import open_storage as open_queue_storage
from .training import PREPARE_FIELDS
from .config import RunConfig, did_you_mean, read_yaml_mapping
from .errors import ConfigError, HarnessError

if TYPE_CHECKING:
    import optuna

    from .suite import Summary

DEFAULT_STORAGE = "sqlite:///optuna.db"
DEFAULT_SUITE = "experiments/seed_table.yaml"
CONFIRM_ROW = "study-best"
TOP_KEYS = {"name", "description", "base", "params", "objective", "sampler", "pruner", "budget", "seed", "profiles"}
BASE_KEYS = {"suite", "row", "config"}
PARAM_KEYS = {"type", "low", "high", "log"}
PROFILE_KEYS = {"description", "config", "sampler", "pruner", "budget", "seed"}
BUDGET_KEYS = {"n_trials", "timeout"}
NOT_IN_FILES = {"seed", "data_root", "device"}  # the study's `seed` key and the command line set these
# Per-epoch metric -> (direction, the key of training.run's result holding its best-epoch value).
OBJECTIVES = {"val_f1_macro": ("maximize", "best_val_f1_macro")}
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler"}  # optuna.samplers classes
PRUNERS = {"median": "MedianPruner", "hyperband": "HyperbandPruner", "none": "NopPruner"}  # optuna.pruners
MAX_RETRY = 2


# --- the study file ---------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "int" or "float", the RunConfig field's type
    low: int | float
    high: int | float
    log: bool = False

    def suggest(self, trial: "optuna.Trial") -> int | float:
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class StudySpec:
    path: Path
    name: str  # the Optuna study: the file's `name`, plus `-<profile>` so quick and full never mix
    profile: str  # "full" without a profile, as in suites
    base: RunConfig  # every trial's config before its sampled params; seed = the study's `seed`
    params: tuple[Param, ...]
    objective: str
    sampler: tuple[str, dict[str, Any]]  # (name, keyword arguments)
    pruner: tuple[str, dict[str, Any]]
    n_trials: int | None
    timeout: float | None
    base_suite: Path | None  # the suite `base:` names, if any: `confirm`'s default suite

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.objective][0]

    def space(self) -> dict[str, dict[str, Any]]:
        return {p.name: {"type": p.type, "low": p.low, "high": p.high, "log": p.log} for p in self.params}

    def trial_config(self, params: Mapping[str, Any]) -> RunConfig:
        return self.base.replace(**params)


def load_spec(path: str | os.PathLike, profile: str | None = None, data_root: str | None = None) -> StudySpec:
    """Read and validate a study file (all its profiles); HarnessError names the file and key."""
    path = Path(path)
    file = str(path)
    doc = read_yaml_mapping(path, "study")
    _check_keys(doc, TOP_KEYS, file, "")
    for key in ("name", "base", "params"):
        if key not in doc:
            raise _bad(file, key, "missing")
    name = doc["name"]
    if not isinstance(name, str) or not name.strip():
        raise _bad(file, "name", f"expected a non-empty string, got {name!r}")
    base_values, base_suite = _base(doc["base"], file)
    params = _params(doc["params"], file)
    objective = doc.get("objective", "val_f1_macro")
    if objective not in OBJECTIVES:
        raise _bad(file, "objective", f"expected one of {', '.join(OBJECTIVES)}, got {objective!r}")
    profiles = doc.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise _bad(file, "profiles", "expected a mapping of profile name -> settings")
    if profile is not None and profile not in profiles:
        raise _bad(file, "profiles", f"no profile {profile!r}{did_you_mean(profile, profiles)}; "
                                     f"profiles here: {', '.join(map(str, profiles)) or 'none'}")
    top = {k: doc.get(k) for k in ("sampler", "pruner", "seed")}
    top_budget = _budget(doc.get("budget") or {}, file, "budget")
    specs = {}
    # Every profile is built, so a broken one is reported now rather than on its first use.
    for pname in [None, *profiles]:
        prof = profiles[pname] if pname is not None else {}
        at = f"profiles.{pname}." if pname is not None else ""
        if not isinstance(prof, dict):
            raise _bad(file, at[:-1], f"expected a mapping with keys {', '.join(sorted(PROFILE_KEYS))}")
        _check_keys(prof, PROFILE_KEYS, file, at)
        values = {**base_values, **_config_values(prof.get("config") or {}, file, f"{at}config")}
        settings = {**top, **{k: prof[k] for k in top if k in prof},
                    "budget": {**top_budget, **_budget(prof.get("budget") or {}, file, f"{at}budget")}}
        specs[pname] = _spec(path, f"{name}-{pname}" if pname else name, pname or "full", values, data_root,
                             params, objective, settings, at, base_suite)
    return specs[profile]


def _spec(path: Path, name: str, profile: str, values: dict, data_root: str | None, params: tuple[Param, ...],
          objective: str, settings: dict, at: str, base_suite: Path | None) -> StudySpec:
    """One profile's spec; `at` is its key prefix (`profiles.quick.`, or empty) for messages."""
    file = str(path)
    seed = settings["seed"] if settings["seed"] is not None else 0
    if not _is_int(seed) or seed < 0:
        raise _bad(file, f"{at}seed", f"expected an integer >= 0, got {seed!r}")
    try:
        base = RunConfig.from_dict({**values, "seed": seed, "data_root": data_root})
    except ConfigError as e:
        raise _bad(file, f"{at}config" if at else "base", f"the base config is invalid: {e.key}: {e.problem}") from None
    # The corners of the space must build too: then (for these monotone checks) every point does.
    for corner in ("low", "high"):
        point = {p.name: getattr(p, corner) for p in params}
        try:
            base.replace(**point)
        except ConfigError as e:
            key = f"params.{e.key}.{corner}" if e.key in point else "params"
            raise _bad(file, key, f"the search space's {corner} corner {point} is not a valid config"
                                  f"{' with profile ' + profile if at else ''}: {e.key}: {e.problem}") from None
    budget = settings["budget"]
    return StudySpec(path=path, name=name, profile=profile, base=base, params=params, objective=objective,
                     sampler=_component(settings["sampler"] or "tpe", SAMPLERS, "samplers", file, f"{at}sampler",
                                        {"seed": 0}),
                     pruner=_component(settings["pruner"] or "median", PRUNERS, "pruners", file, f"{at}pruner"),
                     n_trials=budget.get("n_trials"), timeout=budget.get("timeout"), base_suite=base_suite)


def _base(base: Any, file: str) -> tuple[dict[str, Any], Path | None]:
    """The base config's values: a suite row's (if named), then the inline `config:` on top."""
    if not isinstance(base, dict) or not base:
        raise _bad(file, "base", "expected a mapping with `config:` and/or `suite:` + `row:`")
    _check_keys(base, BASE_KEYS, file, "base.")
    if ("suite" in base) != ("row" in base):
        raise _bad(file, "base", "`suite:` and `row:` go together (the row of that suite file)")
    values: dict[str, Any] = {}
    suite_path = None
    if "suite" in base:
        from .suite import load_suite

        suite_path = Path(str(base["suite"]))  # relative to the working folder, like FILE
        try:
            suite = load_suite(suite_path)
        except HarnessError as e:
            raise _bad(file, "base.suite", str(e)) from None
        rows = {r.name: r for r in suite.rows}
        if base["row"] not in rows:
            raise _bad(file, "base.row", f"no row {base['row']!r} in {suite_path}"
                                         f"{did_you_mean(str(base['row']), rows)}; rows: {', '.join(rows)}")
        values = {k: v for k, v in rows[base["row"]].config.to_dict().items() if k not in NOT_IN_FILES}
    return {**values, **_config_values(base.get("config") or {}, file, "base.config")}, suite_path


def _config_values(values: Any, file: str, key: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise _bad(file, key, "expected a mapping of RunConfig settings")
    fields = set(RunConfig.field_names())
    for k in values:
        if k in NOT_IN_FILES:
            raise _bad(file, f"{key}.{k}", "set by the study's `seed` key or the command line, not in a config")
        if k not in fields:
            raise _bad(file, f"{key}.{k}", f"not a RunConfig field{did_you_mean(str(k), fields - NOT_IN_FILES)}")
    return dict(values)


def _params(raw: Any, file: str) -> tuple[Param, ...]:
    if not isinstance(raw, dict) or not raw:
        raise _bad(file, "params", "expected a mapping of RunConfig field -> {type, low, high, log}")
    types = {f.name: f.type for f in dataclasses.fields(RunConfig)}
    out = []
    for name, p in raw.items():
        key = f"params.{name}"
        if name in NOT_IN_FILES:
            raise _bad(file, key, "cannot be searched (set by the study's `seed` key or the command line)")
        if name not in types:
            raise _bad(file, key, f"not a RunConfig field{did_you_mean(str(name), set(types) - NOT_IN_FILES)}")
        if types[name] not in ("int", "float"):
            raise _bad(file, key, f"only numeric fields can be searched; {name} is a {types[name]}")
        if not isinstance(p, dict):
            raise _bad(file, key, f"expected a mapping with keys {', '.join(sorted(PARAM_KEYS))}")
        _check_keys(p, PARAM_KEYS, file, f"{key}.")
        kind = p.get("type", types[name])
        if kind != types[name]:
            raise _bad(file, f"{key}.type", f"expected {types[name]!r} (the type of RunConfig.{name}), got {kind!r}")
        bounds = {}
        for b in ("low", "high"):
            if b not in p:
                raise _bad(file, f"{key}.{b}", "missing")
            v = _number(p[b])
            if v is None or (kind == "int" and not float(v).is_integer()):
                raise _bad(file, f"{key}.{b}", f"expected {'an integer' if kind == 'int' else 'a number'}, "
                                               f"got {p[b]!r}")
            bounds[b] = int(v) if kind == "int" else float(v)
        log = p.get("log", False)
        if not isinstance(log, bool):
            raise _bad(file, f"{key}.log", f"expected true or false, got {log!r}")
        if bounds["low"] > bounds["high"]:
            raise _bad(file, key, f"low ({bounds['low']}) must be <= high ({bounds['high']})")
        if log and bounds["low"] <= 0:
            raise _bad(file, f"{key}.low", f"a log scale needs low > 0, got {bounds['low']}")
        out.append(Param(name=name, type=kind, low=bounds["low"], high=bounds["high"], log=log))
    return tuple(out)


def _component(raw: Any, registry: dict[str, str], module: str, file: str, key: str,
               defaults: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """A sampler/pruner as (name, kwargs): `tpe` or `{name: tpe, seed: 0, ...}`, checked by building it."""
    spec = {"name": raw} if isinstance(raw, str) else raw
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise _bad(file, key, f"expected a name ({', '.join(registry)}) or a mapping with `name:` and the "
                              f"{module[:-1]}'s arguments")
    name = spec["name"]
    if name not in registry:
        raise _bad(file, f"{key}.name", f"expected one of {', '.join(registry)}, got {name!r}"
                                        f"{did_you_mean(name, registry)}")
    kwargs = {**(defaults or {}), **{k: v for k, v in spec.items() if k != "name"}}
    cls = _optuna_class(module, registry[name])
    accepted = set(inspect.signature(cls).parameters)
    for k in kwargs:
        if k not in accepted:
            raise _bad(file, f"{key}.{k}", f"not an argument of optuna.{module}.{cls.__name__}"
                                           f"{did_you_mean(str(k), accepted)}")
    try:
        _build(module, registry[name], kwargs)
    except Exception as e:  # optuna's own validation (ValueError/TypeError) of the values
        raise _bad(file, key, f"optuna.{module}.{cls.__name__}({kwargs}) failed: {e}") from None
    return name, kwargs


def _optuna_class(module: str, cls: str) -> type:
    import importlib

    return getattr(importlib.import_module(f"optuna.{module}"), cls)


def _build(module: str, cls: str, kwargs: dict[str, Any]) -> Any:
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return _optuna_class(module, cls)(**kwargs)


def _budget(value: Any, file: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(file, key, f"expected a mapping with keys {', '.join(sorted(BUDGET_KEYS))}")
    _check_keys(value, BUDGET_KEYS, file, f"{key}.")
    n_trials, timeout = value.get("n_trials"), value.get("timeout")
    if n_trials is not None and (not _is_int(n_trials) or n_trials < 1):
        raise _bad(file, f"{key}.n_trials", f"expected an integer >= 1, got {n_trials!r}")
    if timeout is not None and (not _is_number(timeout) or timeout <= 0):
        raise _bad(file, f"{key}.timeout", f"expected seconds > 0, got {timeout!r}")
    return {k: float(v) if k == "timeout" else v for k, v in value.items() if v is not None}


def _bad(file: str, key: str, problem: str) -> HarnessError:
    return HarnessError(f"{file}: key '{key}': {problem}")


def _check_keys(d: dict, allowed: set[str], file: str, prefix: str) -> None:
    for k in d:
        if k not in allowed:
            raise HarnessError(f"{file}: unknown key '{prefix}{k}'{did_you_mean(str(k), allowed)}; "
                               f"expected one of {', '.join(sorted(allowed))}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(v: Any) -> float | int | None:
    # PyYAML reads `1e-5` (no dot) as a string: take it as the number the author meant.
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            return None
    return v if _is_number(v) else None


# --- storage and trials -----------------------------------------------------------------

def open_storage(url: str) -> "optuna.storages.RDBStorage":
    """The suite's storage (heartbeats, stale trials retried), at most MAX_RETRY retries per trial."""
    return open_queue_storage(url, max_retry=MAX_RETRY)


class Pruned(Exception):
    """Raised from the epoch callback: the trial's MLflow run ends KILLED, not as a finished result."""

    mlflow_status = "KILLED"


class TrialFailed(Exception):
    """A trial's run failed (recorded FAIL, the study goes on); bad input (HarnessError) stops instead."""


@dataclass(frozen=True)
class Job:
    """What one worker process needs (picklable for the spawn context)."""
    spec: StudySpec
    storage: str
    tracking_uri: str
    experiment: str
    parent_run_id: str
    n_trials: int | None
    timeout: float | None
    sampler_seed_offset: int
    threads: int | None = None


class Objective:
    """One trial = one tracked `training.run` on the validation split only."""

    def __init__(self, job: Job, data_cache: dict | None = None):
        self.job = job
        self.spec = job.spec
        self.c = tracking.client(job.tracking_uri)
        self.exp_id = tracking.get_or_create_experiment(self.c, job.experiment)
        self.data_cache = data_cache if data_cache is not None else {}

    def __call__(self, trial: "optuna.Trial") -> float:
        import optuna

        from . import training

        params = {p.name: p.suggest(trial) for p in self.spec.params}
        try:
            cfg = self.spec.trial_config(params)
        except ConfigError as e:
            raise self._failed(trial, f"the sampled point is not a valid config: {e}") from None

        def report(epoch: int, row: dict) -> None:
            trial.report(row[self.spec.objective], epoch)
            if trial.should_prune():
                raise Pruned(f"pruned at epoch {epoch} ({self.spec.objective} {row[self.spec.objective]:.4f})")

        tags = {"harness.kind": "trial", "harness.study": self.spec.name, "harness.profile": self.spec.profile,
                "harness.trial_number": str(trial.number)}
        try:
            key = tuple(getattr(cfg, f) for f in PREPARE_FIELDS)
            if key not in self.data_cache:
                self.data_cache[key] = training.prepare(cfg)
            with tempfile.TemporaryDirectory(prefix="harness-trial-") as out:  # the checkpoint goes to MLflow
                res = training.run(cfg, self.job.experiment, self.job.tracking_uri, out_dir=Path(out),
                                   run_name=f"trial-{trial.number}", parent_run_id=self.job.parent_run_id,
                                   extra_tags=tags, data=self.data_cache[key], score_on_test=False, on_epoch=report)
        except BaseException as e:
            self._set_state(self._run_of(trial.number), "PRUNED" if isinstance(e, Pruned) else "FAIL")
            if isinstance(e, Pruned):
                raise optuna.TrialPruned(str(e)) from None
            if isinstance(e, HarnessError) or not isinstance(e, Exception):
                raise  # bad input or Ctrl-C: stop the study
            raise self._failed(trial, f"{type(e).__name__}: {e}") from e
        self._set_state(res["run_id"], "COMPLETE")
        trial.set_user_attr("mlflow_run_id", res["run_id"])
        trial.set_user_attr("best_epoch", res["best_epoch"])
        return res[OBJECTIVES[self.spec.objective][1]]

    def _failed(self, trial: "optuna.Trial", reason: str) -> TrialFailed:
        trial.set_user_attr("failure", reason[:tracking.MAX_TAG_LEN])
        return TrialFailed(reason)

    def _run_of(self, number: int) -> str | None:
        """The trial's run, when training.run raised before returning its id."""
        runs = self.c.search_runs([self.exp_id], max_results=1, filter_string=(
            f"tags.`{tracking.PARENT_TAG}` = '{self.job.parent_run_id}' and "
            f"tags.`harness.trial_number` = '{number}'"))
        return runs[0].info.run_id if runs else None  # none when it failed before its run existed

    def _set_state(self, run_id: str | None, state: str) -> None:
        if run_id is not None:
            tracking.set_tags(self.c, run_id, {"harness.trial_state": state})


def optimize(job: Job, data_cache: dict | None = None) -> list[int]:
    """A worker: run trials until its share of the budget is spent; returns their numbers."""
    import optuna

    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our line per trial replaces its INFO lines
    spec = job.spec
    sampler_name, sampler_kwargs = spec.sampler
    if sampler_kwargs.get("seed") is not None:
        sampler_kwargs = {**sampler_kwargs, "seed": sampler_kwargs["seed"] + job.sampler_seed_offset}
    study = optuna.load_study(study_name=spec.name, storage=open_storage(job.storage),
                              sampler=_build("samplers", SAMPLERS[sampler_name], sampler_kwargs),
                              pruner=_build("pruners", PRUNERS[spec.pruner[0]], spec.pruner[1]))
    done: list[int] = []

    def log_trial(study: "optuna.Study", t: "optuna.trial.FrozenTrial") -> None:
        done.append(t.number)
        what = {"COMPLETE": f"{spec.objective} {t.value or 0:.4f}",
                "PRUNED": f"{spec.objective} {t.value or 0:.4f} at the last epoch"}.get(
            t.state.name, t.user_attrs.get("failure", ""))
        params = ", ".join(f"{k}={v:.4g}" for k, v in t.params.items())
        secs = t.duration.total_seconds() if t.duration else 0.0
        print(f"trial {t.number:>3} {t.state.name:<8} {len(t.intermediate_values):>3} epochs {secs:6.1f}s  "
              f"{params}  {what}", flush=True)

    study.optimize(Objective(job, data_cache), n_trials=job.n_trials, timeout=job.timeout,
                   catch=(TrialFailed,), callbacks=[log_trial])
    return done


def _worker_main(job: Job) -> list[int]:
    try:
        return optimize(job)
    except HarnessError as e:
        raise HarnessError(str(e)) from None  # subclasses with extra __init__ args do not unpickle


# --- study run ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    name: str
    parent_run_id: str
    trials: tuple[int, ...]  # the trial numbers this invocation ran
    states: dict[str, int]  # the whole study's trials by state
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]


def run_study(spec: StudySpec, n_trials: int | None = None, timeout: float | None = None, workers: int = 1,
              storage: str | None = None, tracking_uri: str | None = None, experiment: str | None = None) -> Outcome:
    """Add trials to the study (created on first use) with `workers` processes; summarise it in MLflow."""
    from . import training

    n_trials = n_trials if n_trials is not None else spec.n_trials
    timeout = timeout if timeout is not None else spec.timeout
    if n_trials is None and timeout is None:
        raise HarnessError(f"{spec.path}: no budget: set budget.n_trials or budget.timeout, or pass --n-trials")
    if workers < 1:
        raise HarnessError(f"invalid --workers {workers}: expected >= 1")
    if n_trials is not None and n_trials < 1:
        raise HarnessError(f"invalid --n-trials {n_trials}: expected >= 1")
    uri = tracking.resolve_tracking_uri(tracking_uri)
    storage = storage or DEFAULT_STORAGE
    if _sqlite_file(storage) is not None and _sqlite_file(storage) == _sqlite_file(uri):
        raise HarnessError(f"--storage {storage} is MLflow's database: Optuna needs its own (both use alembic)")
    experiment = experiment or spec.name

    from .services import preflight
    preflight(uri, storage)  # a server or database that is down: one line, exit 2, in seconds
    optuna_storage = open_storage(storage)  # a bad URL fails before the data work
    data = training.prepare(spec.base)  # a bad corpus fails now, and features are cached before workers start
    existing = len(_open_study(spec, optuna_storage, storage, data.corpus.fingerprint).trials)

    c = tracking.client(uri)
    exp_id = tracking.get_or_create_experiment(c, experiment)
    tags = {"harness.kind": "study", "harness.study": spec.name, "harness.profile": spec.profile,
            "harness.storage": tracking.redact(storage), "harness.study_file": str(spec.path),
            "harness.config_hash": spec.base.config_hash, "harness.search_space": json.dumps(spec.space())}
    budget = " or ".join(b for b in (n_trials and f"{n_trials} trials", timeout and f"{timeout:g}s") if b)
    print(f"study {spec.name!r}: {existing} trial(s) so far in {tracking.redact(storage)}; running {budget} with "
          f"{workers} worker(s) -> MLflow experiment {experiment!r} at {tracking.redact(uri)}", flush=True)
    with tracking.tracked_run(c, exp_id, spec.name, tags) as parent:
        # Worker i's sampler seed is the file's + trials so far + i: reproducible for a fresh
        # single-worker study, and no two workers (or a resumed run) draw the same start points.
        jobs = [Job(spec=spec, storage=storage, tracking_uri=uri, experiment=experiment, parent_run_id=parent,
                    n_trials=None if n_trials is None else n_trials // workers + (i < n_trials % workers),
                    timeout=timeout, sampler_seed_offset=existing + i,
                    threads=max(1, _cpus() // workers) if workers > 1 else None)
                for i in range(workers)]
        jobs = [j for j in jobs if j.n_trials != 0]
        if len(jobs) == 1:
            ran = optimize(jobs[0], {tuple(getattr(spec.base, f) for f in PREPARE_FIELDS): data})
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: a clean interpreter per worker (no inherited torch threads, locks or sqlite connections)
            with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
                ran = [n for part in pool.map(_worker_main, jobs) for n in part]
        return summarise(spec, storage, c, exp_id, parent, tuple(sorted(ran)))


def _open_study(spec: StudySpec, storage: "optuna.storages.RDBStorage", url: str, fingerprint: str) -> "optuna.Study":
    """Create the study, or resume it if it was started with the same base, seed, space and data."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction, load_if_exists=True)
    identity = {"harness.config_hash": spec.base.config_hash, "harness.seed": spec.base.seed,
                "harness.search_space": spec.space(), "harness.data_fingerprint": fingerprint}
    for key, value in identity.items():
        stored = study.user_attrs.get(key)
        if stored is None:
            study.set_user_attr(key, value)
        elif stored != value:
            raise HarnessError(f"{spec.path}: study {spec.name!r} in {tracking.redact(url)} was started with a "
                               f"different {key.split('.')[1].replace('_', ' ')} ({stored} here: {value}); "
                               f"rename the study or use another --storage")
    return study


def summarise(spec: StudySpec, storage: str, c, exp_id: str, parent: str, ran: tuple[int, ...]) -> Outcome:
    """Best trial, importances and plots of the whole study, on the parent run."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=spec.name, storage=open_storage(storage))
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


def _sqlite_file(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]).resolve() if url.startswith("sqlite:///") else None


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# --- study confirm --------------------------------------------------------------------

def confirm(spec: StudySpec, n_seeds: int, suite_path: str | os.PathLike | None = None, storage: str | None = None,
            tracking_uri: str | None = None, data_root: str | None = None) -> "Summary":
    """Train the study's best config as the suite row `study-best` over seeds 0..n_seeds-1 (test split scored)."""
    import optuna

    from .suite import RowSpec, load_suite, run_suite

    if n_seeds < 1:
        raise HarnessError(f"invalid --n-seeds {n_seeds}: expected >= 1")
    storage = storage or DEFAULT_STORAGE
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=spec.name, storage=open_storage(storage))
    except KeyError:
        raise HarnessError(f"{spec.path}: no study {spec.name!r} in {tracking.redact(storage)}; "
                           f"run `harness study run {spec.path}` first") from None
    try:
        best = study.best_trial
    except ValueError:
        raise HarnessError(f"{spec.path}: study {spec.name!r} has no complete trial yet") from None
    try:
        cfg = spec.trial_config(best.params).replace(seed=0)  # the suite sets each cell's seed
    except ConfigError as e:
        raise HarnessError(f"{spec.path}: the best trial's params no longer make a valid config: {e}") from None
    suite = load_suite(suite_path or spec.base_suite or DEFAULT_SUITE,
                       profile=None if spec.profile == "full" else spec.profile)
    params = ", ".join(f"{k}={v:.4g}" for k, v in best.params.items())
    row = RowSpec(CONFIRM_ROW, cfg, note=f"best trial {best.number} of Optuna study {spec.name} "
                                         f"({spec.objective} {best.value:.4f}): {params}")
    suite = dataclasses.replace(suite, rows=tuple(r for r in suite.rows if r.name != CONFIRM_ROW) + (row,))
    print(f"confirming trial {best.number} of {spec.name!r} ({params}) as row {CONFIRM_ROW!r} of suite "
          f"{suite.name!r}, seeds 0..{n_seeds - 1}")
    return run_suite(suite, seeds=tuple(range(n_seeds)), rows=[CONFIRM_ROW], data_root=data_root,
                     tracking_uri=tracking_uri, storage=storage, progress=sys.stderr.isatty(),
                     extra_row_tags={"harness.study": spec.name, "harness.best_trial": str(best.number)})


# --- CLI -------------------------------------------------------------------------------

def register(sub) -> None:
    p = sub.add_parser("study", help="Optuna hyperparameter study on validation macro-F1")
    ss = p.add_subparsers(dest="study_command", required=True, parser_class=type(p))
    common = [("--profile", dict(default=None, help="a profile of the file, e.g. quick (study name gets -PROFILE)")),
              ("--storage", dict(default=None, help=f"Optuna storage, a SQLAlchemy URL (default: {DEFAULT_STORAGE})")),
              ("--tracking_uri", dict(default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI, "
                                                         "else sqlite:///mlflow.db)")),
              ("--data_root", dict(default=None, help="RAVDESS root (default: the synthetic corpus)"))]

    r = ss.add_parser("run", help="add trials to a study (created on first use, resumed by name)")
    c = ss.add_parser("confirm", help="train the best trial's config over seeds as the suite row study-best")
    for q in (r, c):
        q.add_argument("file", type=Path, help="study YAML, e.g. studies/focal_specaug_lr.yaml")
        for flag, kw in common:
            q.add_argument(flag, **kw)
    r.add_argument("--n-trials", type=int, default=None, dest="n_trials",
                   help="trials for this invocation (default: the file's budget.n_trials)")
    r.add_argument("--timeout", type=float, default=None, help="seconds for this invocation (default: the file's)")
    r.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default: 1)")
    r.add_argument("--experiment", default=None, help="MLflow experiment (default: the study name)")
    c.add_argument("--n-seeds", type=int, required=True, dest="n_seeds", help="seeds 0..N-1, as in the suite")
    c.add_argument("--suite", default=None, help=f"suite YAML to add the row to (default: the file's base suite, "
                                                 f"else {DEFAULT_SUITE})")
    r.set_defaults(func=cmd_run)
    c.set_defaults(func=cmd_confirm)


def cmd_run(args) -> int:
    spec = load_spec(args.file, args.profile, args.data_root)
    t0 = time.time()
    out = run_study(spec, n_trials=args.n_trials, timeout=args.timeout, workers=args.workers, storage=args.storage,
                    tracking_uri=args.tracking_uri, experiment=args.experiment)
    print(f"study {out.name!r}: {sum(out.states.values())} trial(s) in all ({out.states}); "
          f"MLflow parent run {out.parent_run_id}; {time.time() - t0:.0f}s")
    return 0 if out.best_trial is not None else 1


def cmd_confirm(args) -> int:
    spec = load_spec(args.file, args.profile, args.data_root)
    summary = confirm(spec, args.n_seeds, args.suite, args.storage, args.tracking_uri, args.data_root)
    return 1 if summary.failed else 0
