"""The physics baselines, which need no training, and the log-distance prior built from them.

- RadioMapSeer: log-distance path gain, ``PG = −FSPL(1 m, 5.9 GHz) − 10·n·log10 d``, on the
  dataset's unit scale, no shadowing, building pixels 0 as in the data. The exponent ``n`` is
  fitted on the training split by least squares on the unit scale over outdoor pixels (the
  quantity the metrics score), by a coarse-to-fine grid search. The same map is the ``physics``
  condition channel of the RadioMapSeer models.
- ICASSP: free-space loss with the antenna pattern, no walls: the B channel of the arranged
  input (``FSPL(d, f) − G(θ)`` in dB, rounded), clipped to the 13–160 dB range of the targets.
"""

from __future__ import annotations

import numpy as np

from radiodiff.core.encodings import (
    PL_MAX_DB,
    PL_MIN_DB,
    RADIOMAPSEER_FREQUENCY_HZ,
    gain_db_to_unit,
    model_to_channel,
    pl_db_to_unit,
)
from radiodiff.physics.propagation import fspl_db, log_distance_db

EXPONENT_RANGE = (1.5, 6.0)


def log_distance_unit(shape: tuple[int, int], tx_rc, exponent: float, pixel_size_m: float = 1.0) -> np.ndarray:
    """Log-distance path gain of a (rows, cols) grid on RadioMapSeer's unit scale (no shadowing), float32."""
    rows, cols = np.indices(shape, dtype=np.float64)
    d = np.hypot(rows - tx_rc[0], cols - tx_rc[1]) * pixel_size_m
    pg = -log_distance_db(np.maximum(d, 1.0), RADIOMAPSEER_FREQUENCY_HZ, exponent)
    return np.clip(gain_db_to_unit(pg), 0.0, 1.0).astype(np.float32)


def _log_distance_from_log10_d(log10_d: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    pg = -fspl_db(1.0, RADIOMAPSEER_FREQUENCY_HZ) - 10.0 * exponent * log10_d
    return np.clip(gain_db_to_unit(pg), 0.0, 1.0)


def fit_log_distance_exponent(samples, full_size: int) -> float:
    """The exponent n minimizing the unit-scale MSE of the log-distance map on outdoor pixels.

    ``samples``: iterable of (target [0, 1] S×S, buildings fraction S×S, Tx (row, col) at S) at
    model resolution; ``full_size`` is the maps' side in metres (1 m/pixel in RadioMapSeer).
    """
    log_d, target = [], []
    for g, b, tx in samples:
        size = g.shape[-1]
        rows, cols = np.indices(g.shape, dtype=np.float64)
        d = np.maximum(np.hypot(rows - tx[0], cols - tx[1]) * full_size / size, 1.0)
        outdoor = b < 0.5
        log_d.append(np.log10(d[outdoor]))
        target.append(g[outdoor].astype(np.float64))
    if not log_d:
        raise ValueError("fit_log_distance_exponent: no samples")
    log_d, target = np.concatenate(log_d), np.concatenate(target)
    if len(log_d) > 400_000:  # a fixed subsample keeps the fit fast and deterministic
        keep = np.random.default_rng(0).choice(len(log_d), 400_000, replace=False)
        log_d, target = log_d[keep], target[keep]

    def mse(grid):
        return [float(np.mean((_log_distance_from_log10_d(log_d, n) - target) ** 2)) for n in grid]

    lo, hi = EXPONENT_RANGE
    grid = np.arange(lo, hi + 1e-9, 0.1)
    best = grid[int(np.argmin(mse(grid)))]
    fine = np.arange(max(lo, best - 0.1), min(hi, best + 0.1) + 1e-9, 0.005)
    return round(float(fine[int(np.argmin(mse(fine)))]), 3)


def radiomapseer_physics(buildings: np.ndarray, tx_rc, exponent: float, full_size: int) -> np.ndarray:
    """Log-distance unit map at the model resolution times each pixel's outdoor fraction
    (``buildings`` is the area-averaged building mask): the data's buildings-are-0 convention
    carried through the area averaging, so fully covered pixels are 0."""
    size = buildings.shape[-1]
    pred = log_distance_unit((size, size), tx_rc, exponent, pixel_size_m=full_size / size)
    return (pred * (1.0 - np.clip(buildings, 0.0, 1.0))).astype(np.float32)


def icassp_physics_unit(inputs):
    """ICASSP FSPL-with-pattern baseline on the unit scale from arranged inputs in [−1, 1].

    ``inputs`` (B, 3, S, S) tensor: channel B holds FSPL − G(θ) in dB (0–255 as gray).
    """
    pl_db = model_to_channel(inputs[:, 2:3]).clamp(PL_MIN_DB, PL_MAX_DB)
    return pl_db_to_unit(pl_db)
