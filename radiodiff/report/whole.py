"""The report's whole-building part: ICASSP on whole test buildings (``evaluate_icassp_full``),
the challenge's weighted score per method beside the published winners, the seam errors where
sliding windows meet, and a grid of whole buildings."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from radiodiff.core.encodings import PL_MAX_DB, PL_MIN_DB
from radiodiff.core.io import read_json, read_png
from radiodiff.eda.common import evenly_spaced
from radiodiff.report import figures as F
from radiodiff.report.document import Doc, fmt
from radiodiff.report.inputs import read_csv

FULL_METHODS = {
    "radiodiff": "RadioDiff",
    "radiodiff_independent": "RadioDiff (independent windows)",
    "radiodiff_joint": "RadioDiff (joint windows)",
    "radiounet": "RadioUNet",
    "physics": "physics",
}


def whole_building_section(doc: Doc, results: Path, arranged: Path) -> dict:
    """The part's heading, protocol, score table, seams and grid; returns the evaluation's summary."""
    summary = read_json(results / "evaluate/icassp_full/summary.json")
    protocol = summary.get("protocol", {})
    methods = [m for m in FULL_METHODS if m in summary]
    doc.heading("ICASSP 2025: whole buildings (the challenge's score)", 2, "results-icassp-full")
    doc.para(
        f"{fmt(protocol.get('maps'))} test maps of buildings {protocol.get('buildings')} at their own sizes "
        f"({protocol.get('sizes_px')} px, W×H), predicted by sliding windows at each model's resolution and scored "
        f"as the challenge scores: {protocol.get('score', '')}. Scope: {protocol.get('scope', '')}. "
        f"`RadioDiff` samples in `{summary.get('radiodiff', {}).get('seams', {}).get('mode', '?')}` windows."
    )
    _score_table(doc, summary, methods)
    _seams(doc, summary, methods)
    _grid(doc, results, arranged, methods)
    return summary


def _score_table(doc: Doc, summary: dict, methods: list[str]) -> None:
    """The weighted and per-task RMSE per method (lowest weighted score in bold), then the
    published winners in words."""
    rows = []
    for m in methods:
        s = summary[m]
        row = {"method": FULL_METHODS[m], "weighted_rmse_db": s["weighted_rmse_db"]}
        row |= {f"{t} rmse_db": s["tasks"][t]["rmse_db"] for t in ("T1", "T2", "T3")}
        row["ms_per_map"] = s.get("ms_per_map")
        rows.append(row)
    lowest = min((r["weighted_rmse_db"] for r in rows if r["weighted_rmse_db"] is not None), default=None)
    doc.table(rows, css="metrics", best={"weighted_rmse_db": lowest}, html_id="metrics-icassp-full")
    winners = summary.get("protocol", {}).get("published_winners_weighted_rmse_db", {})
    doc.para(
        "Published challenge winners (weighted RMSE dB on the real challenge data; **not comparable** while "
        "these data are synthetic): " + ", ".join(f"{k} {v}" for k, v in winners.items()) + "."
    )


def _seams(doc: Doc, summary: dict, methods: list[str]) -> None:
    seams = [{"method": FULL_METHODS[m], **summary[m]["seams"]} for m in methods if "seams" in summary[m]]
    if seams:
        doc.para(
            f"Seams: {summary.get('protocol', {}).get('seams', '')}. A ratio above 1 means pixels where windows "
            "meet are predicted worse than the rest."
        )
        doc.table(seams, columns=("method", "mode", "border_rmse_db", "interior_rmse_db", "ratio"))


def _grid(doc: Doc, results: Path, arranged: Path, methods: list[str]) -> None:
    """Up to three whole buildings evenly spaced over the test samples: the arranged input, the
    target and each method's challenge PNG."""
    samples = results / "samples/icassp_full"
    names = sorted({r["name"] for r in read_csv(results / "evaluate/icassp_full/per_sample.csv").to_dict("records")})
    chosen = evenly_spaced(names, min(doc.style.grid_samples, 3))
    grid = []
    for name in chosen:
        rgb = read_png(arranged / "inputs" / f"{name}.png", "RGB")[..., :3]
        row = {
            "name": name,
            "condition": rgb.astype(np.float64) / 255.0,
            "tx": None,
            "truth": read_png(arranged / "targets" / f"{name}.png", "L").astype(np.float64),
        }
        for m in methods:
            row[m] = read_png(samples / m / f"{name}.png", "L").astype(np.float64)
        grid.append(row)
    labels = {m: FULL_METHODS[m] for m in methods}
    doc.figure(
        partial(F.sample_grid_figure, grid, "path loss (dB)", doc.style, PL_MIN_DB, PL_MAX_DB, labels),
        "samples_icassp_full",
        f"ICASSP whole test buildings: {len(grid)} maps evenly spaced over the test samples. Arranged input "
        "(reflectance, transmittance, FSPL − G as RGB), ground truth, each method's challenge PNG, and "
        "RadioDiff's absolute error, in dB.",
    )
