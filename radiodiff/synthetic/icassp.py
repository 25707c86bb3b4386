"""Synthetic ICASSP 2025 indoor path-loss data in the challenge's on-disk layout (REFERENCE.md §2, §5).

Layout written (the real one; ``radiodiff.data.icassp`` reads both)::

    Inputs/Task_3_ICASSP/B{b}_Ant{a}_f{f}_S{s}.png   RGB uint8: R = reflectance dB (0 = air),
                                                      G = transmittance dB (0 = air),
                                                      B = distance to the Tx in m (rounded, ≤ 255)
    Outputs/Task_3_ICASSP/B{b}_Ant{a}_f{f}_S{s}.png  gray uint8: path loss dB, rounded, in [13, 160]
    Inputs|Outputs/Task_1_ICASSP/B{b}_Ant1_f1_S{s}.png   copies of Task 3's Ant1, f1 maps
    Positions/Positions_B{b}_Ant{a}_f{f}.csv         "X,Y,Azimuth"; row s ↔ S{s}; X = column, Y = row
    Radiation_Patterns/Ant{a}_Pattern.csv            360 relative gains dB (peak 0 dB), no header
    Building_Details/B{b}_Details.csv                "W,H"

Buildings are indoor floor plans at 0.25 m/pixel: a concrete shell (with glass windows), one or
two corridors, rooms from recursive binary splits with 1–2 px interior walls of several
materials and door gaps. Path loss is a COST 231-style multi-wall model with the antenna gain:

    PL = FSPL(max(d, 0.1 m), f) − G(round(θ − azimuth) mod 360) + Σ transmittance of walls crossed

Material losses are per material, not per band (the real inputs carry one transmittance map
per building), so the bands differ by the FSPL term only.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radiodiff.core.encodings import ICASSP_PIXEL_SIZE_M, pl_db_to_png
from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.core.io import atomic_dir, write_png
from radiodiff.core.progress import progress_bar
from radiodiff.data.icassp import FREQUENCIES_HZ, SampleId
from radiodiff.physics.antenna import ANTENNAS, fspl_pattern_db, make_patterns, write_pattern
from radiodiff.physics.propagation import pixel_geometry, wall_loss_db

TASK3 = "Task_3_ICASSP"
TASK1 = "Task_1_ICASSP"
MIN_DISTANCE_M = 0.1


@dataclass(frozen=True)
class Material:
    """A wall material as the input channels encode it (both values in dB, written as uint8)."""

    name: str
    reflectance_db: int
    transmittance_db: int


# Transmittance takes the real data's few discrete values; id = index + 1 (0 = air).
MATERIALS = (
    Material("concrete", 7, 23),
    Material("brick", 9, 10),
    Material("concrete_block", 8, 6),
    Material("wood", 13, 4),
    Material("plasterboard", 15, 3),
    Material("glass", 11, 2),
    Material("partition_board", 17, 1),
)
_ID = {m.name: i + 1 for i, m in enumerate(MATERIALS)}
_REFLECTANCE = np.array([0] + [m.reflectance_db for m in MATERIALS], dtype=np.uint8)
_TRANSMITTANCE = np.array([0] + [m.transmittance_db for m in MATERIALS], dtype=np.uint8)

# Which materials the two kinds of interior wall are drawn from, with their odds.
_CORRIDOR_WALLS = (("concrete", 0.2), ("brick", 0.3), ("concrete_block", 0.2), ("plasterboard", 0.2), ("glass", 0.1))
_ROOM_WALLS = (
    ("brick", 0.15),
    ("concrete_block", 0.15),
    ("plasterboard", 0.35),
    ("wood", 0.15),
    ("glass", 0.1),
    ("partition_board", 0.1),
)

EXTERIOR_PX = 2  # 0.5 m shell
MIN_ROOM_PX = 8  # 2 m


def _pick(rng: np.random.Generator, table) -> int:
    names, odds = zip(*table, strict=True)
    return _ID[names[int(rng.choice(len(names), p=np.asarray(odds) / sum(odds)))]]


def floor_plan(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """An indoor floor plan: material ids (0 = air, else index into ``MATERIALS`` + 1) and the
    mask of the building's inside (within the exterior walls)."""
    mat = np.zeros((height, width), dtype=np.uint8)
    # A few pixels of air around the shell on some sides, as in the real maps' margins.
    top, bottom, left, right = (int(v) for v in rng.integers(0, 4, size=4))
    r0, r1, c0, c1 = top, height - bottom, left, width - right
    e = EXTERIOR_PX
    mat[r0:r1, c0:c1] = _ID["concrete"]
    mat[r0 + e : r1 - e, c0 + e : c1 - e] = 0
    inside = np.zeros_like(mat, dtype=bool)
    inside[r0 + e : r1 - e, c0 + e : c1 - e] = True
    _windows(rng, mat, r0, r1, c0, c1)

    ir0, ir1, ic0, ic1 = r0 + e, r1 - e, c0 + e, c1 - e
    # Corridors: bands (start, width, wall thickness) across the whole inside; the first runs along
    # the longer side, a second crosses it when the building is big enough.
    h_bands, v_bands = [], []
    along_cols = (ic1 - ic0) >= (ir1 - ir0)
    for k in range(2):
        horizontal = along_cols if k == 0 else not along_cols
        lo, hi = (ir0, ir1) if horizontal else (ic0, ic1)
        span = hi - lo
        if span < 2 * MIN_ROOM_PX + 12 or (k == 1 and (span < 56 or rng.random() < 0.5)):
            continue
        cw, t = int(rng.integers(5, 9)), int(rng.integers(1, 3))
        start = int(rng.integers(lo + MIN_ROOM_PX + t, hi - MIN_ROOM_PX - t - cw + 1))
        (h_bands if horizontal else v_bands).append((start, cw, t, _pick(rng, _CORRIDOR_WALLS)))
    for start, cw, t, m in h_bands:
        mat[start - t : start, ic0:ic1] = m
        mat[start + cw : start + cw + t, ic0:ic1] = m
    for start, cw, t, m in v_bands:
        mat[ir0:ir1, start - t : start] = m
        mat[ir0:ir1, start + cw : start + cw + t] = m
    # Clear corridor floors last so crossing corridors open onto each other.
    for start, cw, _, _ in h_bands:
        mat[start : start + cw, ic0:ic1] = 0
    for start, cw, _, _ in v_bands:
        mat[ir0:ir1, start : start + cw] = 0

    rooms_px = int(rng.integers(18, 36))
    for zr0, zr1, rows_face in _intervals(ir0, ir1, h_bands):
        for zc0, zc1, cols_face in _intervals(ic0, ic1, v_bands):
            for lr0, lr1, lc0, lc1 in _split_rooms(rng, mat, zr0, zr1, zc0, zc1, rooms_px):
                # A door from each room into every corridor it borders.
                for side, (w0, w1) in rows_face.items():
                    if (side == "before" and lr0 == zr0) or (side == "after" and lr1 == zr1):
                        _door(rng, mat, lc0, lc1, lambda a, b, w0=w0, w1=w1: (slice(w0, w1), slice(a, b)))
                for side, (w0, w1) in cols_face.items():
                    if (side == "before" and lc0 == zc0) or (side == "after" and lc1 == zc1):
                        _door(rng, mat, lr0, lr1, lambda a, b, w0=w0, w1=w1: (slice(a, b), slice(w0, w1)))
    return mat, inside


