"""Edge maps of radio maps (OpenCV), the input of the edge-aware VAE loss.

Canny uses hysteresis thresholds; Sobel, Laplacian and Prewitt threshold the gradient
magnitude. Output: uint8, 255 on an edge, 0 elsewhere, same name and size as the gain map.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from radiodiff.core.errors import DataError
from radiodiff.core.io import atomic_dir, read_png, write_png

METHODS = ("canny", "sobel", "laplacian", "prewitt")
_PREWITT_X = np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], dtype=np.float32)


def edge_map(
    gray: np.ndarray,
    method: str = "canny",
    low_threshold: float = 50,
    high_threshold: float = 150,
    ksize: int = 3,
    threshold: float = 40,
) -> np.ndarray:
    """Binary edge map (uint8 0/255) of a uint8 gray image."""
    if method == "canny":
        return cv2.Canny(gray, low_threshold, high_threshold, apertureSize=max(ksize, 3))
    g = gray.astype(np.float32)
    if method == "sobel":
        k = ksize if ksize > 1 else 3
        mag = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=k), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=k))
    elif method == "laplacian":
        mag = np.abs(cv2.Laplacian(g, cv2.CV_32F, ksize=ksize))
    elif method == "prewitt":
        mag = np.hypot(cv2.filter2D(g, cv2.CV_32F, _PREWITT_X), cv2.filter2D(g, cv2.CV_32F, _PREWITT_X.T))
    else:
        raise ValueError(f"edge method must be one of {METHODS}, got {method!r}")
    return np.where(mag > threshold, 255, 0).astype(np.uint8)


def extract_edges(gain_dir: str | Path, out: str | Path, **settings) -> dict:
    """Edge map of every ``*.png`` in ``gain_dir`` into ``out`` (atomically)."""
    gain_dir = Path(gain_dir)
    files = sorted(gain_dir.glob("*.png"))
    if not files:
        raise DataError(f"{gain_dir}: no gain maps (*.png)")
    fractions = []
    with atomic_dir(out) as tmp:
        for p in files:
            e = edge_map(read_png(p, "L"), **settings)
            fractions.append(float((e > 0).mean()))
            write_png(tmp / p.name, e)
    return {"files": len(files), "edge_fraction_mean": float(np.mean(fractions)), **settings}


def run(params: dict, root, out) -> dict:
    """The ``edges`` stage: edge maps of the ``data.radiomapseer.simulation`` gain maps of ``root``."""
    simulation = params["data"]["radiomapseer"]["simulation"]
    return {"stage": "edges", **extract_edges(Path(root) / "gain" / simulation, out, **params["edges"])}
