"""The datasets' encodings of path gain and path loss, in one place (REFERENCE.md §1, §2).

Three scales meet in radiodiff:

- **dB**: RadioMapSeer path *gain* (negative, −147 dB floor) and ICASSP path *loss* (13–160 dB);
- **unit**: the [0, 1] scale every model and metric works on, bright = strong signal
  (RadioMapSeer gray / 255; ICASSP (160 − PL) / 147);
- **PNG**: the uint8 files (RadioMapSeer gray = round(255·unit), buildings 0; ICASSP gray = the
  path loss in dB, rounded, clipped to 13–160, padded pixels 0).

Every function keeps its input's floating dtype and works on NumPy arrays and torch tensors
alike (``clamp`` for tensors, ``np.clip`` otherwise), so each caller's arithmetic, and so its
numbers, stay the same wherever it runs. This module imports neither torch nor any other part
of radiodiff: every stage may use it.
"""

from __future__ import annotations

import numpy as np

# RadioMapSeer (REFERENCE §1): gray = round(255·max((PG + 147) / 99.16, 0)), 5.9 GHz, 1 m/pixel.
PG_FLOOR_DB = -147.0
PG_MAX_DB = -47.84
RADIOMAPSEER_DB_PER_UNIT = 99.16  # PG_MAX_DB − PG_FLOOR_DB: dB spanned by the [0, 1] scale
RADIOMAPSEER_FREQUENCY_HZ = 5.9e9  # at 1 m/pixel

# ICASSP 2025 (SPEC "ICASSP conventions"): unit = (160 − PL) / (160 − 13), 0.25 m/pixel.
PL_MIN_DB = 13.0
PL_MAX_DB = 160.0
ICASSP_DB_PER_UNIT = 147.0  # PL_MAX_DB − PL_MIN_DB
ICASSP_PIXEL_SIZE_M = 0.25
RADIOMAPSEER_PIXEL_SIZE_M = 1.0  # its maps: 256 × 256 pixels of 1 m
RADIOMAPSEER_SIDE_PX = 256

GRAY_MAX = 255.0  # uint8 full scale


def _clip(x, lo: float, hi: float):
    """Clip an array or a tensor, keeping its type and dtype."""
    return x.clamp(lo, hi) if hasattr(x, "clamp") else np.clip(x, lo, hi)


def _float(x):
    """Integer arrays (PNG pixels) as float64; floating arrays and tensors unchanged."""
    if hasattr(x, "clamp"):
        return x
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


# --------------------------------------------------------------------------------- RadioMapSeer


def gain_db_to_unit(pg_db):
    """Path gain dB → unit (PG + 147) / 99.16, not clipped (−inf → −inf)."""
    return (_float(pg_db) - PG_FLOOR_DB) / (PG_MAX_DB - PG_FLOOR_DB)


def unit_to_gray(unit) -> np.ndarray:
    """Unit → RadioMapSeer uint8 gray: round(255·clip(unit, 0, 1)) (half to even)."""
    u = _clip(unit, 0.0, 1.0)
    if hasattr(u, "numpy"):
        u = u.numpy()
    return np.rint(u * GRAY_MAX).astype(np.uint8)


def gain_db_to_gray(pg_db) -> np.ndarray:
    """Path gain dB → RadioMapSeer uint8 gray (the dataset's encoding; −inf and the floor → 0)."""
    return unit_to_gray(gain_db_to_unit(pg_db))


def gray_to_unit(gray) -> np.ndarray:
    """RadioMapSeer uint8 gray → unit, float32 (gray / 255)."""
    return np.asarray(gray).astype(np.float32) / GRAY_MAX


def gray_to_gain_db(gray) -> np.ndarray:
    """RadioMapSeer uint8 gray → path gain dB, float64; 0 maps to the −147 dB floor."""
    return np.asarray(gray, dtype=np.float64) / GRAY_MAX * RADIOMAPSEER_DB_PER_UNIT + PG_FLOOR_DB


def gain_db_per_unit(gain_threshold: float = 0.0) -> float:
    """dB per unit of the model's scale: 99.16, times (1 − threshold) under RadioUNet's
    noise-floor threshold (the scale then spans threshold..1 of the gray range)."""
    return RADIOMAPSEER_DB_PER_UNIT * (1.0 - float(gain_threshold))


def apply_gain_threshold(unit, gain_threshold: float):
    """RadioUNet's noise-floor clip: max(unit, t) rescaled from [t, 1] to [0, 1] (t = 0: unchanged)."""
    if gain_threshold <= 0:
        return unit
    u = np.maximum(unit, gain_threshold)
    return (u - gain_threshold) / (1.0 - gain_threshold)


def unit_to_gain_db(unit, gain_threshold: float = 0.0):
    """Unit (after :func:`apply_gain_threshold` with ``gain_threshold``) → path gain dB."""
    t = float(gain_threshold)
    return PG_FLOOR_DB + (t + np.asarray(unit) * (1 - t)) * RADIOMAPSEER_DB_PER_UNIT


# --------------------------------------------------------------------------------- ICASSP 2025


def pl_db_to_unit(pl_db):
    """Path loss dB → unit (160 − PL) / 147, clipped to [0, 1]."""
    return _clip((PL_MAX_DB - _float(pl_db)) / (PL_MAX_DB - PL_MIN_DB), 0.0, 1.0)


def unit_to_pl_db(unit):
    """Unit → path loss dB: 160 − clip(unit, 0, 1)·147."""
    return PL_MAX_DB - _clip(_float(unit), 0.0, 1.0) * (PL_MAX_DB - PL_MIN_DB)


def pl_db_to_png(pl_db, valid=None) -> np.ndarray:
    """Path loss dB → the challenge's uint8 gray: rounded, clipped to 13–160; 0 where not ``valid``."""
    if hasattr(pl_db, "numpy"):
        pl_db = pl_db.numpy()
    pl = np.clip(np.rint(pl_db), PL_MIN_DB, PL_MAX_DB)
    if valid is not None:
        pl = np.where(np.asarray(valid), pl, 0)
    return pl.astype(np.uint8)


def unit_to_pl_png(unit, valid=None) -> np.ndarray:
    """Unit → ICASSP path-loss PNG (see :func:`pl_db_to_png`)."""
    return pl_db_to_png(unit_to_pl_db(unit), valid)


def pl_png_to_unit(png) -> np.ndarray:
    """ICASSP path-loss PNG → unit, float32; 0 (padding) and values outside 13–160 dB are clipped."""
    return pl_db_to_unit(np.clip(np.asarray(png).astype(np.float32), PL_MIN_DB, PL_MAX_DB))


def channel_to_model(png):
    """A uint8 input channel (0–255) → the models' [−1, 1] scale, float32."""
    return np.asarray(png).astype(np.float32) / GRAY_MAX * 2.0 - 1.0


def model_to_channel(x):
    """Inverse of :func:`channel_to_model` (array or tensor), not rounded."""
    return (x + 1.0) / 2.0 * GRAY_MAX
