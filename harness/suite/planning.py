"""What a suite run will do: its cells, which of them are done, and how long the rest takes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from harness.config import C_GRID, CLASSIC_MODELS, RunConfig, did_you_mean
from harness.errors import HarnessError
from harness.suite.file import RowSpec, Suite


@dataclass(frozen=True)
class Cell:
    """One training run of a suite: a row, a seed and, under cross-validation, a fold."""
    row: str
    seed: int
    config_hash: str
    fold: int | None = None

    @property
    def key(self) -> str:
        """The queue's name for it (unchanged for single-split cells, so older queues still match)."""
        fold = "" if self.fold is None else f"f{self.fold}|"
        return f"{self.row}|{self.seed}|{fold}{self.config_hash}"

    @property
    def ident(self) -> tuple[str, int, int | None, str]:
        """What `finished_cells` is keyed by."""
        return (self.row, self.seed, self.fold, self.config_hash)

    @property
    def label(self) -> str:
        return f"{self.row} seed {self.seed}" + ("" if self.fold is None else f" fold {self.fold}")


def row_cells(row: RowSpec, seeds: Sequence[int]) -> list[Cell]:
    """A row's cells: one per seed, or one per (seed, fold) under cross-validation (a whole repeat per seed)."""
    folds = range(row.config.cv_folds) if row.config.cv_folds else [None]
    return [Cell(row.name, s, row.config.config_hash, f) for s in seeds for f in folds]


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise HarnessError(f"invalid --seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds or any(s < 0 for s in seeds):
        raise HarnessError(f"invalid --seeds {text!r}: expected integers >= 0")
    return seeds


def select_rows(suite: Suite, names: Sequence[str] | None) -> tuple[RowSpec, ...]:
    if not names:
        return suite.rows
    known = [r.name for r in suite.rows]
    for n in names:
        if n not in known:
            raise HarnessError(f"{suite.path}: no row {n!r}{did_you_mean(n, known)}; rows: {', '.join(known)}")
    return tuple(r for r in suite.rows if r.name in names)


def cell_config(row: RowSpec, cell: Cell, data_root: str | None) -> RunConfig:
    return row.config.replace(seed=cell.seed, fold=cell.fold, data_root=data_root)


def row_fingerprints(fingerprint: str | Mapping[str, str], rows: Sequence[RowSpec]) -> dict[str, str]:
    """Each row's data fingerprint: the one given for all, or the row's own."""
    if isinstance(fingerprint, str):
        return {r.name: fingerprint for r in rows}
    return {r.name: fingerprint[r.name] for r in rows}


def finished_cells(c, exp_id: str | None, fingerprint: str | Mapping[str, str],
                   rows: Sequence[RowSpec] | None = None) -> dict[tuple[str, int, int | None, str], Any]:
    """(row, seed, fold or None, config_hash) -> the FINISHED cell run, for this data: one fingerprint, or
    each row's (a row that filters labels reads other data than the first). With `rows`, only those rows at
    their current config, one query per row: the rest of the experiment (other suites' rows, older
    configs) is never read."""
    if exp_id is None:
        return {}

    def where(fp: str) -> str:
        return ("tags.`harness.kind` = 'cell' and attributes.status = 'FINISHED' "
                f"and tags.`harness.data_fingerprint` = '{fp}'")

    if rows is None:
        if not isinstance(fingerprint, str):
            raise TypeError("finished_cells: a fingerprint per row needs the rows")
        runs = search_runs(c, exp_id, where(fingerprint))
    else:
        fps = row_fingerprints(fingerprint, rows)
        runs = [r for name, h in {(r.name, r.config.config_hash) for r in rows}
                for r in search_runs(c, exp_id, f"{where(fps[name])} and tags.`harness.row` = '{name}' "
                                                f"and tags.`harness.config_hash` = '{h}'")]
    out = {}
    for r in runs:
        t = r.data.tags
        fold = int(t["harness.fold"]) if t.get("harness.fold", "") != "" else None
        out.setdefault((t["harness.row"], int(t["harness.seed"]), fold, t["harness.config_hash"]), r)
    return out


def cell_runs(c, exp_id: str, cell: Cell) -> list:
    """Every run of one cell (any status, any data), found by its tags: row, seed, config hash and, under
    cross-validation, fold. One small query whatever the experiment's size: what a worker checks before
    each cell, instead of reading the whole experiment (`finished_cells`, once per suite)."""
    same_fold = "" if cell.fold is None else f" and tags.`harness.fold` = '{cell.fold}'"
    return search_runs(c, exp_id, f"tags.`harness.row` = '{cell.row}' and tags.`harness.seed` = '{cell.seed}' and "
                                  f"tags.`harness.config_hash` = '{cell.config_hash}' and "
                                  f"tags.`harness.kind` = 'cell'{same_fold}")


def search_runs(c, exp_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = c.search_runs([exp_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def cv_repeats(rows: Sequence[RowSpec], seeds: Sequence[int], done: dict, extra: int = 0) -> int:
    """The most repeats a cross-validated row will rest on once this run is through: its seeds finished and
    to run, plus `extra` (racing's rounds); 0 without a cross-validated row."""
    counts = [len({s for (name, s, _, h) in done if name == r.name and h == r.config.config_hash} | set(seeds))
              for r in rows if r.config.cv_folds]
    return max(counts) + extra if counts else 0


def print_plan(suite: Suite, rows: Sequence[RowSpec], seeds: Sequence[int], cells: Sequence[Cell],
               done: dict, data_root: str | None, experiment: str, budget: int | None = None,
               extraction: Sequence[str] = ()) -> None:
    print(f"suite {suite.name!r} from {suite.path}, profile {suite.profile!r} -> experiment {experiment!r}; "
          f"data: {data_root or 'synthetic corpus'}; seeds {list(seeds)}")
    # A head is named with its front-end ("mlp@wavlm_base"); the column widens for it.
    models = {r.name: r.config.model if r.config.features == "logmel" else f"{r.config.model}@{r.config.features}"
              for r in rows}
    w = max([9, *map(len, models.values())])
    print(f"{'row':<28} {'model':<{w}} {'epochs':>6} {'design':>7}  {'done':>4}  {'to run':>6}  seeds to run")
    total_epochs = 0
    n_pending = 0
    for r in rows:
        mine = [cell for cell in cells if cell.row == r.name]
        todo = [cell for cell in mine if cell.ident not in done]
        classic = r.config.model in CLASSIC_MODELS  # fitted by scikit-learn: no epochs
        total_epochs += 0 if classic else len(todo) * r.config.epochs
        n_pending += len(todo)
        design = f"cv{r.config.cv_folds}" if r.config.cv_folds else "split"
        seeds_todo = sorted({cell.seed for cell in todo})
        print(f"{r.name:<28} {models[r.name]:<{w}} {'-' if classic else r.config.epochs:>6} {design:>7}  "
              f"{len(mine) - len(todo):>4}  "
              f"{len(todo):>6}  {','.join(map(str, seeds_todo)) or '-'}")
    est = _estimate_seconds(done.values(), rows, cells, done)
    print(f"{len(cells)} cells: {len(cells) - n_pending} already done, {n_pending} to run "
          f"({total_epochs} training epochs){est}")
    if extraction:  # paid once per corpus before the cells, not per cell
        print("front-end extraction, once before the cells: " + "; ".join(extraction))
    if budget is not None:
        # Worst case: every round adds a repeat to the most expensive rows until the budget is spent.
        spent = sum(1 for key in done if key[0] in {r.name for r in rows})
        extra = max(0, budget - max(spent, len(cells)))
        costliest = max(rows, key=lambda r: steps(r.config))
        worst = [Cell(costliest.name, -1, costliest.config.config_hash)] * extra
        print(f"--until-decided: at most {budget} training runs in all ({max(spent, len(cells))} in the first seeds "
              f"or already done, at most {extra} more in racing rounds); worst case "
              f"{_estimate_seconds(done.values(), [costliest], worst, {}).removeprefix('; ')} for those rounds")


def steps(cfg) -> int:
    """What a cell logs as `epochs_run`: its epochs, or for a classic model its fits (one per C tried)."""
    if cfg.model in CLASSIC_MODELS:
        return 1 if cfg.C is not None else len(C_GRID)
    return cfg.epochs


def _estimate_seconds(runs: Iterable, rows: Sequence[RowSpec], cells: Sequence[Cell], done: dict) -> str:
    """Seconds per epoch measured on finished cells of the same model, where there are any."""
    per_epoch: dict[str, list[float]] = {}
    wall = cpu = 0.0
    for r in runs:
        m = r.data.metrics
        if "wall_time_s" in m and m.get("epochs_run"):
            kind = (r.data.params.get("model", ""), r.data.params.get("features", "logmel"))  # a head's speed is its front-end's
            per_epoch.setdefault(kind, []).append(m["wall_time_s"] / m["epochs_run"])
            if "cpu_time_s" in m:
                wall, cpu = wall + m["wall_time_s"], cpu + m["cpu_time_s"]
    if not per_epoch:
        return "; no finished cells yet to estimate the time from"
    secs, unknown = 0.0, 0
    for r in rows:
        todo = sum(1 for cell in cells if cell.row == r.name and cell.ident not in done)
        rates = per_epoch.get((r.config.model, r.config.features))
        if rates:
            secs += todo * steps(r.config) * sum(rates) / len(rates)
        else:
            unknown += todo
    extra = f", plus {unknown} cell(s) of a model not timed yet" if unknown else ""
    # How much of the machine the timed cells had: on a shared machine the estimate is that machine's.
    share = f" (the timed cells got {cpu / wall:.2f} CPU-seconds per second)" if wall > 0 else ""
    return f"; about {secs / 60:.1f} min of training at the measured speed{share}{extra}"

