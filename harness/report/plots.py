"""The report's figures: matplotlib only, data in, PNG out (shared helpers in `harness.figures`).

Every figure is sized to its content: the plotting area gets a size chosen for the data (so
much per row, per class, per epoch), and the figure grows around it by whatever its labels,
title and legend need (`harness.figures.fit`, on matplotlib's constrained layout). Legends sit outside the
plotting area, so they cover neither data nor axis labels. The `*_figure` functions build a
figure (for tests to measure); `plot_*` save it as a PNG.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from harness.figures import DPI, fit, pyplot, save
from harness.stats import parse_claim


def forest_figure(t: pd.DataFrame, points: Mapping[str, Sequence[float]], *, metric: str, baseline: str,
                  ci_label: str, experiment: str, show_claims: bool):
    """Mean and CI per row (`t`: columns n, mean, ci_low, ci_high, claimed, baseline), each seed as a dot
    (`points`), the baseline mean as a line, the seed's claims as x where `show_claims`."""
    plt = pyplot()
    y = np.arange(len(t))[::-1]  # first row on top
    fig, ax = plt.subplots(figsize=(8, 4), dpi=DPI, layout="constrained")
    labelled: set[str] = set()

    def once(label: str) -> str:
        # one legend entry per kind of mark: matplotlib skips labels starting with "_"
        if label in labelled:
            return "_"
        labelled.add(label)
        return label

    for yi, (row, r) in zip(y, t.iterrows()):
        seeds = np.asarray(points.get(row, ()), dtype=float)
        if not len(seeds):
            ax.annotate("no finished run", (0.01, yi), xycoords=("axes fraction", "data"), va="center",
                        fontsize=8, color="grey")
        ax.scatter(seeds, np.full(len(seeds), yi), s=12, color="grey", alpha=0.6,
                   label=once("one run (a seed, or a seed's fold)"))
        if math.isfinite(r["ci_low"]):
            ax.errorbar(r["mean"], yi, xerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]], fmt="o",
                        color="C0", capsize=4, label=once(f"mean and 95% CI ({ci_label})"))
        if r["claimed"] and show_claims:
            try:
                claims = parse_claim(r["claimed"])
            except ValueError:
                claims = []
            for a, b in claims:
                if a != b:
                    ax.plot([a, b], [yi + 0.25] * 2, color="C3", lw=1.5)
                ax.scatter([a, b] if a != b else [a], [yi + 0.25] * (2 if a != b else 1), marker="x", color="C3",
                           s=50, zorder=3, label=once("seed's single-run claim"))
    base = t.loc[baseline, "mean"] if baseline in t.index else math.nan
    if math.isfinite(base):
        ax.axvline(base, ls="--", color="C2", label=f"baseline mean ({baseline})")
    ax.set_yticks(y, [f"{row} (n={int(r['n'])}{', baseline' if r['baseline'] else ''})" for row, r in t.iterrows()])
    ax.set_ylim(-0.6, len(t) - 0.35)
    ax.set_xlabel(metric)
    ax.set_title(f"{experiment}: {metric} per row, mean and 95% CI over runs", fontsize=10, loc="left")
    ax.grid(axis="x", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:  # below the x label, in the space the layout keeps for it
        fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    fit(fig, ax, width=6.0, height=0.3 + 0.45 * max(1, len(t)))
    return fig


def plot_forest(t: pd.DataFrame, points: Mapping[str, Sequence[float]], path: Path, *, metric: str, baseline: str,
                ci_label: str, experiment: str, show_claims: bool) -> Path:
    return save(forest_figure(t, points, metric=metric, baseline=baseline, ci_label=ci_label,
                               experiment=experiment, show_claims=show_claims), path)


DECISION_COLOURS = {"better": "C2", "worse": "C3", "equivalent": "C0", "undecided": "grey"}


def delta_figure(t: pd.DataFrame, *, metric: str, baseline: str, rope: float, ci_label: str, experiment: str):
    """Each row's paired Δ vs the baseline with its 95% CI, the ROPE band and the decision (`t`: columns
    delta, delta_low, delta_high, decision, baseline); rows without a Δ are named, not drawn."""
    plt = pyplot()
    rows = t[~t["baseline"].astype(bool)]
    y = np.arange(len(rows))[::-1]
    fig, ax = plt.subplots(figsize=(8, 4), dpi=DPI, layout="constrained")
    ax.axvspan(-rope, rope, color="C0", alpha=0.12, label=f"ROPE ±{rope:g} (practically equivalent)")
    ax.axvline(0, color="black", lw=0.8)
    shown: set[str] = set()
    for yi, (row, r) in zip(y, rows.iterrows()):
        if not math.isfinite(r["delta"]):
            ax.annotate("no paired Δ", (0.01, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8,
                        color="grey")
            continue
        decision = r["decision"] or "undecided"
        colour = DECISION_COLOURS.get(decision, "grey")
        low, high = r["delta_low"], r["delta_high"]
        err = [[r["delta"] - low], [high - r["delta"]]] if math.isfinite(low) else None
        ax.errorbar(r["delta"], yi, xerr=err, fmt="o", color=colour, capsize=4,
                    label=decision if decision not in shown else "_")
        shown.add(decision)
    ax.set_yticks(y, [f"{row}: {r['decision'] or 'n/a'}" for row, r in rows.iterrows()])
    ax.set_ylim(-0.6, max(len(rows), 1) - 0.35)
    ax.set_xlabel(f"Δ {metric} vs {baseline} (row − baseline)")
    ax.set_title(f"{experiment}: paired Δ vs {baseline}, 95% CI ({ci_label}), decision", fontsize=10, loc="left")
    ax.grid(axis="x", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fit(fig, ax, width=6.0, height=0.3 + 0.45 * max(1, len(rows)))
    return fig


def plot_delta(t: pd.DataFrame, path: Path, **kw) -> Path:
    return save(delta_figure(t, **kw), path)


def val_curves_figure(history: pd.DataFrame, order: Sequence[str], title: str, metric: str = "val_f1_macro"):
    """Validation macro-F1 per epoch: mean over seeds with a min–max band, one colour per row."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(10, 5), dpi=DPI, layout="constrained")
    colours = plt.get_cmap("tab20" if len(order) > 10 else "tab10")
    for i, row in enumerate(order):
        h = history[history["row"] == row]
        if h.empty:
            continue
        g = h.groupby("step")["value"]
        mean, lo, hi = g.mean(), g.min(), g.max()
        colour = colours(i % colours.N)
        ax.plot(mean.index, mean.to_numpy(), color=colour, label=f"{row} (n={h['seed'].nunique()})")
        ax.fill_between(mean.index, lo.to_numpy(), hi.to_numpy(), color=colour, alpha=0.15)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"validation macro-F1 ({metric})")
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:  # beside the plot, in row order: it covers no curve
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False,
                   title="line = mean over seeds\nband = min–max", title_fontsize=8, alignment="left")
    fit(fig, ax, width=6.5, height=4.0)
    return fig


def plot_val_curves(history: pd.DataFrame, order: Sequence[str], path: Path, title: str,
                    metric: str = "val_f1_macro") -> Path:
    return save(val_curves_figure(history, order, title, metric), path)
