"""What suite and study files share: reading YAML safely and naming the bad key."""
from __future__ import annotations

from pathlib import Path

from harness.config import did_you_mean
from harness.errors import HarnessError

NOT_IN_FILES = {"seed", "fold", "data_root", "device"}  # set per cell, by the file's seeds and the command line


def read_yaml_mapping(path: Path, what: str) -> dict:
    """A suite or study file as a dict (safe_load only); HarnessError names the file."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise HarnessError(f"{path}: no such {what} file") from None
    except yaml.YAMLError as e:
        raise HarnessError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise HarnessError(f"{path}: expected a mapping of keys, got {type(doc).__name__}")
    return doc


def check_keys(d: dict, allowed: set[str], where: str, prefix: str = "") -> None:
    """Every key of `d` is allowed; otherwise one line naming the file, the key and a close match."""
    for key in d:
        if key not in allowed:
            raise HarnessError(f"{where}: unknown key {prefix + str(key)!r}{did_you_mean(str(key), allowed)}; "
                               f"expected one of {', '.join(sorted(allowed))}")
