"""What every benchmark shares: the machine and load lines of its header, its goal figures and summary, the
corpus it reads and a scratch folder that keeps the user's caches and stores untouched. Not a benchmark."""
from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def machine_lines() -> list[str]:
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [f"machine : {platform.node()}  {platform.platform()}",
            f"cpu     : {cpu_model()}, {os.cpu_count()} cores ({usable} usable)",
            f"torch   : {torch.__version__}, {torch.get_num_threads()} threads, cuda: {gpu}",
            f"python  : {platform.python_version()}",
            f"load avg: {load_average()} (1/5/15 min) at start"]


@dataclass(frozen=True)
class Ratio:
    name: str
    value: float
    goal: float
    higher_is_better: bool = False

    @property
    def ok(self) -> bool:
        return self.value >= self.goal if self.higher_is_better else self.value <= self.goal

    def line(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        return f"  {self.name:<46} {self.value:>8.4f}   goal {op} {self.goal:<6g} {'PASS' if self.ok else 'MISS'}"


def print_summary(ratios: list[Ratio], notes: list[str]) -> None:
    print("\n=== summary " + "=" * 60)
    for r in ratios:
        print(r.line())
    for n in notes:
        print(f"  {n}")
    print(f"  load avg at end: {load_average()} (1/5/15 min)")


def corpus_root(synth_cache: Path) -> tuple[Path, str]:
    """The corpus a benchmark reads: RAVDESS_ROOT when set, else the synthetic corpus (generated into
    `synth_cache`); with a label for its header."""
    from harness.train.data import synthetic_root

    env_root = os.environ.get("RAVDESS_ROOT")
    if env_root:
        return Path(env_root).expanduser(), f"RAVDESS_ROOT={env_root} (real audio)"
    print("RAVDESS_ROOT unset: generating the synthetic corpus ...", flush=True)
    return synthetic_root(synth_cache), "synthetic corpus (harness.synth, 8 actors)"

@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder for the harness cache and a throwaway MLflow store, set in the
    environment before harness is imported (spawned workers inherit it): the user's
    `.cache/`, `mlflow.db` and `optuna.db` are never touched. Deleted at the end."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["HARNESS_CACHE"] = str(tmp / "cache")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'unused-mlflow.db'}"
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
