"""What the EDA of both datasets shares: the output figure canvas, deterministic subsets,
histogram percentiles, summary statistics and a few plot helpers.

Figures are built with matplotlib's object API on an Agg canvas, never registered with pyplot,
so no figure stays open and nothing depends on a display or the global backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from radiodiff.core.errors import DataError

PERCENTILES = (1, 10, 50, 90, 99)
SPLIT_COLORS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


def check_root(root, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: {what} folder not found")
    if not any(root.iterdir()):
        raise DataError(f"{root}: {what} folder is empty")
    return root


def figure(**kw) -> Figure:
    fig = Figure(layout="constrained", **kw)
    FigureCanvasAgg(fig)
    return fig


def evenly_spaced(items: list, k: int) -> list:
    """At most ``k`` items, evenly spaced over ``items`` (first and last included), in order."""
    n = len(items)
    if n <= k:
        return list(items)
    if k == 1:
        return [items[0]]
    return [items[i] for i in np.unique(np.linspace(0, n - 1, k).round().astype(int))]


def hist_percentiles(hist: np.ndarray, qs=PERCENTILES) -> dict[str, int]:
    """Percentiles of integer values given their histogram (index = value), by the inverted
    CDF: the smallest value whose cumulative share reaches q %."""
    hist = np.asarray(hist, dtype=np.float64)
    total = hist.sum()
    if total == 0:
        return {f"p{q}": None for q in qs}
    cdf = np.cumsum(hist) / total
    return {f"p{q}": int(np.searchsorted(cdf, q / 100.0 - 1e-12)) for q in qs}


def stats(values) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "median": None, "max": None}
    return {
        "mean": round(float(v.mean()), 4),
        "std": round(float(v.std()), 4),
        "min": round(float(v.min()), 4),
        "median": round(float(np.median(v)), 4),
        "max": round(float(v.max()), 4),
    }


def density_bins(n_points: int, most: int) -> int:
    """Bins per axis of a 2D histogram: about 1.5 points per bin, between 8 and ``most``."""
    return int(np.clip(np.sqrt(n_points / 1.5), 8, most))


def bar_labels(ax, bars) -> None:
    ax.bar_label(bars, fontsize=7, padding=1)


def percentile_lines(ax, pct: dict) -> None:
    for k, v in pct.items():
        if v is not None:
            ax.axvline(v, color="tab:red", lw=0.8, ls="--")
            ax.text(v + 1, 0.97, k, transform=ax.get_xaxis_transform(), fontsize=7, color="tab:red", va="top")
