"""Ablation suites: each row of a YAML table, run over several seeds as MLflow runs.

Layout in MLflow (the report reads exactly this):
- one experiment per suite (the file's `name`, or `--experiment`);
- one parent run per row (tags `harness.kind=row`, `harness.row`, `harness.row_index`,
  `harness.config_hash`, `harness.claimed_f1`, `harness.note`), with the row's
  mean and 95% CI over its finished seeds as metrics, and the answer in words (mean, CI, n,
  paired Δ vs the baseline row) as the run's note `mlflow.note.content`, for the MLflow UI;
- one nested child run per (row, seed) = a cell (tags `harness.kind=cell`,
  `harness.row`, `harness.seed`, `harness.config_hash`), holding the training run.

Work is shared through the work queue (`harness.queue`); MLflow is the record
of what is done: a cell is done when a FINISHED child run with the same config
hash and data fingerprint exists, so a rerun skips it, and a RUNNING child left
by a dead worker is marked KILLED. The suite file is read by `file`, the
cells are planned by `planning` and trained by the `workers`.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Sequence

from harness import services, tracking
from harness.errors import HarnessError
from harness.report.repeat_cap import switch_warning
from harness.suite import racing
from harness.suite.file import RowSpec, Suite, load_suite
from harness.suite.parents import close_parents, row_ci, row_parent
from harness.suite.planning import (
    Cell,
    Summary,
    cell_config,
    cv_repeats,
    finished_cells,
    parse_seeds,
    print_plan,
    row_cells,
    select_rows,
)
from harness.suite.queue import default_storage, enqueue, open_queue
from harness.suite.workers import Plan, drain

def run_suite(suite: Suite, seeds: Sequence[int] | None = None, rows: Sequence[str] | None = None,
              workers: int = 1, data_root: str | None = None, tracking_uri: str | None = None,
              storage: str | None = None, experiment: str | None = None,
              extra_row_tags: dict[str, str] | None = None, dry_run: bool = False,
              target_ci: float | None = None, max_seeds: int | None = None,
              until_decided: bool = False, budget: int | None = None,
              out_dir: str = "artifacts", progress: bool = True) -> Summary:
    """Run every pending (row, seed[, fold]) cell; returns counts of done/skipped/failed."""
    from harness.train.frontends import extraction_status
    from harness.train.data import checked_config, default_cache_dir, prepare, scan_data

    seeds = tuple(seeds or suite.seeds)
    data_root = data_root if data_root is not None else suite.data_root
    selected = select_rows(suite, rows)
    baseline = racing.check_racing(suite, selected, seeds, until_decided, budget, target_ci)
    if workers < 1:
        raise HarnessError(f"invalid --workers {workers}: expected >= 1")
    if (target_ci is None) != (max_seeds is None):
        raise HarnessError("--target-ci and --max-seeds go together")
    if target_ci is not None and (target_ci <= 0 or max_seeds < len(seeds)):
        raise HarnessError(f"--target-ci must be > 0 and --max-seeds >= the {len(seeds)} starting seeds")
    uri = tracking.resolve_tracking_uri(tracking_uri)
    experiment = experiment or suite.name
    storage = storage or default_storage(uri)
    services.preflight(uri, storage)  # a server or database that is down: one line, exit 2, in seconds

    frontend_rows = _frontend_rows(suite, selected, data_root)  # an encoder without weights: one line, before any work
    # Scanning the data first: a bad corpus, or a CV design it cannot hold, fails here, before any run exists.
    # Rows reading other data (labels, corpora) than the first are scanned once each.
    probes: dict[tuple, object] = {}
    row_probe: dict[str, object] = {}  # row name -> the corpus it reads
    resolved = []
    for r in selected:
        try:
            cfg = r.config.replace(data_root=data_root) if data_root is not None else r.config
            key = tuple(getattr(cfg, f) for f in ("data_root", "corpus", "labels", "label_map"))
            if key not in probes:
                probes[key] = scan_data(cfg)
            cfg = checked_config(cfg, probes[key])
            row_probe[r.name] = probes[key]
        except HarnessError as e:
            raise HarnessError(f"{suite.path}: row {r.name!r}: {e}") from None
        resolved.append(dataclasses.replace(r, config=cfg.replace(data_root=r.config.data_root)))
    selected = resolved
    # each row's own data fingerprint: a row that filters labels reads other clips than the first
    fingerprints = {name: p.fingerprint for name, p in row_probe.items()}
    c = _store(uri, dry_run)
    exp = c.get_experiment_by_name(experiment) if c is not None else None
    done = finished_cells(c, exp.experiment_id if exp else None, fingerprints, selected)
    all_cells = [cell for r in selected for cell in row_cells(r, seeds)]
    pending = [cell for cell in all_cells if cell.ident not in done]
    summary = Summary(skipped=len(all_cells) - len(pending))

    if until_decided and budget is None:
        budget = racing.DEFAULT_BUDGET_FACTOR * len(all_cells)
    if until_decided and budget < len(all_cells):
        raise HarnessError(f"invalid --budget {budget}: the first seeds alone are {len(all_cells)} training runs "
                           f"({len(selected)} rows x {len(seeds)} seeds{' x folds' if len(all_cells) > len(selected) * len(seeds) else ''})")

    # a repeat past the default interval's cap widens the report's answers: said before it is run
    added = (racing.max_rounds(selected, baseline, budget, len(all_cells)) if until_decided
             else max_seeds - len(seeds) if target_ci is not None else 0)  # the most repeats racing or --target-ci add
    cap_warning = switch_warning(cv_repeats(selected, seeds, done, added))
    if dry_run:
        print_plan(suite, selected, seeds, all_cells, done, data_root, experiment,
                   budget=budget if until_decided else None,
                   extraction=[extraction_status(r.config, row_probe[r.name].fingerprint, len(row_probe[r.name].clips),
                                                 default_cache_dir(), row_probe[r.name].clips)
                               for r in frontend_rows])
        if cap_warning:
            print(cap_warning)
        return summary

    exp_id = tracking.get_or_create_experiment(c, experiment)
    parents = {r.name: row_parent(c, exp_id, suite, r, extra_row_tags or {}) for r in selected}
    queue = open_queue(storage, experiment)
    # Features cached once before workers start: log-mel, and each front-end the rows use.
    for r in [selected[0], *frontend_rows]:
        # An extraction says how far it is (clips/s, time left) on a terminal or in a log alike. Each row's own
        # first cell: a fold of a CV row means nothing to a split row (ConfigError before this was per row).
        first = next(cell for cell in all_cells if cell.row == r.name)
        prepare(cell_config(r, first, data_root), progress=progress or r.config.features != "logmel")
    plan = Plan(suite=suite, experiment=experiment, tracking_uri=uri, storage=storage, data_root=data_root,
                out_dir=out_dir, parents=parents, cells=tuple(pending), fingerprints=fingerprints,
                extra_row_tags=dict(extra_row_tags or {}))
    print(f"suite {suite.name!r} ({suite.profile}) -> MLflow experiment {experiment!r} at {tracking.redact(uri)}: "
          f"{len(all_cells)} cells, {summary.skipped} already done, {len(pending)} to run, {workers} worker(s)")
    if cap_warning:
        print(cap_warning)
    rounds = 0
    while True:
        if plan.cells:
            enqueue(queue, plan.cells)
            failed_before = summary.failed
            drain(plan, workers, summary, progress)
            if until_decided and rounds and summary.failed > failed_before:
                print("racing stopped: a cell of the last round failed (rerun to retry it)")
                break
        if until_decided:
            st = racing.standing(c, exp_id, selected, baseline, fingerprints)
            nxt = racing.next_round(selected, baseline, st)
            open_rows = sorted(r for r, d in st.decisions.items() if d == "undecided")
            if not nxt or st.spent + len(nxt) > budget:
                if nxt:
                    print(f"racing: budget reached ({st.spent} of {budget} training runs spent, the next round "
                          f"needs {len(nxt)})")
                print("\n".join(racing.summary_lines(st, rounds, budget)))
                break
            rounds += 1
            print(f"racing round {rounds}: {len(nxt)} cell(s) (seed {nxt[0].seed}) for undecided row(s) "
                  f"{', '.join(open_rows)} and the baseline; {st.spent} of {budget} training runs spent")
            plan = dataclasses.replace(plan, cells=tuple(nxt))
            continue
        plan = dataclasses.replace(plan, cells=tuple(more_seeds(c, exp_id, plan, selected, target_ci, max_seeds)))
        if not plan.cells:
            break
        print(f"adaptive seeds: {len(plan.cells)} more cell(s) to reach a 95% CI half-width <= {target_ci}")
    if until_decided:
        racing.record_race(c, exp_id, parents, fingerprints, selected, seeds, budget)
    close_parents(c, exp_id, parents)
    print(f"summary: {summary.done} done, {summary.skipped} skipped (already done), {summary.failed} failed")
    for line in summary.failures:
        print(f"  FAILED {line}")
    return summary


def _store(uri: str, dry_run: bool):
    """The tracking store; for a dry run only one that exists (None: nothing done yet), as a dry run
    creates nothing (no mlflow.db, no lock, no mlruns/)."""
    if not dry_run:
        return tracking.client(uri)
    try:
        return tracking.client(uri, must_exist=True)
    except HarnessError:  # the URI passed the preflight: this says only that no local store is there yet
        return None


def _frontend_rows(suite: Suite, rows, data_root: str | None = None) -> list:
    """One row per distinct front-end other than log-mel (features, layer, weights) and the data it reads (a
    row filtering labels or naming other corpora extracts other clips), each front-end's weights checked once."""
    from harness.train.frontends import check_weights

    out, seen, checked = [], set(), set()
    for r in rows:
        c = r.config
        frontend = (c.features, c.layer, c.encoder_checkpoint)
        key = (*frontend, data_root if data_root is not None else c.data_root, c.corpus, c.labels, c.label_map)
        if c.features == "logmel" or key in seen:
            continue
        seen.add(key)
        if frontend not in checked:
            checked.add(frontend)
            try:
                check_weights(c)
            except HarnessError as e:
                raise HarnessError(f"{suite.path}: row {r.name!r}: {e}") from None
        out.append(r)
    return out


