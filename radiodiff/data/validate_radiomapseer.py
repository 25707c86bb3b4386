"""Validate a RadioMapSeer folder: every file present, paired, readable, sized and in range.

Returns the findings (the validation report); problems are collected (each names its file), never raised one by one,
so a user sees everything wrong in one pass. A simulation need not hold a gain map for every Tx
listed in ``antenna/*.json`` (the real IRT4 and carsIRT4 hold Tx 0 and 1 only): the findings give
each simulation folder's coverage (maps × Tx found), and the chosen simulation's Tx with a gain map
are checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radiodiff.core.errors import DataError
from radiodiff.core.io import read_json, read_png
from radiodiff.data.problems import conclude
from radiodiff.data.radiomapseer import simulation_coverage


def validate(root: str | Path, simulation: str = "DPM", condition: str = "static") -> dict:
    root = Path(root)
    problems: list[str] = []
    warnings: list[str] = []
    findings = {"dataset": "radiomapseer", "root": str(root), "simulation": simulation, "condition": condition}
    adir = root / "antenna"
    if not root.is_dir():
        problems.append(f"{root}: folder not found")
    elif not adir.is_dir():
        problems.append(f"{adir}: folder not found")
    maps: dict[int, list] = {}
    if adir.is_dir():
        for p in sorted(adir.glob("*.json")):
            if not p.stem.isdigit():
                warnings.append(f"{p}: ignored (name is not a map id)")
                continue
            try:
                txs = read_json(p)
            except DataError as e:
                problems.append(str(e))
                continue
            if not isinstance(txs, list) or not all(isinstance(t, list) and len(t) == 2 for t in txs):
                problems.append(f"{p}: expected a list of [x, y] pairs")
                continue
            maps[int(p.stem)] = txs
        if not maps:
            problems.append(f"{adir}: no {{map}}.json files")

    gain_dir = root / "gain" / simulation
    present = _gain_names(gain_dir)
    if present is None and root.is_dir():
        problems.append(f"{gain_dir}: folder not found (simulation {simulation!r})")
    present = present or set()
    listed = {f"{m}_{t}" for m, txs in maps.items() for t in range(len(txs))}
    for name in sorted(present - listed):
        problems.append(f"{gain_dir / name}.png: no antenna entry for this Tx in antenna/{name.split('_')[0]}.json")
    coverage = simulation_coverage(root, {m: len(txs) for m, txs in maps.items()})
    c = coverage.get(simulation)
    if c and 0 < c["samples"] < c["listed"]:
        warnings.append(
            f"{gain_dir}: gain maps for {c['samples']} of the {c['listed']} listed Tx ({c['maps']} maps); "
            "the others are not used"
        )
    elif c and c["samples"] == 0 and maps:
        problems.append(f"{gain_dir}: no gain map of any Tx listed in antenna/*.json")

    shape = None
    n_samples = 0
    gray_hist = np.zeros(256, dtype=np.int64)
    building_fraction = []
    for m, txs in sorted(maps.items()):
        bpath = root / "png/buildings_complete" / f"{m}.png"
        try:
            b = read_png(bpath, "L")
        except DataError as e:
            problems.append(str(e))
            continue
        if shape is None:
            shape = b.shape
        if b.shape != shape:
            problems.append(f"{bpath}: size {b.shape[::-1]} differs from the first map's {shape[::-1]}")
            continue
        bmask = b > 127
        building_fraction.append(float(bmask.mean()))
        if condition == "dynamic" or simulation.startswith("cars"):
            cpath = root / "png/cars" / f"{m}.png"
            try:
                if read_png(cpath, "L").shape != shape:
                    problems.append(f"{cpath}: size differs from {bpath}")
            except DataError as e:
                problems.append(str(e))
        jpath = root / "antenna" / f"{m}.json"
        for t, (x, y) in enumerate(txs):
            if f"{m}_{t}" not in present:
                continue  # not simulated (coverage)
            apath = root / "png/antennas" / f"{m}_{t}.png"
            gpath = root / "gain" / simulation / f"{m}_{t}.png"
            try:
                a = read_png(apath, "L")
                g = read_png(gpath, "L")
            except DataError as e:
                problems.append(str(e))
                continue
            if a.shape != shape:
                problems.append(f"{apath}: size {a.shape[::-1]} differs from {bpath} {shape[::-1]}")
                continue
            if g.shape != shape:
                problems.append(f"{gpath}: size {g.shape[::-1]} differs from {bpath} {shape[::-1]}")
                continue
            peak = a.max()
            rows, cols = np.nonzero(a == peak)
            if peak == 0 or len(rows) != 1:
                problems.append(
                    f"{apath}: expected exactly one transmitter pixel, found {0 if peak == 0 else len(rows)}"
                )
                continue
            r, c = int(rows[0]), int(cols[0])
            if not (0 <= x < shape[1] and 0 <= y < shape[0]):
                problems.append(f"{jpath}: Tx {t} at [x={x}, y={y}] is outside the {shape[1]}x{shape[0]} map")
                continue
            if (round(x), round(y)) != (c, r):
                warnings.append(f"{jpath}: Tx {t} [x={x}, y={y}] disagrees with {apath} (col={c}, row={r})")
            if bmask[r, c]:
                warnings.append(f"{apath}: Tx on a building pixel")
            if g[bmask].max(initial=0) > 0:
                warnings.append(f"{gpath}: {int((g[bmask] > 0).sum())} building pixels are not 0")
            gray_hist += np.bincount(g[~bmask].ravel(), minlength=256)
            n_samples += 1

    cdf = np.cumsum(gray_hist) / max(gray_hist.sum(), 1)
    findings.update(
        ok=not problems,
        problems=problems,
        warnings=warnings[:200],
        n_warnings=len(warnings),
        counts={"maps": len(maps), "samples": n_samples, "tx_per_map": sorted({len(t) for t in maps.values()})},
        coverage=coverage,
        image_size=list(shape[::-1]) if shape else None,
        building_fraction_mean=float(np.mean(building_fraction)) if building_fraction else None,
        gray_percentiles_outdoor={str(q): int(np.searchsorted(cdf, q / 100)) for q in (1, 10, 50, 90, 99)}
        if gray_hist.sum()
        else None,
    )
    return findings


def _gain_names(gain_dir: Path) -> set[str] | None:
    """Stems ``{map}_{tx}`` of the PNGs in a gain folder (None when it does not exist)."""
    if not gain_dir.is_dir():
        return None
    return {p.stem for p in gain_dir.glob("*.png")}


def run(params: dict, root, out=None) -> dict:
    """The ``validate_radiomapseer`` stage: fail listing every problem, else write the validation report to ``out``."""
    d = params["data"]["radiomapseer"]
    return conclude(validate(root, simulation=d["simulation"], condition=d["condition"]), root, out)
