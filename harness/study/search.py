"""Optuna studies: search a few RunConfig fields for the best validation macro-F1.

A study file (YAML, `studies/*.yaml`) is data, read by `study_file.load_spec`;
what a study found is summarised on its parent run by `study_results`.

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
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness import tracking
from harness.errors import ConfigError, HarnessError
from harness.study.file import OBJECTIVES, PRUNERS, SAMPLERS, StudySpec, _build, load_spec
from harness.study.results import Outcome, summarise
from harness.suite.queue import open_storage as open_queue_storage
from harness.train.data import PREPARE_FIELDS

if TYPE_CHECKING:
    import optuna

    from harness.suite.planning import Summary

DEFAULT_STORAGE = "sqlite:///optuna.db"
DEFAULT_SUITE = "experiments/seed_table.yaml"
CONFIRM_ROW = "study-best"
MAX_RETRY = 2


# --- storage and trials ---------------------------------------------------------------

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

        from harness.train import run as training

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

def run_study(spec: StudySpec, n_trials: int | None = None, timeout: float | None = None, workers: int = 1,
              storage: str | None = None, tracking_uri: str | None = None, experiment: str | None = None) -> Outcome:
    """Add trials to the study (created on first use) with `workers` processes; summarise it in MLflow."""
    from harness.train import run as training

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

    from harness.services import preflight
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
        import optuna

        study = optuna.load_study(study_name=spec.name, storage=open_storage(storage))
        return summarise(spec, study, c, exp_id, parent, tuple(sorted(ran)))


def _open_study(spec: StudySpec, storage: "optuna.storages.RDBStorage", url: str, fingerprint: str) -> "optuna.Study":
    """Create the study, or resume it if it was started with the same base, seed, space and data."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction, load_if_exists=True)
    if study.metric_names is None:  # optuna-dashboard labels an unnamed objective "Objective 0"
        study.set_metric_names([spec.objective])
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


def _sqlite_file(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]).resolve() if url.startswith("sqlite:///") else None


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# --- study confirm --------------------------------------------------------------------

def confirm(spec: StudySpec, n_seeds: int, suite_path: str | os.PathLike | None = None, storage: str | None = None,
            tracking_uri: str | None = None, data_root: str | None = None) -> "Summary":
    """Train the study's best config as the suite row `study-best` over seeds 0..n_seeds-1 (test split scored)."""
    import optuna

    from harness.suite.file import RowSpec, load_suite
    from harness.suite.runner import run_suite

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
              ("--data_root", dict(default=None, help="the corpus folder(s), ',' between several (default: the synthetic corpus)"))]

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
