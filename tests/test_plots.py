"""The report's figures: nothing overlaps, nothing is cut off, and the canvas fits its content
(measured on matplotlib's renderer: the window extents of the drawn artists)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.figures import confusion_figure, confusion_png
from harness.report.plots import delta_figure, forest_figure, plot_delta, plot_forest, val_curves_figure

LONG_ROWS = ["baseline-5ep", "cw-15ep", "cw-specaug-15ep", "cw-specaug-ls-30ep", "cw-specaug-30ep",
             "focal-specaug-30ep", "cw-specaug-aggressive-30ep-with-a-much-longer-name", "smallcnn-25ep",
             "advanced-full-50ep"]
CLAIMS = ["0.732,0.532", "0.577", "0.554", "0.662", "0.661", "0.573", "0.539", "0.4-0.5", ""]
REPORT_TITLE = "cw-specaug-aggressive-30ep\n(best mean test_f1_macro)\ntest confusion, sum of 5 seeds"


def table(names):
    rng = np.random.default_rng(0)
    points = {n: rng.normal(0.5 + 0.02 * i, 0.05, 5) for i, n in enumerate(names)}
    t = pd.DataFrame([dict(n=5, mean=points[n].mean(), ci_low=points[n].mean() - 0.08,
                           ci_high=points[n].mean() + 0.08, claimed=CLAIMS[i], baseline=i == 0)
                      for i, n in enumerate(names)], index=names)
    return t, points


def extents(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def assert_fits(fig, r, tol_px=3.0):
    """Everything drawn lies on the canvas, and the canvas is not much larger than what is drawn."""
    canvas, drawn = fig.bbox, fig.get_tightbbox(r).transformed(fig.dpi_scale_trans)
    assert drawn.x0 >= -tol_px and drawn.y0 >= -tol_px, "something is cut off at the left or bottom"
    assert drawn.x1 <= canvas.x1 + tol_px and drawn.y1 <= canvas.y1 + tol_px, "something is cut off at the right or top"
    assert drawn.width >= 0.93 * canvas.width and drawn.height >= 0.93 * canvas.height, "empty canvas around the plot"


@pytest.mark.parametrize("names", [LONG_ROWS[:3], LONG_ROWS], ids=["3 rows", "9 rows, long names"])
def test_the_forest_legend_covers_neither_the_x_label_nor_the_plot(names):
    t, points = table(names)
    fig = forest_figure(t, points, metric="test_f1_macro", baseline=names[0], ci_label="corrected",
                        experiment="seed_table", show_claims=True)
    r = extents(fig)
    (ax,), (legend,) = fig.axes, fig.legends
    box = legend.get_window_extent(r)
    assert not overlap(box, ax.xaxis.label.get_window_extent(r))
    assert not overlap(box, ax.get_window_extent(r))
    for tick in ax.get_xticklabels():
        assert not overlap(box, tick.get_window_extent(r))
    assert len(legend.get_texts()) == 4  # one seed, mean and CI, claim, baseline
    assert_fits(fig, r)
    # rows get room: the plot is at least 0.4 inch per row and 5 inches wide, however long the names
    a = ax.get_window_extent(r)
    assert a.height / fig.dpi >= 0.4 * len(names) and a.width / fig.dpi >= 5


@pytest.mark.parametrize("classes", [("neutral", "positive", "negative"),
                                     ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")])
def test_the_confusion_matrix_fills_its_canvas(classes):
    n = len(classes)
    fig = confusion_figure(np.arange(n * n).reshape(n, n).tolist(), classes, REPORT_TITLE)
    r = extents(fig)
    (ax,) = fig.axes
    a, canvas = ax.get_window_extent(r), fig.bbox
    assert a.width >= 0.65 * canvas.width and a.height >= 0.65 * canvas.height
    assert a.width * a.height >= 0.45 * canvas.width * canvas.height
    assert not overlap(ax.title.get_window_extent(r), a)
    assert_fits(fig, r)


def test_a_long_run_title_is_wrapped_to_the_figure():
    fig = confusion_figure([[3, 1, 0], [1, 5, 2], [0, 1, 9]], ("neutral", "positive", "negative"),
                           "test, resnet18, seed 12: macro-F1 0.532 " * 2)
    r = extents(fig)
    assert fig.axes[0].title.get_window_extent(r).width <= fig.bbox.width
    assert_fits(fig, r)


def test_val_curves_keep_the_legend_off_the_plot():
    rows = LONG_ROWS
    history = pd.DataFrame([dict(row=n, seed=s, step=e, value=0.3 + 0.01 * e) for n in rows for s in range(2)
                            for e in range(1, 11)])
    fig = val_curves_figure(history, rows, "seed_table: validation macro-F1 per epoch")
    r = extents(fig)
    (ax,), (legend,) = fig.axes, fig.legends
    assert not overlap(legend.get_window_extent(r), ax.get_window_extent(r))
    assert_fits(fig, r)


def delta_table(names):
    decisions = ["", "better", "worse", "equivalent", "undecided", "undecided", "better", "undecided", "worse"]
    rows = []
    for i, n in enumerate(names):
        d = 0.0 if i == 0 else (-1) ** i * 0.01 * i
        rows.append(dict(delta=math.nan if i == 0 or n == "smallcnn-25ep" else d, delta_low=d - 0.03,
                         delta_high=d + 0.03, decision=decisions[i] if n != "smallcnn-25ep" else "",
                         baseline=i == 0))
    return pd.DataFrame(rows, index=names)


@pytest.mark.parametrize("names", [LONG_ROWS[:3], LONG_ROWS], ids=["3 rows", "9 rows, long names"])
def test_the_delta_plot_shows_every_compared_row_its_decision_and_the_rope(names):
    t = delta_table(names)
    fig = delta_figure(t, metric="test_f1_macro", baseline=names[0], rope=0.01, ci_label="speaker", experiment="e")
    r = extents(fig)
    (ax,), (legend,) = fig.axes, fig.legends
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    assert len(labels) == len(names) - 1 and names[0] not in " ".join(labels)  # the baseline is the reference
    assert f"{names[1]}: better" in labels
    texts = [x.get_text() for x in legend.get_texts()]
    assert "ROPE ±0.01 (practically equivalent)" in texts and "better" in texts
    assert not overlap(legend.get_window_extent(r), ax.get_window_extent(r))
    assert_fits(fig, r)


def test_the_pngs_are_written(tmp_path):
    assert plot_delta(delta_table(LONG_ROWS[:3]), tmp_path / "d.png", metric="m", baseline=LONG_ROWS[0], rope=0.01,
                      ci_label="t", experiment="e").stat().st_size > 5_000
    t, points = table(LONG_ROWS[:2])
    assert plot_forest(t, points, tmp_path / "f.png", metric="m", baseline=LONG_ROWS[0], ci_label="t",
                       experiment="e", show_claims=False).stat().st_size > 5_000
    assert confusion_png([[1, 2], [3, 4]], ("a", "b"), tmp_path / "c.png", "t").stat().st_size > 2_000
