"""Study files (`studies/*.yaml`): read and validated whole before anything runs.

A study file is data: the base config (inline `config:` and/or a `suite:` +
`row:`), the search space, the objective, sampler, pruner, budget, training
seed and `profiles:` (e.g. a cheap `quick` one). Every error names the file and
key; every profile is checked, not only the one asked for.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from harness.config import RunConfig, did_you_mean
from harness.errors import ConfigError, HarnessError
from harness.yamlfile import NOT_IN_FILES, check_keys, read_yaml_mapping

if TYPE_CHECKING:
    import optuna

TOP_KEYS = {"name", "description", "base", "params", "objective", "sampler", "pruner", "budget", "seed", "profiles"}
BASE_KEYS = {"suite", "row", "config"}
PARAM_KEYS = {"type", "low", "high", "log"}
PROFILE_KEYS = {"description", "config", "params", "sampler", "pruner", "budget", "seed"}
BUDGET_KEYS = {"n_trials", "timeout"}
# Per-epoch metric -> (direction, the key of training.run's result holding its best-epoch value).
OBJECTIVES = {"val_f1_macro": ("maximize", "best_val_f1_macro")}
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler"}  # optuna.samplers classes
PRUNERS = {"median": "MedianPruner", "hyperband": "HyperbandPruner", "none": "NopPruner"}  # optuna.pruners


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
    check_keys(doc, TOP_KEYS, file, "")
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
        check_keys(prof, PROFILE_KEYS, file, at)
        values = {**base_values, **_config_values(prof.get("config") or {}, file, f"{at}config")}
        prof_params = _profile_params(doc["params"], prof.get("params"), file, at) if "params" in prof else params
        settings = {**top, **{k: prof[k] for k in top if k in prof},
                    "budget": {**top_budget, **_budget(prof.get("budget") or {}, file, f"{at}budget")}}
        specs[pname] = _spec(path, f"{name}-{pname}" if pname else name, pname or "full", values, data_root,
                             prof_params, objective, settings, at, base_suite)
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
    if base.cv_folds:
        raise _bad(file, f"{at}config" if at else "base", "cv_folds: a study selects on one validation split per "
                                                          "trial; cross-validation is for suites (study confirm)")
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
    check_keys(base, BASE_KEYS, file, "base.")
    if ("suite" in base) != ("row" in base):
        raise _bad(file, "base", "`suite:` and `row:` go together (the row of that suite file)")
    values: dict[str, Any] = {}
    suite_path = None
    if "suite" in base:
        from harness.suite.file import load_suite

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


def _profile_params(top: dict, raw: Any, file: str, at: str) -> tuple[Param, ...]:
    """A profile's search space: the file's `params`, with what it names replaced (`specaug_freq: {high: 8}`:
    mask widths scaled to a profile's smaller spectrograms). It searches the same fields, never others."""
    if not isinstance(raw, dict) or not raw:
        raise _bad(file, f"{at}params", "expected a mapping of searched field -> {type, low, high, log}")
    for name in raw:
        if name not in top:
            raise _bad(file, f"{at}params.{name}", f"not searched by this study; a profile changes the ranges of "
                                                   f"its params ({', '.join(map(str, top))}), not which ones")
    merged = {name: {**top[name], **spec} if isinstance(top[name], dict) and isinstance(spec, dict) else spec
              for name, spec in raw.items()}
    return _params({**top, **merged}, file, at)


def _params(raw: Any, file: str, at: str = "") -> tuple[Param, ...]:
    if not isinstance(raw, dict) or not raw:
        raise _bad(file, "params", "expected a mapping of RunConfig field -> {type, low, high, log}")
    types = {f.name: f.type for f in dataclasses.fields(RunConfig)}
    out = []
    for name, p in raw.items():
        key = f"{at}params.{name}"
        if name in NOT_IN_FILES:
            raise _bad(file, key, "cannot be searched (set by the study's `seed` key or the command line)")
        if name not in types:
            raise _bad(file, key, f"not a RunConfig field{did_you_mean(str(name), set(types) - NOT_IN_FILES)}")
        if types[name] not in ("int", "float"):
            raise _bad(file, key, f"only numeric fields can be searched; {name} is a {types[name]}")
        if not isinstance(p, dict):
            raise _bad(file, key, f"expected a mapping with keys {', '.join(sorted(PARAM_KEYS))}")
        check_keys(p, PARAM_KEYS, file, f"{key}.")
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
    check_keys(value, BUDGET_KEYS, file, f"{key}.")
    n_trials, timeout = value.get("n_trials"), value.get("timeout")
    if n_trials is not None and (not _is_int(n_trials) or n_trials < 1):
        raise _bad(file, f"{key}.n_trials", f"expected an integer >= 1, got {n_trials!r}")
    if timeout is not None and (not _is_number(timeout) or timeout <= 0):
        raise _bad(file, f"{key}.timeout", f"expected seconds > 0, got {timeout!r}")
    return {k: float(v) if k == "timeout" else v for k, v in value.items() if v is not None}


def _bad(file: str, key: str, problem: str) -> HarnessError:
    return HarnessError(f"{file}: key '{key}': {problem}")


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
