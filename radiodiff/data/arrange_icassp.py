"""ICASSP arrangement: 3-channel model inputs with the antenna physics baked in (REFERENCE.md §2).

Written (atomically) into ``out``::

    inputs/{name}.png    RGB uint8: R = reflectance dB, G = transmittance dB (both copied),
                         B = FSPL(max(d, min_distance), f) − G(θ) in dB, rounded, clipped to [0, 255]
    targets/{name}.png   the path-loss gray, copied
    metadata.csv         METADATA_COLUMNS; the split is by building (``split_ids``)

The B channel replaces the raw distance with the "RadioDiff Enhanced" FSPL-with-pattern map,
which is what the strong challenge entries fed their networks.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from radiodiff.core.encodings import ICASSP_PIXEL_SIZE_M
from radiodiff.core.errors import DataError
from radiodiff.core.io import atomic_dir, read_png, write_png
from radiodiff.data.icassp import (
    building_splits,
    discover,
    frequency_hz,
    input_path,
    output_path,
    pattern_path,
    positions_path,
    tx_position,
    write_metadata,
)
from radiodiff.physics.antenna import fspl_pattern_db, read_pattern

METADATA_COLUMNS = [
    "name",
    "building",
    "antenna",
    "band",
    "sample",
    "frequency_hz",
    "tx_col",
    "tx_row",
    "azimuth_deg",
    "width",
    "height",
    "split",
]


def arranged_input(
    rgb: np.ndarray,
    tx_rc: tuple[float, float],
    frequency_hz: float,
    pattern: np.ndarray,
    azimuth_deg: float,
    min_distance_m: float = 0.1,
    pixel_size_m: float = ICASSP_PIXEL_SIZE_M,
) -> np.ndarray:
    """A raw input RGB (H, W, 3) uint8 with channel B replaced by FSPL − G(θ) in dB, rounded and
    clipped to [0, 255]."""
    fspl = fspl_pattern_db(rgb.shape[:2], tx_rc, frequency_hz, pattern, azimuth_deg, min_distance_m, pixel_size_m)
    arranged = rgb[..., :3].copy()
    arranged[..., 2] = np.clip(np.rint(fspl), 0, 255).astype(np.uint8)
    return arranged


def tx_in_wall(rgb: np.ndarray, tx_rc: tuple[int, int]) -> bool:
    """Whether pixel ``tx_rc`` of a raw input is a wall: a nonzero reflectance (R) or
    transmittance (G); free space is 0 in both."""
    return bool(rgb[tx_rc[0], tx_rc[1], :2].any())


class RawSamples:
    """The per-sample settings of a raw ICASSP folder (Tx, azimuth, pattern, band), each
    positions and pattern file read once; :meth:`arrange` checks them and arranges one input."""

    def __init__(self, root, on_wall_tx: str = "error"):
        if on_wall_tx not in ("error", "count"):
            raise ValueError(f"on_wall_tx: expected 'error' or 'count', got {on_wall_tx!r}")
        self.root = Path(root)
        self.on_wall_tx = on_wall_tx
        self.in_wall: list[str] = []  # the samples whose Tx pixel is a wall ("count")
        self.positions: dict[Path, np.ndarray] = {}
        self.patterns: dict[int, np.ndarray] = {}

    def arrange(
        self, sid, rgb: np.ndarray, in_path, min_distance_m: float = 0.1, pixel_size_m: float = ICASSP_PIXEL_SIZE_M
    ) -> tuple[np.ndarray, tuple[float, float, float], float]:
        """Sample ``sid``'s input ``rgb`` arranged (:func:`arranged_input`), its (X, Y, azimuth)
        and carrier frequency; a missing row, a Tx outside the map, an unknown antenna or band is
        a DataError naming the file. A Tx on a wall pixel is one too (``on_wall_tx="error"``, what
        predict uses), or is listed in :attr:`in_wall` (``"count"``, the arrange stage's choice:
        a real dataset's positions are data, reported rather than refused)."""
        height, width = rgb.shape[:2]
        x, y, azimuth = tx_position(self.positions, self.root, sid)
        if not (0 <= round(x) < width and 0 <= round(y) < height):
            pos_path = positions_path(self.root, sid.building, sid.antenna, sid.band)
            raise DataError(
                f"{pos_path}: Tx of S{sid.sample} at X={x:g}, Y={y:g} lies outside the {width}×{height} map"
            )
        if tx_in_wall(rgb, (round(y), round(x))):
            if self.on_wall_tx == "count":
                self.in_wall.append(sid.name)
            else:
                pos_path = positions_path(self.root, sid.building, sid.antenna, sid.band)
                raise DataError(f"{pos_path}: Tx of S{sid.sample} at X={x:g}, Y={y:g} lies inside a wall of {in_path}")
        if sid.antenna not in self.patterns:
            pat_path = pattern_path(self.root, sid.antenna)
            if not pat_path.is_file():
                raise DataError(f"{pat_path}: unknown antenna id Ant{sid.antenna} (no pattern file) for {in_path}")
            self.patterns[sid.antenna] = read_pattern(pat_path)
        freq = frequency_hz(sid.band, in_path)
        pattern = self.patterns[sid.antenna]
        return arranged_input(rgb, (y, x), freq, pattern, azimuth, min_distance_m, pixel_size_m), (x, y, azimuth), freq


def arrange(
    root: str | os.PathLike,
    out: str | os.PathLike,
    task: str,
    split_cfg: dict,
    min_distance_m: float = 0.1,
    pixel_size_m: float = ICASSP_PIXEL_SIZE_M,
) -> dict:
    """Arrange every sample of ``Inputs/{task}`` under ``root`` into ``out``; returns a summary."""
    root = Path(root)
    ids = discover(root, task)
    split_of = building_splits([s.building for s in ids], split_cfg)
    raw = RawSamples(root, on_wall_tx="count")
    rows = []
    with atomic_dir(out) as tmp:
        (tmp / "inputs").mkdir()
        (tmp / "targets").mkdir()
        for sid in ids:
            in_path, out_path = input_path(root, task, sid), output_path(root, task, sid)
            rgb = read_png(in_path, mode="RGB")[..., :3]
            pl = read_png(out_path, mode="L")
            if pl.shape != rgb.shape[:2]:
                raise DataError(
                    f"{out_path}: size {pl.shape[1]}×{pl.shape[0]} differs from its input's "
                    f"{rgb.shape[1]}×{rgb.shape[0]} ({in_path})"
                )
            height, width = pl.shape

            arranged, (x, y, azimuth), freq = raw.arrange(sid, rgb, in_path, min_distance_m, pixel_size_m)

            write_png(tmp / "inputs" / f"{sid.name}.png", arranged)
            shutil.copyfile(out_path, tmp / "targets" / f"{sid.name}.png")
            rows.append(
                {
                    "name": sid.name,
                    "building": sid.building,
                    "antenna": sid.antenna,
                    "band": sid.band,
                    "sample": sid.sample,
                    "frequency_hz": f"{freq:.0f}",
                    "tx_col": f"{x:g}",
                    "tx_row": f"{y:g}",
                    "azimuth_deg": f"{azimuth:g}",
                    "width": width,
                    "height": height,
                    "split": split_of[sid.building],
                }
            )
        write_metadata(tmp / "metadata.csv", rows, METADATA_COLUMNS)
    counts = {k: sum(r["split"] == k for r in rows) for k in ("train", "val", "test")}
    buildings = {k: sorted({r["building"] for r in rows if r["split"] == k}) for k in ("train", "val", "test")}
    return {
        "samples": len(rows),
        "task": task,
        "samples_per_split": counts,
        "buildings_per_split": buildings,
        "tx_in_wall": {"samples": len(raw.in_wall), "names": raw.in_wall[:20]},
    }


def run(params: dict, root, out) -> dict:
    """The ``arrange_icassp`` stage: arrange the ``data.icassp.task`` samples of ``root`` into ``out``."""
    d = params["data"]["icassp"]
    return {
        "stage": "arrange_icassp",
        **arrange(root, out, task=d["task"], split_cfg=d["split"], **params["arrange_icassp"]),
    }
