"""RadioMapSeer reader: discovery, split by map, condition and target tensors.

Works on the real dataset and on the synthetic one alike (same layout, REFERENCE.md §1).
Maps and transmitters are discovered from ``antenna/{map}.json`` (its list length is the
number of Tx); nothing assumes 701 maps × 80 Tx. The Tx position is read from
``png/antennas/{map}_{tx}.png`` (authoritative); a JSON/PNG disagreement is a warning.

Resolution (SPEC Contracts): gain maps and the building mask are area-averaged down to the
model's ``image_size``; the Tx channel is one-hot at the downsampled Tx pixel.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from radiodiff.core.encodings import apply_gain_threshold, gray_to_unit
from radiodiff.core.errors import DataError
from radiodiff.core.io import read_json, read_png
from radiodiff.data.splits import published_split, split_ids
from radiodiff.physics.baselines import log_distance_unit

CONDITIONS = ("static", "dynamic", "physics")
MASK_CACHE = 16  # building masks a reader keeps (64 KB each at 256²)


@dataclass(frozen=True)
class Sample:
    map_id: int
    tx: int

    @property
    def name(self) -> str:
        return f"{self.map_id}_{self.tx}"


def discover_maps(root: str | Path) -> dict[int, int]:
    """``{map id: number of Tx}`` from ``antenna/*.json``, sorted by id."""
    adir = Path(root) / "antenna"
    if not adir.is_dir():
        raise DataError(f"{adir}: folder not found (is data.radiomapseer.root a RadioMapSeer folder?)")
    maps = {}
    for p in adir.glob("*.json"):
        if not p.stem.isdigit():
            continue
        txs = read_json(p)
        if not isinstance(txs, list):
            raise DataError(f"{p}: expected a list of [x, y] transmitter positions")
        maps[int(p.stem)] = len(txs)
    if not maps:
        raise DataError(f"{adir}: no {{map}}.json files")
    return dict(sorted(maps.items()))


def gain_files(root: str | Path, simulation: str) -> dict[int, set[int]]:
    """``{map id: Tx numbers}`` of the gain maps ``gain/{simulation}/{map}_{tx}.png`` present
    (one directory listing; names that are not ``{map}_{tx}.png`` are ignored)."""
    gdir = Path(root) / "gain" / simulation
    if not gdir.is_dir():
        raise DataError(f"{gdir}: gain folder not found (data.radiomapseer.simulation is {simulation!r})")
    found: dict[int, set[int]] = {}
    for name in os.listdir(gdir):
        stem, ext = os.path.splitext(name)
        m, _, t = stem.partition("_")
        if ext == ".png" and m.isdigit() and t.isdigit():
            found.setdefault(int(m), set()).add(int(t))
    return found


def available_tx(root: str | Path, simulation: str, n_tx: dict[int, int] | None = None) -> dict[int, list[int]]:
    """``{map id: Tx numbers with a gain map}`` for every listed map, in the simulation's folder.

    Simulations need not cover every listed Tx (the real ``gain/IRT4`` and ``carsIRT4`` hold Tx 0
    and 1 of each map only): Tx keep their numbers from ``antenna/{map}.json``. A gain map of a Tx
    the JSON does not list is an error naming the file.
    """
    n_tx = discover_maps(root) if n_tx is None else n_tx
    found = gain_files(root, simulation)
    for m, txs in sorted(found.items()):
        extra = sorted(t for t in txs if t >= n_tx.get(m, 0))
        if extra:
            path = Path(root) / "gain" / simulation / f"{m}_{extra[0]}.png"
            listed = f"antenna/{m}.json lists {n_tx[m]} Tx" if m in n_tx else f"antenna/{m}.json not found"
            raise DataError(f"{path}: no antenna entry for this Tx ({listed})")
    return {m: sorted(found.get(m, ())) for m in n_tx}


def simulation_coverage(root: str | Path, n_tx: dict[int, int]) -> dict[str, dict]:
    """Per simulation folder under ``gain/``: maps with at least one gain map, listed Tx with a
    gain map (``samples``), listed Tx (``listed``) and their ratio."""
    gdir = Path(root) / "gain"
    listed = sum(n_tx.values())
    out = {}
    for sim in sorted(p.name for p in gdir.iterdir() if p.is_dir()) if gdir.is_dir() else []:
        found = {m: [t for t in txs if t < n_tx[m]] for m, txs in gain_files(root, sim).items() if m in n_tx}
        samples = sum(len(t) for t in found.values())
        out[sim] = {
            "maps": sum(1 for t in found.values() if t),
            "samples": samples,
            "listed": listed,
            "fraction": round(samples / listed, 4) if listed else 0.0,
        }
    return out


def split_maps(root, split_cfg: dict | str, allow_missing: bool = False) -> dict[str, list[int]]:
    """Train/val/test map ids (SPEC Contracts: Splits): a published split by name, or the ratio
    form's disjoint split of the discovered ids.

    A published split names maps 1..700; when the folder lacks some of them (the synthetic set, a
    partial download) this raises a :class:`DataError` listing them, unless ``allow_missing``
    (``data.radiomapseer.allow_missing_maps``), which drops them with a warning.
    """
    return maps_of_split(discover_maps(root), split_cfg, allow_missing, where=Path(root) / "antenna")


def maps_of_split(n_tx: dict[int, int], split_cfg: dict | str, allow_missing: bool = False, where="") -> dict:
    """:func:`split_maps` over already discovered maps (``{map id: number of Tx}``)."""
    if not isinstance(split_cfg, str):
        return split_ids(n_tx, **split_cfg)
    lists = published_split(split_cfg)
    listed = sorted({m for ids in lists.values() for m in ids})
    missing = [m for m in listed if m not in n_tx]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", …" if len(missing) > 10 else "")
        key = f"data.radiomapseer.split {split_cfg!r}"
        what = f"{where}: {len(missing)} of the {len(listed)} maps of {key} are missing ({shown})"
        if not allow_missing:
            raise DataError(f"{what}; set data.radiomapseer.allow_missing_maps: true to use the others")
        warnings.warn(f"{what}; using the {len(listed) - len(missing)} found", stacklevel=2)
    out = {k: [m for m in ids if m in n_tx] for k, ids in lists.items()}
    for k, ids in out.items():
        if not ids:
            raise DataError(f"{where}: no map of the {k} split of {split_cfg!r} is in the folder")
    return out


def tx_position(path: str | Path) -> tuple[int, int]:
    """(row, col) of the single bright pixel of an antenna PNG."""
    img = read_png(path, mode="L")
    peak = img.max()
    if peak == 0:
        raise DataError(f"{path}: no transmitter pixel (image is all 0)")
    rows, cols = np.nonzero(img == peak)
    if len(rows) != 1:
        raise DataError(f"{path}: expected one transmitter pixel, found {len(rows)}")
    return int(rows[0]), int(cols[0])


def _shape(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int | np.integer) else (int(size[0]), int(size[1]))


def area_resize(img: np.ndarray, size) -> np.ndarray:
    """Area-average a float map to ``size`` (an int: size×size; or (rows, cols)); identity when
    already that size."""
    shape = _shape(size)
    if img.shape == shape:
        return img.astype(np.float32)
    return cv2.resize(img.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def tx_onehot(tx_rc: tuple[int, int], shape: tuple[int, int], size) -> tuple[np.ndarray, tuple[int, int]]:
    """One-hot Tx channel at the downsampled Tx pixel (``size``: an int or (rows, cols)), and that pixel."""
    rows, cols = _shape(size)
    r = min(int(tx_rc[0] * rows / shape[0]), rows - 1)
    c = min(int(tx_rc[1] * cols / shape[1]), cols - 1)
    out = np.zeros((rows, cols), dtype=np.float32)
    out[r, c] = 1.0
    return out, (r, c)


class RadioMapSeerDataset(Dataset):
    """One item per (map, Tx) of a split, for the Tx that have a gain map of the simulation.

    Item: ``condition`` 3×S×S and ``target`` 1×S×S in [−1, 1]; ``buildings`` 1×S×S in [0, 1]
    (area fraction); ``tx`` (row, col) at the model resolution; ``name`` "{map}_{tx}".
    Condition channels: static ``[buildings, Tx, buildings]``, dynamic ``[buildings, Tx, cars]``,
    physics ``[buildings, Tx, log-distance prior]``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        simulation: str = "DPM",
        condition: str = "static",
        image_size: int = 64,
        split_cfg: dict | str | None = None,
        gain_threshold: float = 0.0,
        physics_exponent: float = 2.5,
        maps: list[int] | None = None,
        allow_missing: bool = False,
    ):
        if condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
        self.root = Path(root)
        self.simulation, self.condition, self.size = simulation, condition, image_size
        self.gain_threshold, self.physics_exponent = gain_threshold, physics_exponent
        n_tx = discover_maps(self.root)
        if maps is None:
            cfg = split_cfg or {"train": 0.8, "val": 0.1, "test": 0.1, "seed": 42}
            maps = maps_of_split(n_tx, cfg, allow_missing, where=self.root / "antenna")[split]
        txs = available_tx(self.root, simulation, n_tx)
        self.samples = [Sample(m, t) for m in maps for t in txs[m]]
        self._buildings: OrderedDict[int, np.ndarray] = OrderedDict()  # the last MASK_CACHE maps

    def __len__(self) -> int:
        return len(self.samples)

    def buildings(self, map_id: int) -> np.ndarray:
        """Full-resolution building mask (bool) of a map; the last ``MASK_CACHE`` maps are kept
        (items of one map come together in order, so memory stays bounded)."""
        mask = self._buildings.pop(map_id, None)
        if mask is None:
            mask = read_png(self.root / "png/buildings_complete" / f"{map_id}.png", "L") > 127
        self._buildings[map_id] = mask
        while len(self._buildings) > MASK_CACHE:
            self._buildings.popitem(last=False)
        return mask

    def gain(self, s: Sample) -> np.ndarray:
        """Full-resolution gain map on [0, 1] (gray/255), RadioUNet's threshold applied if set."""
        g = gray_to_unit(read_png(self.root / "gain" / self.simulation / f"{s.name}.png", "L"))
        return apply_gain_threshold(g, self.gain_threshold)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        b = self.buildings(s.map_id)
        g = self.gain(s)
        if g.shape != b.shape:
            raise DataError(
                f"{self.root / 'gain' / self.simulation / (s.name + '.png')}: size {g.shape} != buildings {b.shape}"
            )
        tx_full = tx_position(self.root / "png/antennas" / f"{s.name}.png")
        cars = None
        if self.condition == "dynamic":
            cars = read_png(self.root / "png/cars" / f"{s.map_id}.png", "L") > 127
        cond, b_small, tx_small = make_condition(
            b, tx_full, self.size, self.condition, self.physics_exponent, cars=cars
        )
        target = area_resize(g, self.size)[None] * 2.0 - 1.0
        return {
            "condition": torch.from_numpy(cond),
            "target": torch.from_numpy(target.astype(np.float32)),
            "buildings": torch.from_numpy(b_small[None]),
            "tx": tx_small,
            "name": s.name,
        }


def make_condition(
    buildings: np.ndarray,
    tx_rc: tuple[int, int],
    size,
    condition: str = "static",
    physics_exponent: float = 2.5,
    cars: np.ndarray | None = None,
    pixel_size_m: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The 3×S×S condition image in [−1, 1] from a full-resolution building mask (bool,
    ``pixel_size_m`` metres per pixel, RadioMapSeer's 1 m by default) and Tx (row, col); also the
    area-averaged building mask and the Tx pixel at S. ``size``: S, or (rows, cols) for a map of
    another shape (whole-map prediction)."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    shape = _shape(size)
    b_small = area_resize(buildings.astype(np.float32), shape)
    tx_map, tx_small = tx_onehot(tx_rc, buildings.shape, shape)
    if condition == "static":
        third = b_small
    elif condition == "dynamic":
        if cars is None:
            raise DataError("the dynamic condition needs a cars mask")
        third = area_resize(cars.astype(np.float32), shape)
    else:
        scale = buildings.shape[0] * pixel_size_m / shape[0]  # metres per model pixel
        third = log_distance_unit(shape, tx_small, physics_exponent, pixel_size_m=scale)
        third = third * (b_small < 0.5)
    cond = np.stack([b_small, tx_map, third]) * 2.0 - 1.0
    return cond.astype(np.float32), b_small, tx_small
