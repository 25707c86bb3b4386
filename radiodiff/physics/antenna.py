"""Antenna radiation patterns of the ICASSP 2025 challenge kind (REFERENCE.md §2, §5).

A pattern is 360 gains in dB, one per azimuth degree relative to the antenna's boresight.
The gain a pixel sees follows SPEC's "ICASSP conventions": θ = atan2(Δrow, Δcol) in degrees
(0° along +columns, clockwise on screen) and the pattern index is round(θ − azimuth) mod 360.

Patterns are relative gains, as the real challenge patterns are (REFERENCE.md §5): the peak is
0 dB. Ant1 is isotropic; Ant2–5 are directional with a 3GPP TR 38.901-style parabolic main lobe
``G(φ) = −min(12·(φ/φ3dB)², S(φ))`` whose side lobes ``S`` sit near a side-lobe level with narrow
nulls down to the depth ``Am``, so the gain spans (max − min) range from about 12 to about 50 dB
and the mean gains from about −6 to −22 dB, as in the real patterns (spans 12–52 dB, mean gains
−5 to −25 dB).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from radiodiff.core.encodings import ICASSP_PIXEL_SIZE_M
from radiodiff.core.errors import DataError
from radiodiff.core.io import atomic_file
from radiodiff.physics.propagation import fspl_db, pixel_geometry

ANTENNAS = (1, 2, 3, 4, 5)
N_ANGLES = 360

# Directional antennas: (half-power beamwidth deg, null depth Am dB, side-lobe level dB below the peak).
_DIRECTIONAL = {
    2: (90.0, 14.0, 8.0),
    3: (65.0, 28.0, 12.0),
    4: (40.0, 44.0, 16.0),
    5: (25.0, 58.0, 20.0),
}


def make_patterns(seed: int) -> dict[int, np.ndarray]:
    """The five antenna patterns (relative gain dB per degree, index 0 = boresight, peak 0 dB)
    for a dataset seed.

    The main lobes are fixed per antenna; the seed only moves the side lobes (their number and
    phase), as two measured antennas of one model differ in their side lobes, not in their beam.
    """
    offset = (np.arange(N_ANGLES) + 180) % N_ANGLES - 180.0  # φ in [−180, 180)
    patterns = {1: np.zeros(N_ANGLES)}
    for a, (beamwidth, a_m, side_level) in _DIRECTIONAL.items():
        rng = np.random.default_rng([seed, a])
        lobes = int(rng.integers(4, 9))
        phase = rng.uniform(0.0, 2.0 * math.pi)
        # |cos|^(1/4) is near 1 over each lobe and falls to 0 in a narrow null between lobes.
        lobe = np.abs(np.cos(np.deg2rad(offset) * lobes / 2 + phase)) ** 0.25
        side = a_m - (a_m - side_level) * lobe
        attenuation = np.minimum(12.0 * (offset / beamwidth) ** 2, side)
        patterns[a] = np.round(-attenuation, 3) + 0.0  # + 0.0: no −0.0 in the CSV
    return patterns


def pattern_index(theta_deg, azimuth_deg) -> np.ndarray:
    """Pattern row for bearing θ and Tx azimuth: round(θ − azimuth) mod 360 (half to even)."""
    diff = np.asarray(theta_deg, dtype=np.float64) - float(azimuth_deg)
    return np.rint(diff).astype(np.int64) % N_ANGLES


def pattern_gain_db(pattern: np.ndarray, theta_deg, azimuth_deg) -> np.ndarray:
    """Gain in dB toward bearing(s) ``theta_deg`` of an antenna steered to ``azimuth_deg``."""
    pattern = np.asarray(pattern, dtype=np.float64)
    if pattern.shape != (N_ANGLES,):
        raise ValueError(f"a radiation pattern has {N_ANGLES} gains, got shape {pattern.shape}")
    return pattern[pattern_index(theta_deg, azimuth_deg)]


def fspl_pattern_db(
    shape: tuple[int, int],
    tx_rc: tuple[float, float],
    frequency_hz: float,
    pattern: np.ndarray,
    azimuth_deg: float,
    min_distance_m: float = 0.1,
    pixel_size_m: float = ICASSP_PIXEL_SIZE_M,
) -> np.ndarray:
    """Free-space loss minus the antenna gain toward each pixel, in dB (float)."""
    dist_px, theta = pixel_geometry(shape, tx_rc)
    d_m = np.maximum(dist_px * pixel_size_m, min_distance_m)
    return fspl_db(d_m, frequency_hz) - pattern_gain_db(pattern, np.degrees(theta), azimuth_deg)


def read_pattern(path: str | os.PathLike) -> np.ndarray:
    """Read a pattern CSV: 360 gains in dB, one per row; a non-numeric first row is a header.

    A missing file, a non-numeric value or a count other than 360 raises :class:`DataError`
    naming the file.
    """
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if any(cell.strip() for cell in r)]
    except FileNotFoundError:
        raise DataError(f"{path}: radiation pattern file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: unreadable radiation pattern ({e})") from None
    if rows and not is_number(rows[0][0]):
        rows = rows[1:]
    values = []
    for i, row in enumerate(rows):
        cells = [c for c in row if c.strip()]
        if len(cells) != 1 or not is_number(cells[0]):
            raise DataError(f"{path}: row {i + 1} is not one numeric gain: {row!r}")
        values.append(float(cells[0]))
    if len(values) != N_ANGLES:
        raise DataError(f"{path}: expected {N_ANGLES} gains, found {len(values)}")
    pattern = np.asarray(values)
    if not np.all(np.isfinite(pattern)):
        raise DataError(f"{path}: radiation pattern has non-finite gains")
    return pattern


def write_pattern(path: str | os.PathLike, pattern: np.ndarray) -> None:
    """Write a pattern as 360 rows of gain dB, no header (the challenge's layout), atomically."""
    pattern = np.asarray(pattern, dtype=np.float64)
    if pattern.shape != (N_ANGLES,):
        raise ValueError(f"a radiation pattern has {N_ANGLES} gains, got shape {pattern.shape}")
    with atomic_file(path) as f:
        f.writelines(f"{v:.6g}\n" for v in pattern)


def is_number(text: str) -> bool:
    """True if a CSV cell parses as a float (used to skip header rows)."""
    try:
        float(text)
    except ValueError:
        return False
    return True
