"""Synthetic RadioMapSeer: urban maps with a dominant-path-style path gain (REFERENCE.md §1, §5).

Layout written (a subset of the real dataset's, same names and encodings)::

    antenna/{map}.json                 [[x, y], ...]  x = column, y = row (pixels)
    gain/DPM/{map}_{tx}.png            uint8 gray = round(255·max((PG + 147) / 99.16, 0))
    png/buildings_complete/{map}.png   255 = building
    png/antennas/{map}_{tx}.png        one 255 pixel at the Tx
    png/cars/{map}.png, gain/carsDPM/  when cars are enabled

Path gain model (dominant path): in line of sight, log-distance loss from the 1 m free-space
loss; out of sight, the loss along the geodesic around the buildings (8-neighbour Dijkstra)
plus a first-diffraction step, a corner term that grows with the turning (estimated from the
detour) and a loss per metre of detour. Building pixels are 0, as in the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radiodiff.core.encodings import RADIOMAPSEER_FREQUENCY_HZ, gain_db_to_gray
from radiodiff.core.errors import RadiodiffError
from radiodiff.core.io import atomic_dir, write_json, write_png
from radiodiff.core.progress import progress_bar
from radiodiff.physics.propagation import (
    fspl_db,
    geodesic_distance,
    line_of_sight,
    octile_distance,
    pixel_geometry,
)


@dataclass(frozen=True)
class UrbanModel:
    """Settings of the dominant-path stand-in (params section ``synthesize_radiomapseer``)."""

    frequency_hz: float = RADIOMAPSEER_FREQUENCY_HZ
    los_exponent: float = 2.4
    nlos_exponent: float = 2.6
    nlos_step_db: float = 8.0
    corner_loss_db: float = 40.0
    detour_loss_db_per_m: float = 0.6
    car_loss_db: float = 6.0


def city_layout(rng: np.random.Generator, size: int, building_fraction: float = 0.25) -> np.ndarray:
    """Buildings (bool) on a street grid: blocks between streets, each split into a few
    rectangular buildings with gaps; some lots stay open, as in the real maps."""
    mask = np.zeros((size, size), dtype=bool)

    def cuts() -> list[tuple[int, int]]:
        spans, pos = [], int(rng.integers(-20, 6))
        while pos < size:
            block = int(rng.integers(24, 64))
            spans.append((max(pos, 0), min(pos + block, size)))
            pos += block + int(rng.integers(6, 16))  # street width
        return [s for s in spans if s[1] - s[0] >= 6]

    def split(lo: int, hi: int) -> list[tuple[int, int]]:
        parts, pos = [], lo
        while hi - pos >= 6:
            length = min(int(rng.integers(8, 30)), hi - pos)
            parts.append((pos, pos + length))
            pos += length + int(rng.integers(2, 8))
        return parts

    # Measured: about 40 % of the map lies in kept-able lots, so this keep rate hits the target on average.
    keep = np.clip(building_fraction / 0.40, 0.05, 1.0)
    for r0, r1 in cuts():
        for c0, c1 in cuts():
            if rng.random() < 0.12:  # an open square / park
                continue
            for br0, br1 in split(r0, r1):
                for bc0, bc1 in split(c0, c1):
                    if rng.random() < keep:
                        mask[br0:br1, bc0:bc1] = True
    return mask


def place_cars(rng: np.random.Generator, buildings: np.ndarray, n: int) -> np.ndarray:
    """Small 2×4 / 4×2 rectangles on free pixels (streets), not touching buildings."""
    h, w = buildings.shape
    cars = np.zeros_like(buildings)
    free_r, free_c = np.nonzero(~buildings)
    for _ in range(n):
        i = int(rng.integers(len(free_r)))
        dr, dc = (2, 4) if rng.random() < 0.5 else (4, 2)
        r, c = free_r[i], free_c[i]
        if r + dr <= h and c + dc <= w and not buildings[r : r + dr, c : c + dc].any():
            cars[r : r + dr, c : c + dc] = True
    return cars


def path_gain_db(buildings: np.ndarray, tx_rc: tuple[int, int], model: UrbanModel, cars=None) -> np.ndarray:
    """Dominant-path-style path gain in dB (1 m/pixel); building pixels are −inf."""
    dist_px, _ = pixel_geometry(buildings.shape, tx_rc)
    d = np.maximum(dist_px, 1.0)
    pl0 = float(fspl_db(1.0, model.frequency_hz))
    los = line_of_sight(buildings, tx_rc)
    geo = geodesic_distance(~buildings, tx_rc)
    detour = np.maximum(geo - octile_distance(buildings.shape, tx_rc), 0.0)
    detour = np.where(np.isfinite(detour), detour, 4 * buildings.shape[0])
    length = d + detour
    # Turning proxy: the detour relative to the straight distance grows with the diffraction angle.
    turn = 1.0 - np.exp(-4.0 * detour / d)
    pl_los = pl0 + 10.0 * model.los_exponent * np.log10(d)
    pl_nlos = (
        pl0
        + 10.0 * model.nlos_exponent * np.log10(length)
        + model.nlos_step_db
        + model.corner_loss_db * turn
        + model.detour_loss_db_per_m * detour
    )
    pl = np.where(los, pl_los, np.maximum(pl_nlos, pl_los))
    if cars is not None:
        behind_car = los & ~line_of_sight(cars | buildings, tx_rc) & ~cars
        pl = pl + model.car_loss_db * behind_car
    pg = -pl
    pg[buildings] = -np.inf
    return pg


def synthesize(
    out: str | Path,
    maps: int,
    tx_per_map: int,
    seed: int = 0,
    size_px: int = 256,
    building_fraction: float = 0.25,
    cars: bool = False,
    cars_per_map: int = 40,
    model: UrbanModel = UrbanModel(),
    progress=None,
) -> dict:
    """Write a synthetic RadioMapSeer folder at ``out`` (atomically); returns a summary."""
    with atomic_dir(out) as tmp:
        dirs = {k: tmp / k for k in ("antenna", "gain/DPM", "png/buildings_complete", "png/antennas")}
        if cars:
            dirs.update({k: tmp / k for k in ("gain/carsDPM", "png/cars")})
        for p in dirs.values():
            p.mkdir(parents=True)
        for m in range(maps):
            rng = np.random.default_rng([seed, m])  # per-map stream: map m is the same for any map count
            buildings = city_layout(rng, size_px, building_fraction)
            car_mask = place_cars(rng, buildings, cars_per_map) if cars else None
            free = ~buildings if car_mask is None else ~(buildings | car_mask)
            # Tx on free pixels at least 2 px from any building or car (antennas stand in streets).
            clear = free.copy()
            for ax in (0, 1):
                for s in (-2, -1, 1, 2):
                    clear &= np.roll(free, s, axis=ax)
            rr, cc = np.nonzero(clear)
            picks = rng.choice(len(rr), size=tx_per_map, replace=len(rr) < tx_per_map)
            txs = [(int(rr[i]), int(cc[i])) for i in picks]
            write_png(dirs["png/buildings_complete"] / f"{m}.png", (buildings * 255).astype(np.uint8))
            if cars:
                write_png(dirs["png/cars"] / f"{m}.png", (car_mask * 255).astype(np.uint8))
            write_json(dirs["antenna"] / f"{m}.json", [[c, r] for r, c in txs])
            for t, (r, c) in enumerate(txs):
                onehot = np.zeros((size_px, size_px), dtype=np.uint8)
                onehot[r, c] = 255
                write_png(dirs["png/antennas"] / f"{m}_{t}.png", onehot)
                write_png(dirs["gain/DPM"] / f"{m}_{t}.png", gain_db_to_gray(path_gain_db(buildings, (r, c), model)))
                if cars:
                    pg = path_gain_db(buildings, (r, c), model, cars=car_mask)
                    write_png(dirs["gain/carsDPM"] / f"{m}_{t}.png", gain_db_to_gray(pg))
            if progress is not None:
                progress(m + 1, maps)
    return {"maps": maps, "tx_per_map": tx_per_map, "seed": seed, "size_px": size_px, "cars": cars}


def run(params: dict, out, maps: int | None = None, tx_per_map: int | None = None, seed: int | None = None) -> dict:
    """The ``synthesize_radiomapseer`` stage: the dataset of the params section (if any) into
    ``out``; ``maps``, ``tx_per_map`` and ``seed`` override it."""
    p = dict(params.get("synthesize_radiomapseer", {}))
    p.update({k: v for k, v in {"maps": maps, "tx_per_map": tx_per_map, "seed": seed}.items() if v is not None})
    missing = [k for k in ("maps", "tx_per_map") if k not in p]
    if missing:
        raise RadiodiffError(f"synthesize radiomapseer: give --{missing[0].replace('_', '-')} or --params")
    model = UrbanModel(**{k: p[k] for k in UrbanModel.__dataclass_fields__ if k in p})
    keys = ("seed", "size_px", "building_fraction", "cars", "cars_per_map")
    summary = synthesize(
        out,
        p["maps"],
        p["tx_per_map"],
        model=model,
        progress=progress_bar("synthesize radiomapseer"),
        **{k: p[k] for k in keys if k in p},
    )
    return {"stage": "synthesize_radiomapseer", "out": str(out), **summary}
