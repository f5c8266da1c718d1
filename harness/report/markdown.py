"""Numbers and tables as markdown text."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

# --- number formatting ---------------------------------------------------------------

def num(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def fmt_ci(low: float, high: float) -> str:
    return f"[{num(low)}, {num(high)}]"


def fmt_delta(d: float) -> str:
    return f"{d:+.3f}"


def na(reason: str) -> str:
    return f"n/a ({reason})" if reason else "n/a"


def md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], lines: Iterable[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(md_cell(c) for c in line) + " |" for line in lines]
    return out



def param_text(v) -> str:
    """A sampled value as a reader wants it: 2.744, 4.312e-04, 23 (params come back as strings)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return str(v) if f.is_integer() and "." not in str(v) else f"{f:.4g}"
