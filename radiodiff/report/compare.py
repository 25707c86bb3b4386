"""``radiodiff compare``: two folders of maps scored one against the other
(:mod:`radiodiff.evaluate.compare`), written as the Enhanced suite's comparison tool wrote them:
``comparison_statistics.csv`` (mean, std, min, max, median per metric), ``detailed_metrics.csv``
(one row per pair), ``metrics_distributions.png``, ``relative_error_distribution.png``,
``metrics_boxplot.png`` and ``sample_comparisons.png`` (truth | prediction | |error| in dB).

Everything is read and checked before anything is written, and the folder is written atomically:
a bad input leaves ``out`` as it was."""

from __future__ import annotations

import csv
import math
from functools import partial
from pathlib import Path

import numpy as np

from radiodiff.core.encodings import PG_FLOOR_DB, PG_MAX_DB, PL_MAX_DB, PL_MIN_DB, gray_to_gain_db
from radiodiff.core.errors import RadiodiffError
from radiodiff.core.io import atomic_dir, atomic_file
from radiodiff.core.progress import progress_bar
from radiodiff.evaluate.compare import STAT_COLUMNS, Comparison, compare, summary_table
from radiodiff.metrics import write_rows
from radiodiff.report import figures as F
from radiodiff.report.render import draw_and_save

OUTPUTS = (
    "comparison_statistics.csv",
    "detailed_metrics.csv",
    "metrics_distributions.png",
    "relative_error_distribution.png",
    "metrics_boxplot.png",
    "sample_comparisons.png",
)
HISTOGRAMS = ("nmse", "rmse", "rmse_db", "ssim", "psnr", "mae", "relative_error", "peak_distance_px",
              "sharpness_ratio")  # fmt: skip
BOXES = ("nmse", "rmse", "ssim", "psnr", "mae", "relative_error")


def _check_out(out: Path) -> None:
    """``out`` is replaced as a whole, so it must be new, empty or an earlier comparison."""
    if out.exists() and (not out.is_dir() or any(p.name not in OUTPUTS for p in out.iterdir())):
        raise RadiodiffError(f"--out {out}: exists and holds other files; give a new folder or an earlier comparison")


def write_statistics(path: Path, stats: dict[str, dict]) -> None:
    with atomic_file(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("metric", *STAT_COLUMNS))
        for metric, s in stats.items():
            writer.writerow((metric, *("" if s.get(c) is None else s[c] for c in STAT_COLUMNS)))


def _in_db(c: Comparison, png: np.ndarray, truth_png: np.ndarray) -> np.ndarray:
    if c.dataset == "radiomapseer":
        return gray_to_gain_db(png)
    return np.where(truth_png > 0, png.astype(np.float64), np.nan)  # padding: not scored


def write_figures(c: Comparison, out: Path, style: F.Style) -> None:
    n = len(c.rows)
    metrics = [m for m in HISTOGRAMS if m in c.rows[0]]
    draw_and_save(
        partial(F.metric_histograms_figure, c.rows, metrics, style, f"Per-map metrics ({n} pairs)"),
        out / "metrics_distributions.png",
        style,
    )
    mean = c.summary["relative_error"]["mean"]
    draw_and_save(
        partial(F.relative_error_figure, c.relative_error_hist, mean, style, "Relative error"),
        out / "relative_error_distribution.png",
        style,
    )
    draw_and_save(
        partial(F.metrics_boxplot_figure, c.rows, [m for m in BOXES if m in c.rows[0]], style, f"{n} pairs"),
        out / "metrics_boxplot.png",
        style,
    )
    shown = [{"name": s["name"], "truth": _in_db(c, s["truth"], s["truth"]), "pred": _in_db(c, s["pred"], s["truth"])}
             for s in c.shown]  # fmt: skip
    if c.dataset == "radiomapseer":
        unit, vmin, vmax = "path gain (dB)", PG_FLOOR_DB, PG_MAX_DB
    else:
        unit, vmin, vmax = "path loss (dB)", PL_MIN_DB, PL_MAX_DB
    draw_and_save(
        partial(F.compare_samples_figure, shown, unit, style, vmin, vmax), out / "sample_comparisons.png", style
    )


def run(truth, pred, dataset: str, out, metres_per_pixel: float | None = None, style: F.Style | None = None) -> dict:
    """Score ``pred`` against ``truth`` and write the comparison into ``out`` (replaced
    atomically); returns the statistics."""
    out = Path(out)
    _check_out(out)
    if metres_per_pixel is not None and not (0 < metres_per_pixel < math.inf):
        raise RadiodiffError(f"--metres-per-pixel: expected a positive number, got {metres_per_pixel}")
    c = compare(truth, pred, dataset, metres_per_pixel, progress=progress_bar("compare"))
    style = style or F.Style()
    with atomic_dir(out) as tmp:
        write_statistics(tmp / "comparison_statistics.csv", c.summary)
        write_rows(tmp / "detailed_metrics.csv", c.rows)
        write_figures(c, tmp, style)
    print(f"{len(c.rows)} pairs ({dataset}): {truth} (truth) against {pred}")
    print(summary_table(c.summary))
    print(f"written to {out}")
    return c.summary
