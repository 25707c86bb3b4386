"""The ``evaluate_icassp_full`` stage: the challenge's own score on whole test buildings.

Each method's PNGs (``sample_icassp_full``) against the arranged targets, as written: integer
path loss in dB, every pixel of the building, walls included. RMSE in dB is pooled over all
pixels of a group's maps (the challenge's RMSE) with the mean of per-image RMSEs beside it.
Groups: the challenge's tasks as subsets of the test samples — T1 = Ant1 at f1, T2 = Ant1 at
every band, T3 = every antenna and band — each band and each building. ``weighted_rmse_db`` =
0.3·T1 + 0.3·T2 + 0.4·T3 (null when a task has no sample). Seams: the pooled RMSE dB on pixels
within ``SEAM_BAND_PX`` (at the model's grid) of an edge where windows meet (``border``) and on
the rest (``interior``), from the window geometry ``sampling.json`` records.

Writes ``summary.json`` (keyed by method, with ``protocol`` and the published winners, which
are not comparable while the data are synthetic) and ``per_sample.csv``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from radiodiff.core.encodings import ICASSP_PIXEL_SIZE_M
from radiodiff.core.errors import DataError
from radiodiff.core.io import read_json, read_png
from radiodiff.data.icassp import held_out_rows
from radiodiff.evaluate.score_test import write_outputs
from radiodiff.evaluate.windows import Tiling, model_shape

TASK_WEIGHTS = {"T1": 0.3, "T2": 0.3, "T3": 0.4}
SEAM_BAND_PX = 2
PUBLISHED = {"SIP2Net": 9.41, "IPP-Net": 9.50, "TerRaIn": 10.32, "TransPathNet": 10.39}


def tasks_of(antenna: int, band: int) -> list[str]:
    """The challenge tasks a sample belongs to (T1 = Ant1 f1, T2 = Ant1, T3 = all)."""
    return [t for t, member in (("T1", antenna == 1 and band == 1), ("T2", antenna == 1), ("T3", True)) if member]


class Pool:
    """Squared errors and pixel counts per group, and per-image RMSEs per group."""

    def __init__(self):
        self.sse, self.n, self.images = defaultdict(float), defaultdict(int), defaultdict(list)

    def add(self, group, sq: np.ndarray) -> None:
        self.sse[group] += float(sq.sum())
        self.n[group] += sq.size
        self.images[group].append(float(np.sqrt(sq.mean())))

    def rmse(self, group) -> float | None:
        return float(np.sqrt(self.sse[group] / self.n[group])) if self.n.get(group) else None

    def entry(self, group) -> dict:
        images = self.images.get(group, [])
        return {
            "rmse_db": self.rmse(group),
            "mean_image_rmse_db": float(np.mean(images)) if images else None,
            "maps": len(images),
        }


def seam_mask(shape: tuple[int, int], geometry: dict, cache: dict) -> np.ndarray | None:
    """(H, W) bool: pixels near where a method's windows meet (None for a method without windows)."""
    if "window_px" not in geometry:
        return None
    if shape not in cache:
        grid = model_shape(shape, ICASSP_PIXEL_SIZE_M, geometry["metres_per_pixel"])
        tiling = Tiling.of(grid, geometry["window_px"], geometry["overlap"], geometry["step_px"])
        near = tiling.border_mask(SEAM_BAND_PX).astype(np.uint8)
        cache[shape] = cv2.resize(near, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    return cache[shape]


def run(params: dict, arranged, samples, out) -> dict:
    """Score every method of ``samples`` on the whole test buildings of ``arranged`` into ``out``."""
    samples = Path(samples)
    sampling = read_json(samples / "sampling.json")
    methods = sampling["methods"]
    rows = held_out_rows(arranged)
    pools = {m: Pool() for m in methods}
    masks: dict = {m: {} for m in methods}
    per_sample = []
    for row in rows:
        name = row["name"]
        truth_path = Path(arranged) / "targets" / f"{name}.png"
        truth = read_png(truth_path, "L").astype(np.float64)
        antenna, band, building = int(row["antenna"]), int(row["band"]), int(row["building"])
        for method in methods:
            path = samples / method / f"{name}.png"
            pred = read_png(path, "L").astype(np.float64)
            if pred.shape != truth.shape:
                raise DataError(
                    f"{path}: {pred.shape[1]}×{pred.shape[0]} px, the building is {truth.shape[1]}×{truth.shape[0]}"
                )
            sq = (pred - truth) ** 2
            pool = pools[method]
            for group in (*tasks_of(antenna, band), ("band", band), ("building", building)):
                pool.add(group, sq)
            entry = {
                "name": name,
                "method": method,
                "building": building,
                "antenna": antenna,
                "band": band,
                "height": truth.shape[0],
                "width": truth.shape[1],
                "rmse_db": float(np.sqrt(sq.mean())),
            }
            near = seam_mask(truth.shape, methods[method], masks[method])
            if near is not None and near.any() and (~near).any():
                pool.add("border", sq[near])
                pool.add("interior", sq[~near])
                entry["border_rmse_db"] = float(np.sqrt(sq[near].mean()))
                entry["interior_rmse_db"] = float(np.sqrt(sq[~near].mean()))
            per_sample.append(entry)
    summary = {}
    for method, pool in pools.items():
        tasks = {t: pool.entry(t) for t in TASK_WEIGHTS}
        weighted = None
        if all(tasks[t]["rmse_db"] is not None for t in TASK_WEIGHTS):
            weighted = sum(w * tasks[t]["rmse_db"] for t, w in TASK_WEIGHTS.items())
        summary[method] = {
            "weighted_rmse_db": weighted,
            "rmse_db": tasks["T3"]["rmse_db"],
            "tasks": tasks,
            "per_band": {str(k[1]): pool.entry(k) for k in sorted(g for g in pool.n if g[0] == "band")},
            "per_building": {str(k[1]): pool.entry(k) for k in sorted(g for g in pool.n if g[0] == "building")},
            "ms_per_map": methods[method]["ms_per_map"],
        }
        if pool.n.get("border"):
            border, interior = pool.rmse("border"), pool.rmse("interior")
            summary[method]["seams"] = {
                "border_rmse_db": border,
                "interior_rmse_db": interior,
                "ratio": border / interior if interior else None,
                "band_px": SEAM_BAND_PX,
                "mode": methods[method]["mode"],
            }
    summary["protocol"] = {
        "dataset": "icassp",
        "split": "test (whole buildings)",
        "maps": len(rows),
        "buildings": sorted({int(r["building"]) for r in rows}),
        "sizes_px": sampling.get("sizes_px"),
        "resolution": "each building's own size at 0.25 m/pixel (sliding windows at the model's resolution)",
        "scope": "every pixel of the challenge PNGs as written (integer dB, walls included)",
        "score": "weighted_rmse_db = 0.3 T1 + 0.3 T2 + 0.4 T3; T1 = Ant1 at f1, T2 = Ant1 at all bands, "
        "T3 = all antennas and bands; each task's RMSE pooled over all its pixels (mean of per-image RMSEs beside it)",
        "seams": f"pooled RMSE dB within {SEAM_BAND_PX} px (model grid) of an edge where windows meet vs the rest",
        "published_winners_weighted_rmse_db": PUBLISHED,
        "comparable": "no: the published scores are on the real challenge data; these are on the synthetic set",
    }
    write_outputs(out, summary, per_sample)
    return {"stage": "evaluate_icassp_full", "maps": len(rows), **{m: summary[m]["weighted_rmse_db"] for m in methods}}
