"""Suite files (`experiments/*.yaml`): read and validated whole before anything runs.

A suite is data: a `base` config, `rows` (a name, `config` overrides, the
seed's `claimed_f1` and a `note`), `seeds`, and `profiles` that scale a whole
table down (or change its design) for a machine: `override` settings,
`epochs_scale`, and `scale_masks` (SpecAugment widths follow smaller
spectrograms, so that each row masks the same share as in the file). Every
error names the file, row and key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import RunConfig, did_you_mean
from harness.errors import ConfigError, HarnessError
from harness.yamlfile import NOT_IN_FILES, check_keys, read_yaml_mapping

TOP_KEYS = {"name", "description", "seeds", "base", "rows", "profiles", "data"}
DATA_KEYS = {"corpus", "root"}
ROW_KEYS = {"name", "config", "claimed_f1", "note"}
PROFILE_KEYS = {"description", "seeds", "override", "epochs_scale", "scale_masks"}


@dataclass(frozen=True)
class RowSpec:
    name: str
    config: RunConfig  # seed 0; each cell replaces the seed
    claimed_f1: str = ""  # "0.661", "0.732,0.532" or a range "0.4-0.5"
    note: str = ""
    profile_changes: str = ""  # what the profile changes in the row's training, e.g. "epochs 15 → 3, n_mels 128 → 32"


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    seeds: tuple[int, ...]
    rows: tuple[RowSpec, ...]
    profile: str = "full"
    description: str = ""
    data_root: str | None = None  # from the file's `data:` list (folders joined by ','); --data_root overrides it

    def row(self, name: str) -> RowSpec:
        return next(r for r in self.rows if r.name == name)


def load_suite(path: str | os.PathLike, profile: str | None = None) -> Suite:
    """Read and validate a whole suite file; HarnessError names file, row and key."""
    path = Path(path)
    where = str(path)
    doc = read_yaml_mapping(path, "suite")
    check_keys(doc, TOP_KEYS, where)
    if not isinstance(doc.get("rows"), list) or not doc["rows"]:
        raise HarnessError(f"{where}: key 'rows': expected a non-empty list of rows")
    base = doc.get("base") or {}
    if not isinstance(base, dict):
        raise HarnessError(f"{where}: key 'base': expected a mapping of run settings")
    _check_config_keys(base, f"{where}: base")
    data_root, corpus = _data_list(doc.get("data"), where)
    if corpus is not None:
        if "corpus" in base:
            raise HarnessError(f"{where}: key 'base': 'corpus' is set by the file's 'data' list: give it there only")
        base = {**base, "corpus": corpus}

    profiles = doc.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise HarnessError(f"{where}: key 'profiles': expected a mapping of profile name -> settings")
    profile_name = profile or "full"
    if profile is not None and profile not in profiles:
        raise HarnessError(f"{where}: no profile {profile!r}; profiles here: "
                           f"{', '.join(profiles) or 'none'}{did_you_mean(profile, profiles)}")
    prof = profiles.get(profile_name) or {}
    for pname, p in profiles.items():
        p = p or {}
        if not isinstance(p, dict):
            raise HarnessError(f"{where}: profile {pname!r}: expected a mapping with keys {sorted(PROFILE_KEYS)}")
        check_keys(p, PROFILE_KEYS, f"{where}: profile {pname!r}")
        _check_config_keys(p.get("override") or {}, f"{where}: profile {pname!r}: override")
        scale = p.get("epochs_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
            raise HarnessError(f"{where}: profile {pname!r}: key 'epochs_scale': expected a number > 0, got {scale!r}")
        if not isinstance(p.get("scale_masks", False), bool):
            raise HarnessError(f"{where}: profile {pname!r}: key 'scale_masks': expected true or false, "
                               f"got {p['scale_masks']!r}")

    seeds = _check_seeds(prof.get("seeds", doc.get("seeds", [0, 1, 2, 3, 4])),
                         f"{where}: profile {profile_name!r}" if "seeds" in prof else where)
    rows: list[RowSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(doc["rows"]):
        here = f"{where}: row #{i + 1}"
        if not isinstance(raw, dict):
            raise HarnessError(f"{here}: expected a mapping with keys {sorted(ROW_KEYS)}")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise HarnessError(f"{here}: key 'name': expected a non-empty string")
        here = f"{where}: row {name!r}"
        if name in seen:
            raise HarnessError(f"{here}: duplicate row name (row names must be unique)")
        seen.add(name)
        check_keys(raw, ROW_KEYS, here)
        overrides = raw.get("config") or {}
        if not isinstance(overrides, dict):
            raise HarnessError(f"{here}: key 'config': expected a mapping of run settings")
        _check_config_keys(overrides, here)
        values = {**base, **overrides, **(prof.get("override") or {})}
        scale = prof.get("epochs_scale", 1.0)
        if scale != 1.0:
            values["epochs"] = max(1, round(values.get("epochs", RunConfig.epochs) * scale))
        try:
            full = RunConfig.from_dict({**base, **overrides, "data_root": data_root})
            if prof.get("scale_masks"):  # the widths are checked against the profile's features once scaled
                features = RunConfig.from_dict({**values, "specaug_freq": 0, "specaug_time": 0, "data_root": data_root})
                values.update(scaled_masks(full, features, prof.get("override") or {}))
            cfg = RunConfig.from_dict({**values, "data_root": data_root})
        except ConfigError as e:
            raise HarnessError(f"{here}: key {e.key!r}: {e.problem}") from None
        rows.append(RowSpec(name=name, config=cfg, claimed_f1=_claim(raw.get("claimed_f1"), here),
                            note=str(raw.get("note") or ""), profile_changes=training_changes(full, cfg)))
    return Suite(name=str(doc.get("name") or path.stem), path=path, seeds=seeds, rows=tuple(rows),
                 profile=profile_name, description=str(doc.get("description") or ""), data_root=data_root)


def _data_list(value: Any, where: str) -> tuple[str | None, str | None]:
    """`data: [{corpus: ravdess, root: ~/RAVDESS}, ...]` as (roots joined by ',', names joined by ',').
    Roots may use ~ and $VARS; a relative root is relative to the folder the command runs in."""
    if value is None:
        return None, None
    if not isinstance(value, list) or not value:
        raise HarnessError(f"{where}: key 'data': expected a list of {{corpus: NAME, root: PATH}}")
    roots, names = [], []
    for i, item in enumerate(value):
        here = f"{where}: data #{i + 1}"
        if not isinstance(item, dict):
            raise HarnessError(f"{here}: expected a mapping with keys corpus and root")
        check_keys(item, DATA_KEYS, here)
        root = item.get("root")
        if not isinstance(root, str) or not root.strip():
            raise HarnessError(f"{here}: key 'root': expected the corpus folder (or a .csv manifest)")
        if "," in root:
            raise HarnessError(f"{here}: key 'root': a path with ',' cannot be read (',' separates corpora)")
        roots.append(os.path.expanduser(os.path.expandvars(root.strip())))
        names.append(str(item.get("corpus") or "auto").strip())
    return ",".join(roots), ",".join(names)


def scaled_masks(full: RunConfig, profiled: RunConfig, override: dict) -> dict[str, int]:
    """SpecAugment mask widths that cover the same share of the profile's spectrogram as of the row's:
    the frequency mask scaled by the mel bins, the time mask by the frames per second (sr / hop). A
    width the profile sets itself is kept; a non-zero width stays at least 1; rows without SpecAugment
    are left as they are."""
    def scaled(width: int, ratio: float) -> int:
        return max(1, round(width * ratio)) if width else 0

    out: dict[str, int] = {}
    if not profiled.use_specaug:
        return out
    if "specaug_freq" not in override:
        out["specaug_freq"] = min(profiled.n_mels, scaled(full.specaug_freq, profiled.n_mels / full.n_mels))
    if "specaug_time" not in override:
        ratio = (profiled.sr / profiled.hop_length) / (full.sr / full.hop_length)
        out["specaug_time"] = scaled(full.specaug_time, ratio)
    return out


# How a run is evaluated, not what is trained: a profile may change these and still test a row's claim.
EVALUATION_FIELDS = ("cv_folds", "fold", "seed", "data_root", "device")


def training_changes(full: RunConfig, profiled: RunConfig) -> str:
    """What a profile changes in what a row trains ("epochs 15 → 3, n_mels 128 → 32"); empty if nothing."""
    a, b = full.to_dict(), profiled.to_dict()
    return ", ".join(f"{k} {a[k]} → {b[k]}" for k in a if k not in EVALUATION_FIELDS and a[k] != b[k])


def _check_config_keys(d: dict, where: str) -> None:
    fields = set(RunConfig.field_names())
    for key in d:
        if key in NOT_IN_FILES:
            raise HarnessError(f"{where}: key {key!r} is set on the command line or by the suite's `seeds`, "
                               f"not in a row")
        if key not in fields:
            raise HarnessError(f"{where}: unknown key {key!r}{did_you_mean(str(key), fields - NOT_IN_FILES)}")


def _check_seeds(seeds: Any, where: str) -> tuple[int, ...]:
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise HarnessError(f"{where}: key 'seeds': expected a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise HarnessError(f"{where}: key 'seeds': duplicate seeds in {seeds}")
    return tuple(seeds)


def _claim(value: Any, where: str) -> str:
    """The seed's single-run number(s) as a tag string; validated."""
    if value is None:
        return ""
    nums = value if isinstance(value, list) else [value]
    if isinstance(value, str):
        parts = value.split("-")
        try:
            lo, hi = (float(p) for p in parts)
            if lo <= hi:
                return f"{lo:g}-{hi:g}"
        except ValueError:
            pass
        raise HarnessError(f"{where}: key 'claimed_f1': expected a number, a list of numbers or a range "
                           f"'low-high', got {value!r}")
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) and 0 <= n <= 1 for n in nums) or not nums:
        raise HarnessError(f"{where}: key 'claimed_f1': expected F1 values in [0, 1], got {value!r}")
    return ",".join(f"{float(n):g}" for n in nums)
