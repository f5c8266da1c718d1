"""The soak benchmark's quick form on local sqlite: kill -9 of workers mid-cell at random times, then a rerun;
every cell finished exactly once, none lost, none left RUNNING (`benchmarks/soak.py --check` exits 1 otherwise)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_quick_soak_on_sqlite_loses_and_duplicates_nothing():
    # 8 cells (2 seeds of its 4 rows) carry the quick soak's 3 kills, at 1.6, 3.2 and 4.8 cells done.
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "soak.py"), "--quick", "--backend", "sqlite",
                        "--cells", "8", "--check"], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    assert re.search(r"cells finished exactly once +8 of 8", p.stdout), p.stdout[-4000:]
    assert re.search(r"kills done / planned +3 / 3 +PASS", p.stdout)