def more_seeds(c, exp_id: str, plan: Plan, rows: Sequence[RowSpec], target_ci: float | None,
               max_seeds: int | None) -> list[Cell]:
    """Adaptive seeds: one more seed (under cross-validation, a whole repeat) for each row whose
    CI is still wider than the target."""
    if target_ci is None:
        return []
    done = finished_cells(c, exp_id, plan.fingerprints, rows)
    cells = []
    for row in rows:
        mine = [r for (name, _, _, h), r in done.items() if name == row.name and h == row.config.config_hash]
        seeds = sorted({s for (name, s, _, h) in done if name == row.name and h == row.config.config_hash})
        _, half = row_ci(mine)
        if len(seeds) < max_seeds and (math.isnan(half) or half > target_ci):
            cells += row_cells(row, [max(seeds, default=-1) + 1])
    return cells


# --- CLI ---------------------------------------------------------------------------

def register(sub) -> None:
    p = sub.add_parser("suite", help="run an ablation suite (rows x seeds) as MLflow runs")
    ss = p.add_subparsers(dest="suite_command", required=True, parser_class=type(p))
    r = ss.add_parser("run", help="run every pending (row, seed) cell of a suite file")
    r.add_argument("file", type=Path, help="suite YAML, e.g. experiments/seed_table.yaml")
    r.add_argument("--profile", default=None, help="a profile of the file, e.g. quick (default: full)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2 (default: the file's)")
    g.add_argument("--n-seeds", type=int, default=None, help="seeds 0..N-1")
    r.add_argument("--rows", default=None, help="comma-separated row names (default: all)")
    r.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default: 1)")
    r.add_argument("--data_root", default=None, help="the corpus folder(s), ',' between several (default: the file's "
                                                     "'data' list, else the synthetic corpus)")
    r.add_argument("--tracking_uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    r.add_argument("--storage", default=None,
                   help="coordination database (SQLAlchemy URL; default: optuna.db beside mlflow.db)")
    r.add_argument("--experiment", default=None, help="MLflow experiment (default: the suite's name)")
    r.add_argument("--out", default="artifacts", help="folder for checkpoints and plots (default: artifacts)")
    r.add_argument("--target-ci", type=float, default=None, dest="target_ci",
                   help="adaptive seeds: add seeds to a row until its 95%% CI half-width of test macro-F1 <= W")
    r.add_argument("--max-seeds", type=int, default=None, dest="max_seeds", help="adaptive seeds: at most M per row")
    r.add_argument("--until-decided", action="store_true", dest="until_decided",
                   help="racing: after the first seeds, add a repeat only to rows whose decision against the "
                        "baseline is still open, round by round, until all are decided or --budget is spent")
    r.add_argument("--budget", type=int, default=None,
                   help=f"with --until-decided: at most N training runs (cells) for the selected rows, the first "
                        f"seeds included (default: {racing.DEFAULT_BUDGET_FACTOR}x the first seeds' cells)")
    r.add_argument("--dry-run", action="store_true", dest="dry_run", help="print the planned cells and exit")
    r.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    suite = load_suite(args.file, args.profile)
    if args.n_seeds is not None and args.n_seeds < 1:
        raise HarnessError(f"invalid --n-seeds {args.n_seeds}: expected >= 1")
    seeds = parse_seeds(args.seeds) if args.seeds else (tuple(range(args.n_seeds)) if args.n_seeds else None)
    rows = [r.strip() for r in args.rows.split(",")] if args.rows else None
    summary = run_suite(suite, seeds=seeds, rows=rows, workers=args.workers, data_root=args.data_root,
                        tracking_uri=args.tracking_uri, storage=args.storage, experiment=args.experiment,
                        dry_run=args.dry_run, target_ci=args.target_ci, max_seeds=args.max_seeds,
                        until_decided=args.until_decided, budget=args.budget,
                        out_dir=args.out, progress=sys.stderr.isatty())
    return 1 if summary.failed else 0