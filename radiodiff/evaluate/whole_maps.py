"""Whole maps of any size from a trained model: resampled to the model's metres per pixel,
predicted by sliding windows (:mod:`radiodiff.evaluate.windows`), resampled back to the input's
size.

- RadioMapSeer-style: a building mask of any shape at ``pixel_size_m`` metres per pixel
  (RadioMapSeer's own: 1 m) and a Tx (row, col) in its pixels give the gain map (unit scale,
  buildings 0) at the mask's size; the condition is built on the whole resampled map, so the
  physics prior and the Tx channel are the map's, not a window's.
- ICASSP: an arranged input (H, W, 3) uint8 (R reflectance, G transmittance, B FSPL − G(θ))
  at 0.25 m/pixel gives the path-loss map on the unit scale at its size.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from radiodiff.core.encodings import ICASSP_PIXEL_SIZE_M, channel_to_model
from radiodiff.core.errors import DataError, RadiodiffError
from radiodiff.data.radiomapseer import make_condition
from radiodiff.evaluate.windows import Tiling, model_shape, predict_windows, window_settings


def resize(image: np.ndarray, shape: tuple[int, int], area: bool) -> np.ndarray:
    """``image`` (H, W[, C]) float resized to ``shape`` (area averaging down, bilinear up)."""
    if image.shape[:2] == tuple(shape):
        return image.astype(np.float32)
    flag = cv2.INTER_AREA if area else cv2.INTER_LINEAR
    return cv2.resize(image.astype(np.float32), (shape[1], shape[0]), interpolation=flag)


def check_tx(tx_rc, shape, where) -> tuple[int, int]:
    r, c = int(tx_rc[0]), int(tx_rc[1])
    if not (0 <= r < shape[0] and 0 <= c < shape[1]):
        raise DataError(f"{where}: Tx (row {r}, col {c}) lies outside the {shape[1]}×{shape[0]} map")
    return r, c


def radiomapseer_whole(
    pipe,
    buildings: np.ndarray,
    tx_rc,
    pixel_size_m: float = 1.0,
    cars: np.ndarray | None = None,
    *,
    window: dict | None = None,
    steps=None,
    generator=None,
    where="buildings",
) -> tuple[np.ndarray, Tiling]:
    """The gain map (H, W) on [0, 1], buildings 0, of a building mask (H, W) bool at
    ``pixel_size_m`` with a Tx (row, col) in its pixels; and the tiling (at the model's grid)."""
    if pixel_size_m <= 0:
        raise RadiodiffError(f"--metres-per-pixel: expected a positive size, got {pixel_size_m}")
    tx = check_tx(tx_rc, buildings.shape, where)
    if buildings[tx]:
        raise DataError(f"{where}: Tx (row {tx[0]}, col {tx[1]}) lies inside a building")
    if pipe.condition == "dynamic" and cars is None:
        raise RadiodiffError("this model was trained on the dynamic condition: give --cars PNG")
    if cars is not None and cars.shape != buildings.shape:
        raise DataError(f"{where}: the cars mask is {cars.shape[1]}×{cars.shape[0]}, the buildings are not")
    shape = model_shape(buildings.shape, pixel_size_m, pipe.metres_per_pixel)
    cond, _, _ = make_condition(
        buildings,
        tx,
        shape,
        pipe.condition,
        pipe.physics_exponent or 2.0,
        cars,
        pixel_size_m=pixel_size_m,
    )
    small, tiling = predict_windows(
        pipe, torch.from_numpy(cond), **window_settings(window), steps=steps, generator=generator
    )
    gain = resize(small[0].numpy(), buildings.shape, area=False)
    gain[buildings] = 0.0
    return gain, tiling


def icassp_whole(
    pipe, arranged: np.ndarray, *, window: dict | None = None, steps=None, generator=None
) -> tuple[np.ndarray, Tiling]:
    """The path-loss map (H, W) on the unit scale of an arranged ICASSP input (H, W, 3) uint8 at
    0.25 m/pixel; and the tiling (at the model's grid)."""
    shape = model_shape(arranged.shape[:2], ICASSP_PIXEL_SIZE_M, pipe.metres_per_pixel)
    image = resize(arranged.astype(np.float32), shape, area=True)
    cond = torch.from_numpy(channel_to_model(image.transpose(2, 0, 1)).astype(np.float32))
    small, tiling = predict_windows(pipe, cond, **window_settings(window), steps=steps, generator=generator)
    return resize(small[0].numpy(), arranged.shape[:2], area=False), tiling
