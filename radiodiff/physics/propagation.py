"""Propagation formulas and the vectorized geometry behind them (REFERENCE.md §5).

Rays are cast in polar form from the transmitter: ``n_rays`` directions sampled every
``step_px`` pixels, then each pixel looks up the ray nearest its bearing. This costs
O(rays × steps) instead of O(pixels × line length) and is exact enough for radio maps.
Coordinates are (row, col) in pixels; bearings follow SPEC: θ = atan2(Δrow, Δcol).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

SPEED_OF_LIGHT = 299_792_458.0


def fspl_db(distance_m, frequency_hz):
    """Free-space path loss 20·log10(4π·d·f/c) in dB (d in metres, f in Hz)."""
    d = np.asarray(distance_m, dtype=np.float64)
    return 20.0 * np.log10(4.0 * math.pi * d * frequency_hz / SPEED_OF_LIGHT)


def log_distance_db(distance_m, frequency_hz, exponent: float, d0_m: float = 1.0):
    """Log-distance path loss: FSPL(d0) + 10·n·log10(d/d0)."""
    d = np.maximum(np.asarray(distance_m, dtype=np.float64), d0_m)
    return fspl_db(d0_m, frequency_hz) + 10.0 * exponent * np.log10(d / d0_m)


def pixel_geometry(shape: tuple[int, int], tx_rc: tuple[float, float]):
    """Per pixel: distance to the Tx in pixels and bearing θ = atan2(Δrow, Δcol) in radians."""
    rows, cols = np.indices(shape, dtype=np.float64)
    drow, dcol = rows - tx_rc[0], cols - tx_rc[1]
    return np.hypot(drow, dcol), np.arctan2(drow, dcol)


def _default_rays(shape) -> int:
    # Arc spacing ≤ ~0.7 px at the far corner keeps every pixel close to a ray.
    return int(math.ceil(2 * math.pi * math.hypot(*shape) * 1.5 / 8.0) * 8)


def cast_rays(field: np.ndarray, tx_rc, n_rays: int | None = None, step_px: float = 0.5):
    """Sample ``field`` (nearest pixel) along rays from the Tx.

    Returns ``(samples[n_rays, n_steps], step_px)``; samples outside the map are 0.
    """
    h, w = field.shape
    n_rays = n_rays or _default_rays(field.shape)
    n_steps = int(math.ceil(math.hypot(h, w) / step_px)) + 2
    ang = np.arange(n_rays) * (2 * math.pi / n_rays)
    rad = np.arange(n_steps) * step_px
    r = np.rint(tx_rc[0] + np.sin(ang)[:, None] * rad[None, :]).astype(np.int64)
    c = np.rint(tx_rc[1] + np.cos(ang)[:, None] * rad[None, :]).astype(np.int64)
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    samples = np.zeros((n_rays, n_steps), dtype=field.dtype)
    samples[inside] = field[r[inside], c[inside]]
    return samples, step_px


def lookup_rays(per_ray: np.ndarray, shape, tx_rc, step_px: float, back_off_px: float = 0.0):
    """Per pixel, the value of ``per_ray[ray, k]`` at its nearest ray and radius index
    ``k = floor((r − back_off) / step)`` (clamped to the ray)."""
    n_rays, n_steps = per_ray.shape
    dist, theta = pixel_geometry(shape, tx_rc)
    ray = np.rint(theta / (2 * math.pi) * n_rays).astype(np.int64) % n_rays
    k = np.clip(np.floor((dist - back_off_px) / step_px).astype(np.int64), 0, n_steps - 1)
    return per_ray[ray, k]


def line_of_sight(blocked: np.ndarray, tx_rc, n_rays: int | None = None, step_px: float = 0.5) -> np.ndarray:
    """True where the straight line from the Tx reaches the pixel without crossing ``blocked``.

    The pixel's own cell is excluded (a wall pixel facing the Tx is in sight).
    """
    samples, step = cast_rays(blocked.astype(bool), tx_rc, n_rays, step_px)
    hit_before = np.logical_or.accumulate(samples, axis=1)
    # Look half a pixel short of the pixel centre so its own cell does not count.
    return ~lookup_rays(hit_before, blocked.shape, tx_rc, step, back_off_px=0.75)


def wall_loss_db(transmittance_db: np.ndarray, tx_rc, n_rays: int | None = None, step_px: float = 0.5) -> np.ndarray:
    """Σ transmittance loss of the walls crossed on the straight line Tx → pixel.

    A wall is counted once, when the ray enters it (a change of material counts as a new wall).
    """
    t = np.asarray(transmittance_db, dtype=np.float32)
    samples, step = cast_rays(t, tx_rc, n_rays, step_px)
    prev = np.concatenate([np.zeros_like(samples[:, :1]), samples[:, :-1]], axis=1)
    entering = (samples > 0) & (samples != prev)
    cum = np.cumsum(np.where(entering, samples, 0.0), axis=1, dtype=np.float64)
    # The Tx's own wall (if it stands in one) is not a crossing.
    own = samples[:, :1]
    cum = cum - np.where(own > 0, own, 0.0)
    return lookup_rays(cum, t.shape, tx_rc, step)


def octile_distance(shape, tx_rc) -> np.ndarray:
    """Length of the straight 8-neighbour path to every pixel (the geodesic with no obstacle)."""
    rows, cols = np.indices(shape, dtype=np.float64)
    a, b = np.abs(rows - tx_rc[0]), np.abs(cols - tx_rc[1])
    return np.maximum(a, b) + (math.sqrt(2) - 1) * np.minimum(a, b)


def geodesic_distance(free: np.ndarray, tx_rc) -> np.ndarray:
    """Shortest 8-neighbour path length (pixels) from the Tx through ``free`` pixels
    (Dijkstra). Unreachable and blocked pixels are +inf."""
    h, w = free.shape
    idx = np.arange(h * w).reshape(h, w)
    src, dst, wt = [], [], []
    for dr, dc, cost in ((0, 1, 1.0), (1, 0, 1.0), (1, 1, math.sqrt(2)), (1, -1, math.sqrt(2))):
        r0, r1 = 0, h - dr
        c0, c1 = max(0, -dc), w - max(0, dc)
        a = free[r0:r1, c0:c1]
        b = free[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
        ok = a & b
        src.append(idx[r0:r1, c0:c1][ok])
        dst.append(idx[r0 + dr : r1 + dr, c0 + dc : c1 + dc][ok])
        wt.append(np.full(int(ok.sum()), cost))
    graph = sparse.csr_matrix((np.concatenate(wt), (np.concatenate(src), np.concatenate(dst))), shape=(h * w, h * w))
    tx = int(round(tx_rc[0])) * w + int(round(tx_rc[1]))
    dist = csgraph.dijkstra(graph, directed=False, indices=tx)
    return dist.reshape(h, w)