def _intervals(lo: int, hi: int, bands) -> list[tuple[int, int, dict]]:
    """The room zones between corridor bands along one axis, each with the corridor walls it
    faces: {"before"|"after": (wall_start, wall_end)}."""
    out, pos, face = [], lo, {}
    for start, cw, t, _ in sorted(bands):
        out.append((pos, start - t, {**face, "after": (start - t, start)}))
        pos, face = start + cw + t, {"before": (start + cw, start + cw + t)}
    out.append((pos, hi, face))
    return [z for z in out if z[1] - z[0] >= 2]


def _split_rooms(rng, mat, r0, r1, c0, c1, rooms_px) -> list[tuple[int, int, int, int]]:
    """Recursive binary split of a zone into rooms; each new wall gets one door gap."""
    h, w = r1 - r0, c1 - c0
    horizontal = h >= w  # the wall runs across the longer side's cut
    span = h if horizontal else w
    if max(h, w) <= rooms_px or span < 2 * MIN_ROOM_PX + 2 or (max(h, w) < 2 * rooms_px and rng.random() < 0.15):
        return [(r0, r1, c0, c1)]
    t = int(rng.integers(1, 3))
    m = _pick(rng, _ROOM_WALLS)
    lo = r0 if horizontal else c0
    cut = int(rng.integers(lo + MIN_ROOM_PX, lo + span - MIN_ROOM_PX - t + 1))
    if horizontal:
        mat[cut : cut + t, c0:c1] = m
        _door(rng, mat, c0, c1, lambda a, b: (slice(cut, cut + t), slice(a, b)))
        return _split_rooms(rng, mat, r0, cut, c0, c1, rooms_px) + _split_rooms(rng, mat, cut + t, r1, c0, c1, rooms_px)
    mat[r0:r1, cut : cut + t] = m
    _door(rng, mat, r0, r1, lambda a, b: (slice(a, b), slice(cut, cut + t)))
    return _split_rooms(rng, mat, r0, r1, c0, cut, rooms_px) + _split_rooms(rng, mat, r0, r1, cut + t, c1, rooms_px)


