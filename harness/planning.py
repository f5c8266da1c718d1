"""What a suite run will do: its cells, which of them are done, and how long the rest takes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .config import RunConfig, did_you_mean
from .errors import HarnessError
from .suite_file import RowSpec, Suite


@dataclass(frozen=True)
class Cell:
    row: str
    seed: int
    config_hash: str

    @property
    def key(self) -> str:
        return f"{self.row}|{self.seed}|{self.config_hash}"


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


def cell_config(row: RowSpec, seed: int, data_root: str | None) -> RunConfig:
    return row.config.replace(seed=seed, data_root=data_root)


def finished_cells(c, exp_id: str | None, fingerprint: str) -> dict[tuple[str, int, str], Any]:
    """(row, seed, config_hash) -> the FINISHED child run, for this data."""
    if exp_id is None:
        return {}
    runs = search_runs(c, exp_id, "tags.`harness.kind` = 'cell' and attributes.status = 'FINISHED' "
                              f"and tags.`harness.data_fingerprint` = '{fingerprint}'")
    out = {}
    for r in runs:
        t = r.data.tags
        out.setdefault((t["harness.row"], int(t["harness.seed"]), t["harness.config_hash"]), r)
    return out


def search_runs(c, exp_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = c.search_runs([exp_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def print_plan(suite: Suite, rows: Sequence[RowSpec], seeds: Sequence[int], cells: Sequence[Cell],
               done: dict, data_root: str | None, experiment: str) -> None:
    print(f"suite {suite.name!r} from {suite.path}, profile {suite.profile!r} -> experiment {experiment!r}; "
          f"data: {data_root or 'synthetic corpus'}; seeds {list(seeds)}")
    print(f"{'row':<28} {'model':<9} {'epochs':>6}  {'done':>4}  {'to run':>6}  seeds to run")
    total_epochs = 0
    n_pending = 0
    for r in rows:
        mine = [cell for cell in cells if cell.row == r.name]
        todo = [cell.seed for cell in mine if (cell.row, cell.seed, cell.config_hash) not in done]
        total_epochs += len(todo) * r.config.epochs
        n_pending += len(todo)
        print(f"{r.name:<28} {r.config.model:<9} {r.config.epochs:>6}  {len(mine) - len(todo):>4}  {len(todo):>6}  "
              f"{','.join(map(str, todo)) or '-'}")
    est = _estimate_seconds(done.values(), rows, cells, done)
    print(f"{len(cells)} cells: {len(cells) - n_pending} already done, {n_pending} to run "
          f"({total_epochs} training epochs){est}")


def _estimate_seconds(runs: Iterable, rows: Sequence[RowSpec], cells: Sequence[Cell], done: dict) -> str:
    """Seconds per epoch measured on finished cells of the same model, where there are any."""
    per_epoch: dict[str, list[float]] = {}
    for r in runs:
        m = r.data.metrics
        if "wall_time_s" in m and m.get("epochs_run"):
            per_epoch.setdefault(r.data.params.get("model", ""), []).append(m["wall_time_s"] / m["epochs_run"])
    if not per_epoch:
        return "; no finished cells yet to estimate the time from"
    secs, unknown = 0.0, 0
    for r in rows:
        todo = sum(1 for cell in cells if cell.row == r.name and (cell.row, cell.seed, cell.config_hash) not in done)
        rates = per_epoch.get(r.config.model)
        if rates:
            secs += todo * r.config.epochs * sum(rates) / len(rates)
        else:
            unknown += todo
    extra = f", plus {unknown} cell(s) of a model not timed yet" if unknown else ""
    return f"; about {secs / 60:.1f} min of training at the measured speed{extra}"

