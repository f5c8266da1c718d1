"""Every benchmark's quick path runs to the end, so that a refactor cannot break one unseen (issue 39).

A quick run measures nothing worth a goal on a shared CI machine, so no figure is asserted and `--check` is
not passed: the specification is that each script's quick path exits 0 on the synthetic corpus.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

# Each benchmark script (relative to benchmarks/) and the arguments of its quick path. A new benchmark is one
# line here, e.g. "field.py": ["--quick"]; a script in no list below fails the first test. Where a flag allows,
# the quick path is cut further (fewer cells, clips, replications; one worker process, as each test shares the
# machine with another): the code path is what is tested, and `make test` stays within 10 minutes.
QUICK = {
    "pipeline.py": ["--quick"],
    "workers.py": ["--quick"],
    "overhead.py": ["--quick", "--cells", "2", "--filler", "100"],
    "racing.py": ["--quick", "--workers", "1"],
    "precision.py": ["--quick", "--replications", "2", "--workers", "1"],
    "frontends.py": ["--quick", "--clips", "1"],
    "pruning.py": ["--quick"],
    "scaleout.py": ["--quick"],
    "field.py": ["--quick"],
    "predict.py": ["--quick"],
    "extraction.py": ["--quick"],
    "calibration/population_term.py": ["--draws", "50"],
    "calibration/stratified_anova.py": ["--tables", "20"],
}

# Scripts this file does not run, and why.
NOT_RUN_HERE = {
    "first_pass.py": "part (d) of pipeline.py, run by its quick path",
    "overhead_stores.py": "the stores of overhead.py, run by its quick path",
    "soak.py": "tests/test_soak.py runs its quick path, with --check",
    "common.py": "not a benchmark: the header, summary and scratch folder every benchmark shares",
    "calibration/calibration.py": "its quick path trains 3 populations per setting: minutes, not CI's; --load is "
                                   "tests/test_calibration_load.py",
    "calibration/calibration_estimators.py": "the figures of calibration.py, run by it",
    "calibration/calibration_split.py": "the split of calibration.py --load, run by it",
    "calibration/seed_families.py": "needs a saved calibration run; tests/test_seed_families.py tests its figures",
}


def test_every_benchmark_script_is_run_here_or_says_why_not():
    scripts = {p.relative_to(BENCHMARKS).as_posix() for p in BENCHMARKS.glob("**/*.py")}
    assert scripts == set(QUICK) | set(NOT_RUN_HERE)
    assert not set(QUICK) & set(NOT_RUN_HERE)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(QUICK))
def test_the_quick_path_of_each_benchmark_exits_0(script, tmp_path):
    # The synthetic corpus, whatever CI sets: the same work on every machine, and no real audio to read.
    env = {k: v for k, v in os.environ.items() if k not in ("RAVDESS_ROOT", "TUREV_ROOT")}
    p = subprocess.run([sys.executable, str(BENCHMARKS / script), *QUICK[script]], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"{script} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
