"""Pareto front of candidates over several objectives (accuracy up, latency down) and its plot."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _objective_matrix(
    points: Sequence[Mapping[str, float]], maximize: Sequence[str], minimize: Sequence[str]
) -> np.ndarray:
    """(N, K) array where larger is better in every column."""
    cols = [[float(p[k]) for k in maximize] + [-float(p[k]) for k in minimize] for p in points]
    return np.asarray(cols, dtype=np.float64).reshape(len(points), len(maximize) + len(minimize))


def pareto_front(
    points: Sequence[Mapping[str, float]],
    maximize: Sequence[str] = (),
    minimize: Sequence[str] = (),
) -> list[int]:
    """Indices (ascending) of the non-dominated points.

    A point is dominated when another is at least as good in every objective and strictly better
    in one; equal points do not dominate each other, so duplicates on the front are all kept.
    """
    if not maximize and not minimize:
        raise ValueError("pareto_front needs at least one objective in maximize or minimize")
    obj = _objective_matrix(points, maximize, minimize)
    if len(obj) == 0:
        return []
    # dominated[i, j]: point j dominates point i.
    geq = (obj[None, :, :] >= obj[:, None, :]).all(axis=2)
    gt = (obj[None, :, :] > obj[:, None, :]).any(axis=2)
    return [int(i) for i in np.flatnonzero(~(geq & gt).any(axis=1))]


def plane_front(
    points: Sequence[Mapping[str, float]], x_key: str, y_key: str, maximize_y: bool = True
) -> list[int]:
    """Front of the two plotted objectives only (x minimised; y maximised unless told), sorted
    by x: the points a line through a 2D plot may join without crossing a dominating point."""
    ys = ([y_key], []) if maximize_y else ([], [y_key])
    front = pareto_front(points, maximize=ys[0], minimize=[x_key, *ys[1]])
    return sorted(front, key=lambda i: (float(points[i][x_key]), i))


def pareto_figure(
    points: Sequence[Mapping[str, float]],
    x_key: str,
    y_key: str,
    labels: Sequence[str] | None = None,
    ylabel: str | None = None,
    maximize_y: bool = True,
) -> Figure:
    """Scatter all points (x_key vs y_key) and draw, as a line labelled "Pareto front", the
    front of those two objectives (``plane_front``); a front over more objectives cannot be
    drawn on two axes without joining points the picture shows dominated."""
    x = np.array([float(p[x_key]) for p in points])
    y = np.array([float(p[y_key]) for p in points])
    front = plane_front(points, x_key, y_key, maximize_y)
    fig = Figure(figsize=(5, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(x, y, s=18, c="0.6", label="candidates")
    ax.plot(x[front], y[front], "o-", c="C3", ms=5, label="Pareto front")
    for i, text in enumerate(labels or []):
        ax.annotate(text, (x[i], y[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(x_key)
    ax.set_ylabel(ylabel or y_key)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def plot_pareto(
    points: Sequence[Mapping[str, float]],
    x_key: str,
    y_key: str,
    path: str | Path,
    labels: Sequence[str] | None = None,
    ylabel: str | None = None,
    maximize_y: bool = True,
) -> Path:
    """``pareto_figure`` written as a PNG to ``path`` (folders created); returns the path."""
    fig = pareto_figure(points, x_key, y_key, labels, ylabel, maximize_y)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
