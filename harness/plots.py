"""The report's figures, and a run's confusion matrix: matplotlib only, data in, PNG out."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .stats import parse_claim


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_forest(t: pd.DataFrame, points: Mapping[str, Sequence[float]], path: Path, *, metric: str, baseline: str,
                ci_label: str, experiment: str, show_claims: bool) -> Path:
    """Mean and CI per row (`t`: columns n, mean, ci_low, ci_high, claimed, baseline), each seed as a dot
    (`points`), the baseline mean as a line, the seed's claims as x where `show_claims`."""
    plt = _pyplot()
    y = np.arange(len(t))[::-1]  # first row on top
    fig, ax = plt.subplots(figsize=(8.5, 2.4 + 0.5 * len(t)), dpi=110)
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
            ax.annotate("no finished seed", (0.01, yi), xycoords=("axes fraction", "data"), va="center",
                        fontsize=8, color="grey")
        ax.scatter(seeds, np.full(len(seeds), yi), s=12, color="grey", alpha=0.6, label=once("one seed"))
        if r["n"] >= 2:
            ax.errorbar(r["mean"], yi, xerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]], fmt="o",
                        color="C0", capsize=4, label=once(f"mean and 95% CI ({ci_label})"))
        if r["claimed"] and show_claims:
            try:
                claims = parse_claim(r["claimed"])
            except ValueError:
                claims = []
            for a, b in claims:
                if a != b:
                    ax.plot([a, b], [yi + 0.2] * 2, color="C3", lw=1.5)
                ax.scatter([a, b] if a != b else [a], [yi + 0.2] * (2 if a != b else 1), marker="x", color="C3",
                           s=50, zorder=3, label=once("seed's single-run claim"))
    base = t.loc[baseline, "mean"] if baseline in t.index else math.nan
    if math.isfinite(base):
        ax.axvline(base, ls="--", color="C2", label=f"baseline mean ({baseline})")
    ax.set_yticks(y, [f"{row} (n={int(r['n'])}{', baseline' if r['baseline'] else ''})" for row, r in t.iterrows()])
    ax.set_ylim(-0.7, len(t) - 0.4)
    ax.set_xlabel(metric)
    ax.set_title(f"{experiment}: {metric} per row, mean and 95% CI over seeds", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_val_curves(history: pd.DataFrame, order: Sequence[str], path: Path, title: str,
                    metric: str = "val_f1_macro") -> Path:
    """Validation macro-F1 per epoch: mean over seeds with a min–max band, one colour per row."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8.5, 5), dpi=110)
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
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", title="line = mean over seeds, band = min–max", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def confusion_png(confusion: list[list[int]], classes: tuple[str, ...], path: Path, title: str) -> Path:
    plt = _pyplot()
    cm = np.array(confusion)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(classes), 0.8 + 0.6 * len(classes)), dpi=110)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