def _door(rng, mat, a0: int, a1: int, where) -> None:
    """Clear a 3–4 px (0.75–1 m) gap somewhere along [a0, a1) of a wall; ``where(a, b)`` gives
    the wall's index for the gap [a, b)."""
    size = int(rng.integers(3, 5))
    if a1 - a0 < size + 2:
        return
    a = int(rng.integers(a0 + 1, a1 - size))
    mat[where(a, a + size)] = 0


def _windows(rng, mat, r0, r1, c0, c1) -> None:
    """Glass windows in stretches of the exterior shell (most buildings have some)."""
    if rng.random() < 0.25:
        return
    glass, e = _ID["glass"], EXTERIOR_PX
    for rows, cols, along in (
        ((r0, r0 + e), None, (c0 + e, c1 - e)),
        ((r1 - e, r1), None, (c0 + e, c1 - e)),
        (None, (c0, c0 + e), (r0 + e, r1 - e)),
        (None, (c1 - e, c1), (r0 + e, r1 - e)),
    ):
        pos = along[0] + int(rng.integers(2, 10))
        while pos < along[1] - 4:
            length = min(int(rng.integers(4, 11)), along[1] - pos)
            if rows is not None:
                mat[rows[0] : rows[1], pos : pos + length] = glass
            else:
                mat[pos : pos + length, cols[0] : cols[1]] = glass
            pos += length + int(rng.integers(6, 21))


def path_loss_db(
    transmittance_db: np.ndarray,
    tx_rc: tuple[int, int],
    frequency_hz: float,
    pattern: np.ndarray,
    azimuth_deg: float,
    pixel_size_m: float = ICASSP_PIXEL_SIZE_M,
) -> np.ndarray:
    """Multi-wall path loss in dB (unclipped): FSPL(max(d, 0.1 m)) − G(θ) + walls crossed."""
    free = fspl_pattern_db(
        transmittance_db.shape, tx_rc, frequency_hz, pattern, azimuth_deg, MIN_DISTANCE_M, pixel_size_m
    )
    return free + wall_loss_db(transmittance_db, tx_rc)


