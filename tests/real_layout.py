"""Test support: a RadioMapSeer folder rebuilt from the gain maps ``../shared/real`` ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radiodiff.core.errors import DataError
from radiodiff.core.io import read_png, write_json, write_png


def real_layout_from_gain_maps(gain_dir: str | Path, out: str | Path, map_id: int = 0, simulation: str = "DPM") -> Path:
    """Rebuild a RadioMapSeer folder from gain maps alone (as ``shared/real`` ships them):
    buildings = pixels that are 0 in every gain map of the map; Tx = argmax of each map.

    ``gain_dir`` holds ``{map}_{tx}.png``; returns ``out``.
    """
    gain_dir, out = Path(gain_dir), Path(out)
    files = sorted(gain_dir.glob(f"{map_id}_*.png"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        raise DataError(f"{gain_dir}: no {map_id}_{{tx}}.png gain maps")
    gains = [read_png(p, "L") for p in files]
    buildings = np.all(np.stack(gains) == 0, axis=0)
    for d in ("antenna", f"gain/{simulation}", "png/buildings_complete", "png/antennas"):
        (out / d).mkdir(parents=True, exist_ok=True)
    write_png(out / "png/buildings_complete" / f"{map_id}.png", (buildings * 255).astype(np.uint8))
    txs = []
    for t, g in enumerate(gains):
        r, c = np.unravel_index(int(np.argmax(g)), g.shape)
        txs.append([int(c), int(r)])
        onehot = np.zeros_like(g)
        onehot[r, c] = 255
        write_png(out / "png/antennas" / f"{map_id}_{t}.png", onehot)
        write_png(out / f"gain/{simulation}" / f"{map_id}_{t}.png", g)
    write_json(out / "antenna" / f"{map_id}.json", txs)
    return out
