"""What every figure shares (headless matplotlib, a plotting area sized to its content, PNG out),
and a run's confusion matrix, which a training run logs and the report shows for its best row.

Every figure is sized to its content: the plotting area gets a size chosen for the data (so
much per row, per class, per epoch), and the figure grows around it by whatever its labels,
title and legend need (`fit`, on matplotlib's constrained layout). The `*_figure` functions
build a figure (for tests to measure); `*_png` / `plot_*` save it as a PNG.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

DPI = 110


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def fit(fig, ax, width: float, height: float, passes: int = 4) -> None:
    """Resize `fig` so that `ax`'s plotting area is `width` x `height` inches: the margins that
    constrained layout leaves for labels, title and legend are measured and added around it."""
    for _ in range(passes):
        fig.draw_without_rendering()  # runs the layout
        pos = ax.get_position()  # after the layout and any fixed aspect
        fw, fh = fig.get_size_inches()
        dw, dh = width - pos.width * fw, height - pos.height * fh
        if abs(dw) < 0.01 and abs(dh) < 0.01:
            return
        fig.set_size_inches(max(1.0, fw + dw), max(1.0, fh + dh))


def save(fig, path: Path) -> Path:
    plt = pyplot()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


CELL_IN = 0.8  # inches per confusion-matrix cell


def confusion_figure(confusion: list[list[int]], classes: tuple[str, ...], title: str):
    """The matrix fills the canvas: its size follows the class count, the title is wrapped to
    its width (each given line on its own), the labels get what they need around it."""
    plt = pyplot()
    cm = np.array(confusion)
    n = max(1, len(classes))
    side = max(2.8, CELL_IN * n)
    fontsize = 9
    # wrapped to about the figure's width (the matrix and its row labels), 0.55 em per character
    width_chars = max(16, int((side + 0.8) * 72 / (0.55 * fontsize)))
    lines = [w for line in str(title).splitlines() for w in (textwrap.wrap(line, width_chars) or [""])]
    fig, ax = plt.subplots(figsize=(side + 1.5, side + 1.5), dpi=DPI, layout="constrained")
    ax.imshow(cm, cmap="Blues", vmin=0)
    # upright tick labels where every class name fits its cell, else slanted
    slant = max((len(c) for c in classes), default=0) * 0.55 * 9 / 72 > side / n * 0.95
    ax.set_xticks(range(len(classes)), classes, rotation=45 if slant else 0, ha="right" if slant else "center",
                  rotation_mode="anchor" if slant else "default")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("\n".join(lines), fontsize=fontsize)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=9)
    fit(fig, ax, width=side, height=side)
    return fig


def confusion_png(confusion: list[list[int]], classes: tuple[str, ...], path: Path, title: str) -> Path:
    return save(confusion_figure(confusion, classes, title), path)