def synthesize(
    out: str | Path,
    buildings: int,
    seed: int = 0,
    width_px: tuple[int, int] = (96, 160),
    height_px: tuple[int, int] = (96, 160),
    positions_per_antenna: int = 4,
    progress=None,
) -> dict:
    """Write a synthetic ICASSP 2025 folder at ``out`` (atomically); returns a summary.

    Sizes are inclusive ranges drawn per building; every (building, antenna, band) gets
    ``positions_per_antenna`` Tx positions. Same arguments → byte-identical files.
    """
    for key, (lo, hi) in (("width_px", width_px), ("height_px", height_px)):
        if not 24 <= lo <= hi:
            raise ParamsError(f"{key}: need 24 ≤ min ≤ max, got {lo}..{hi}")
    if buildings < 1 or positions_per_antenna < 1:
        raise ParamsError("buildings and positions_per_antenna must be ≥ 1")
    patterns = make_patterns(seed)
    sizes = {}
    with atomic_dir(out) as tmp:
        dirs = {
            k: tmp / k
            for k in (
                f"Inputs/{TASK3}",
                f"Outputs/{TASK3}",
                f"Inputs/{TASK1}",
                f"Outputs/{TASK1}",
                "Positions",
                "Radiation_Patterns",
                "Building_Details",
            )
        }
        for p in dirs.values():
            p.mkdir(parents=True)
        for a in ANTENNAS:
            write_pattern(dirs["Radiation_Patterns"] / f"Ant{a}_Pattern.csv", patterns[a])
        for b in range(1, buildings + 1):
            rng = np.random.default_rng([seed, b])  # per-building stream: B{b} is the same for any count
            w = int(rng.integers(width_px[0], width_px[1] + 1))
            h = int(rng.integers(height_px[0], height_px[1] + 1))
            sizes[b] = (w, h)
            mat, inside = floor_plan(rng, h, w)
            reflectance, transmittance = _REFLECTANCE[mat], _TRANSMITTANCE[mat]
            trans_db = transmittance.astype(np.float32)
            (dirs["Building_Details"] / f"B{b}_Details.csv").write_text(f"W,H\n{w},{h}\n")
            free_r, free_c = np.nonzero(inside & (mat == 0))
            for a in ANTENNAS:
                for f, freq in FREQUENCIES_HZ.items():
                    prng = np.random.default_rng([seed, b, a, f])
                    lines = ["X,Y,Azimuth"]
                    for s in range(positions_per_antenna):
                        i = int(prng.integers(len(free_r)))
                        tx = (int(free_r[i]), int(free_c[i]))
                        azimuth = 0 if a == 1 else int(prng.integers(0, 360))
                        lines.append(f"{tx[1]},{tx[0]},{azimuth}")
                        dist_px, _ = pixel_geometry((h, w), tx)
                        distance = np.clip(np.rint(dist_px * ICASSP_PIXEL_SIZE_M), 0, 255).astype(np.uint8)
                        name = SampleId(b, a, f, s).name + ".png"
                        rgb = np.stack([reflectance, transmittance, distance], axis=-1)
                        pl = pl_db_to_png(path_loss_db(trans_db, tx, freq, patterns[a], azimuth))
                        write_png(dirs[f"Inputs/{TASK3}"] / name, rgb)
                        write_png(dirs[f"Outputs/{TASK3}"] / name, pl)
                        if a == 1 and f == 1:
                            for kind in ("Inputs", "Outputs"):
                                shutil.copyfile(dirs[f"{kind}/{TASK3}"] / name, dirs[f"{kind}/{TASK1}"] / name)
                    (dirs["Positions"] / f"Positions_B{b}_Ant{a}_f{f}.csv").write_text("\n".join(lines) + "\n")
            if progress is not None:
                progress(b, buildings)
    n3 = buildings * len(ANTENNAS) * len(FREQUENCIES_HZ) * positions_per_antenna
    return {
        "buildings": buildings,
        "antennas": len(ANTENNAS),
        "bands": len(FREQUENCIES_HZ),
        "positions_per_antenna": positions_per_antenna,
        "samples": {TASK3: n3, TASK1: buildings * positions_per_antenna},
        "seed": seed,
        "pixel_size_m": ICASSP_PIXEL_SIZE_M,
        "sizes_wh": {f"B{b}": list(wh) for b, wh in sizes.items()},
        "materials": {
            m.name: {"reflectance_db": m.reflectance_db, "transmittance_db": m.transmittance_db} for m in MATERIALS
        },
    }


def run(params: dict, out, buildings: int | None = None, seed: int | None = None) -> dict:
    """The ``synthesize_icassp`` stage: the dataset of the params section (if any) into ``out``;
    ``buildings`` and ``seed`` override it."""
    p = dict(params.get("synthesize_icassp", {}))
    p.update({k: v for k, v in {"buildings": buildings, "seed": seed}.items() if v is not None})
    if "buildings" not in p:
        raise RadiodiffError("synthesize icassp: give --buildings or --params")
    p = {k: tuple(v) if isinstance(v, list) else v for k, v in p.items()}
    summary = synthesize(out, progress=progress_bar("synthesize icassp"), **p)
    return {"stage": "synthesize_icassp", "out": str(out), **summary}
