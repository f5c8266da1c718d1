"""Errors the user can act on.

Anything raised as a `HarnessError` is printed by the CLI as one line on stderr
(no traceback) and exits with status 2; everything else is a bug.
"""
from __future__ import annotations


class HarnessError(Exception):
    """Bad input detected before any work starts: print one line, exit 2."""


class ConfigError(HarnessError):
    """A configuration value is invalid.

    `key` is the config field (the CLI flag without its dashes, the suite/study
    YAML key), so callers can prefix where it came from (a flag, a file/row).
    """

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


class DataError(HarnessError):
    """The corpus is missing, empty, misnamed or unreadable."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss: the run stops and is marked FAILED."""
