"""Box plots of evaluation results (matplotlib, imported only when a plot is drawn).

The runtime image has no matplotlib: importing this module never needs it, and
:func:`write_boxplot` raises ImportError naming the install command when it is absent.
Drawing uses the Agg canvas on a bare :class:`~matplotlib.figure.Figure`, not pyplot, so
no global backend is switched and nothing needs a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from submission.evaluation.report import METRIC_TITLES, SCHEME_TITLES, EvaluationResult

#: Colours of the regions in every panel; other regions cycle through matplotlib's.
REGION_COLOURS: dict[str, str] = {
    "WT": "#4c9f38",
    "TC": "#e8a33d",
    "ET": "#d62d20",
    "RC": "#3b6fb6",
    "NETC": "#8e5ea2",
    "SNFH": "#2a9d8f",
}
_OTHER_COLOURS = ("#7f7f7f", "#17becf", "#bcbd22", "#9467bd")
_JITTER = 0.18


def _figure(n_panels: int) -> tuple[Any, list[Any]]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "box plots need matplotlib, which is not installed: pip install bratskit[eval]"
        ) from exc
    fig = Figure(figsize=(4.8 * n_panels, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, n_panels, squeeze=False)[0])


def _panel(ax: Any, result: EvaluationResult, metric: str, flagged: set[str]) -> None:
    """One box per region with its cases as jittered points; flagged cases drawn as x."""
    regions = result.regions
    data = [result.values(region, metric) for region in regions]
    boxes = ax.boxplot(
        data,
        positions=range(len(regions)),
        widths=0.55,
        showfliers=False,  # every case is drawn as a point already
        showmeans=True,
        patch_artist=True,
        medianprops={"color": "black", "linewidth": 2.2},
        meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black"},
    )
    colours = [
        REGION_COLOURS.get(region, _OTHER_COLOURS[i % len(_OTHER_COLOURS)])
        for i, region in enumerate(regions)
    ]
    for patch, colour in zip(boxes["boxes"], colours, strict=True):
        patch.set(facecolor=colour, alpha=0.35, edgecolor="black")
    rng = np.random.default_rng(0)  # same picture for the same result
    for i, (region, colour) in enumerate(zip(regions, colours, strict=True)):
        # The cases behind result.values(region, metric), in the same order.
        cases = [
            r["case"]
            for r in result.rows
            if r["region"] == region and r.get(metric) is not None and not np.isnan(r[metric])
        ]
        y = data[i]
        x = i + rng.uniform(-_JITTER, _JITTER, y.size)
        bad = np.array([case in flagged for case in cases], dtype=bool)
        ax.scatter(x[~bad], y[~bad], s=16, color=colour, edgecolor="black", lw=0.4, zorder=3)
        ax.scatter(x[bad], y[bad], s=30, marker="x", color="black", lw=1.2, zorder=3)
    title = METRIC_TITLES.get(metric, metric)
    n_cases = len(result.cases)
    ticks = [
        r if v.size == n_cases else f"{r}\n(n={v.size})" for r, v in zip(regions, data, strict=True)
    ]
    ax.set_xticks(range(len(regions)), ticks)
    ax.set_title(title)
    ax.set_ylabel(f"{title} (mm)" if "hd95" in metric else title)
    if "hd95" not in metric:
        ax.set_ylim(-0.03, 1.03)
    ax.grid(axis="y", alpha=0.3)


def _legend(fig: Any) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color="black", lw=2.2, label="median"),
        Line2D([], [], ls="", marker="D", mfc="white", mec="black", label="mean"),
        Line2D([], [], ls="", marker="o", mfc="0.6", mec="black", label="case"),
        Line2D([], [], ls="", marker="x", color="black", label="missing or failed case"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)


def write_boxplot(result: EvaluationResult, path: Path) -> Path:
    """Write a PNG: a Dice panel and an HD95 panel (the scheme's headline metrics), one
    box per region, cases as jittered points, the median a thick black line and the mean
    a white diamond; missing and failed cases as black crosses.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: the result holds no scores.
    """
    metrics = result.headline_metrics
    if not result.rows or not metrics:
        raise ValueError("no scores to plot: the evaluation scored no case")
    fig, axes = _figure(len(metrics))
    flagged = set(result.missing) | set(result.failed)
    for ax, metric in zip(axes, metrics, strict=True):
        _panel(ax, result, metric, flagged)
    n_flagged = sum(case in flagged for case in result.cases)
    fig.suptitle(
        f"{SCHEME_TITLES[result.scheme]}: {len(result.cases)} cases"
        + (f", {n_flagged} missing or failed" if n_flagged else "")
    )
    _legend(fig)
    path = Path(path)
    fig.savefig(path, format="png", dpi=120)
    return path
