"""ICASSP 2025 indoor path-loss layout: names, paths, CSV readers and torch datasets.

Layout (REFERENCE.md §2; the synthetic set writes the same)::

    Inputs/{task}/B{b}_Ant{a}_f{f}_S{s}.png    RGB: reflectance dB, transmittance dB, distance m
    Outputs/{task}/B{b}_Ant{a}_f{f}_S{s}.png   gray: path loss dB (13–160)
    Positions/Positions_B{b}_Ant{a}_f{f}.csv   X (column), Y (row), Azimuth (degrees); row s ↔ S{s}
    Radiation_Patterns/Ant{a}_Pattern.csv      360 gains dB
    Building_Details/B{b}_Details.csv          W, H (pixels)

The readers accept the variations the real files may show (SPEC "ICASSP conventions"): an
optional header row, a leading pandas index column, positions without an azimuth column.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from radiodiff.core.encodings import channel_to_model, pl_db_to_unit
from radiodiff.core.errors import DataError
from radiodiff.core.io import atomic_file, read_png
from radiodiff.data.splits import SPLITS, split_ids
from radiodiff.physics.antenna import is_number as _is_number

FREQUENCIES_HZ = {1: 868e6, 2: 1.8e9, 3: 3.5e9}
DEFAULT_SPLIT = {"train": 0.8, "val": 0.1, "test": 0.1, "seed": 42}

_NAME = re.compile(r"^B(\d+)_Ant(\d+)_f(\d+)_S(\d+)$")


class SampleId(NamedTuple):
    """One radio map: building, antenna, band and Tx position index (all as in the file name)."""

    building: int
    antenna: int
    band: int
    sample: int

    @property
    def name(self) -> str:
        return f"B{self.building}_Ant{self.antenna}_f{self.band}_S{self.sample}"


def parse_name(name: str) -> SampleId:
    """``"B3_Ant2_f1_S7"`` (optionally ending in ``.png``) → ``SampleId(3, 2, 1, 7)``."""
    stem = name[:-4] if name.endswith(".png") else name
    m = _NAME.match(stem)
    if m is None:
        raise DataError(f"{name}: not an ICASSP sample name (expected B{{b}}_Ant{{a}}_f{{f}}_S{{s}})")
    return SampleId(*(int(g) for g in m.groups()))


# --- paths --------------------------------------------------------------------------------------


def input_path(root, task: str, sid: SampleId) -> Path:
    return Path(root) / "Inputs" / task / f"{sid.name}.png"


def output_path(root, task: str, sid: SampleId) -> Path:
    return Path(root) / "Outputs" / task / f"{sid.name}.png"


def positions_path(root, building: int, antenna: int, band: int) -> Path:
    return Path(root) / "Positions" / f"Positions_B{building}_Ant{antenna}_f{band}.csv"


def pattern_path(root, antenna: int) -> Path:
    return Path(root) / "Radiation_Patterns" / f"Ant{antenna}_Pattern.csv"


def details_path(root, building: int) -> Path:
    return Path(root) / "Building_Details" / f"B{building}_Details.csv"


def frequency_hz(band: int, where: str | os.PathLike = "") -> float:
    """Carrier frequency of band ``f{band}``; an unknown band raises :class:`DataError`."""
    try:
        return FREQUENCIES_HZ[band]
    except KeyError:
        raise DataError(f"{where}: unknown band f{band} (known: f1, f2, f3)") from None


# --- CSV readers --------------------------------------------------------------------------------


def _read_rows(path: Path, what: str) -> list[list[str]]:
    try:
        with open(path, newline="") as f:
            return [[c.strip() for c in r] for r in csv.reader(f) if any(c.strip() for c in r)]
    except FileNotFoundError:
        raise DataError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: unreadable {what} file ({e})") from None


def _numeric_table(path: Path, rows: list[list[str]], columns: list[int]) -> np.ndarray:
    out = np.empty((len(rows), len(columns)))
    for i, row in enumerate(rows):
        try:
            out[i] = [float(row[c]) for c in columns]
        except (IndexError, ValueError):
            raise DataError(f"{path}: row {i + 1} is not numeric in the expected columns: {row!r}") from None
    if not np.all(np.isfinite(out)):
        raise DataError(f"{path}: non-finite values")
    return out


def tx_position(cache: dict[Path, np.ndarray], root, sid) -> tuple[float, float, float]:
    """(X, Y, azimuth) of sample ``sid`` from its positions CSV under ``root``, each file read
    once into ``cache``; a missing row is a DataError naming the file."""
    path = positions_path(root, sid.building, sid.antenna, sid.band)
    if path not in cache:
        cache[path] = read_positions(path)
    table = cache[path]
    if sid.sample >= len(table):
        raise DataError(f"{path}: no row for sample S{sid.sample} ({len(table)} rows)")
    x, y, azimuth = table[sid.sample]
    return float(x), float(y), float(azimuth)


def read_positions(path: str | os.PathLike) -> np.ndarray:
    """Tx positions as an (n, 3) array of X (column), Y (row), Azimuth (degrees); row s ↔ S{s}.

    With a header, columns are found by name (X, Y, Azimuth; a missing Azimuth reads 0); without
    one, 2, 3 or 4 columns read as X,Y / X,Y,Az / index,X,Y,Az.
    """
    path = Path(path)
    rows = _read_rows(path, "positions")
    if rows and not all(_is_number(c) for c in rows[0]):
        names = [c.lower() for c in rows.pop(0)]
        if "x" not in names or "y" not in names:
            raise DataError(f"{path}: positions header must name X and Y columns, found {names}")
        az = next((names.index(k) for k in ("azimuth", "az", "azimuth_deg") if k in names), None)
        cols = [names.index("x"), names.index("y")] + ([az] if az is not None else [])
    else:
        width = len(rows[0]) if rows else 3
        cols = {2: [0, 1], 3: [0, 1, 2], 4: [1, 2, 3]}.get(width)
        if cols is None:
            raise DataError(f"{path}: expected X,Y[,Azimuth] columns, found {width}")
    if not rows:
        raise DataError(f"{path}: no positions")
    table = _numeric_table(path, rows, cols)
    if table.shape[1] == 2:
        table = np.concatenate([table, np.zeros((len(table), 1))], axis=1)
    return table


def read_details(path: str | os.PathLike) -> tuple[int, int]:
    """Building size ``(W, H)`` in pixels (W = columns, H = rows) from a Building_Details CSV."""
    path = Path(path)
    rows = _read_rows(path, "building details")
    cols = [0, 1]
    if rows and not all(_is_number(c) for c in rows[0]):
        names = [c.lower() for c in rows.pop(0)]
        try:
            cols = [
                next(names.index(k) for k in ("w", "width") if k in names),
                next(names.index(k) for k in ("h", "height") if k in names),
            ]
        except StopIteration:
            raise DataError(f"{path}: building details header must name W and H, found {names}") from None
    if not rows:
        raise DataError(f"{path}: no W,H row")
    w, h = _numeric_table(path, rows[:1], cols)[0]
    if w < 1 or h < 1 or w != int(w) or h != int(h):
        raise DataError(f"{path}: W, H must be positive integers, found {w:g}, {h:g}")
    return int(w), int(h)


def discover(root: str | os.PathLike, task: str) -> list[SampleId]:
    """The samples of ``Inputs/{task}``, sorted by (building, antenna, band, sample)."""
    folder = Path(root) / "Inputs" / task
    if not folder.is_dir():
        raise DataError(f"{folder}: input folder not found")
    ids = sorted(parse_name(p.name) for p in folder.glob("*.png"))
    if not ids:
        raise DataError(f"{folder}: no PNG inputs")
    return ids


# --- metadata CSVs (arrange and crop stages) ----------------------------------------------------


def read_metadata(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a stage's ``metadata.csv`` as dicts of strings."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        raise DataError(f"{path}: metadata file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: unreadable metadata ({e})") from None


def write_metadata(path: str | os.PathLike, rows: list[dict], columns: list[str]) -> None:
    """Write rows (dicts) under ``columns`` as CSV, atomically."""
    with atomic_file(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def held_out_rows(arranged) -> list[dict]:
    """The metadata rows of the test buildings of an ``arrange_icassp`` (or ``crop_icassp``) folder."""
    path = Path(arranged) / "metadata.csv"
    rows = [r for r in read_metadata(path) if r["split"] == "test"]
    if not rows:
        raise DataError(f"{path}: no test samples")
    return rows


def building_splits(buildings, split_cfg: dict | None = None) -> dict[int, str]:
    """Building id → "train" | "val" | "test" (``split_ids`` over the sorted distinct ids;
    ``split_cfg`` keys train, val, test, seed; missing keys take ``DEFAULT_SPLIT``)."""
    cfg = {**DEFAULT_SPLIT, **(split_cfg or {})}
    parts = split_ids(sorted(set(buildings)), cfg["train"], cfg["val"], cfg["test"], seed=int(cfg["seed"]))
    return {b: name for name, ids in parts.items() for b in ids}


def valid_mask(row: dict) -> np.ndarray:
    """Bool crop_size×crop_size mask of real (not padded) pixels from a crop metadata row (``crop_icassp``):
    pixel (i, j) is valid iff 0 ≤ row0 + i < height and 0 ≤ col0 + j < width."""
    size = int(row["crop_size"])
    row0, col0 = int(row["row0"]), int(row["col0"])
    height, width = int(row["height"]), int(row["width"])
    idx = np.arange(size)
    rows_ok = (row0 + idx >= 0) & (row0 + idx < height)
    cols_ok = (col0 + idx >= 0) & (col0 + idx < width)
    return rows_ok[:, None] & cols_ok[None, :]


# --- torch datasets -----------------------------------------------------------------------------


class ICASSPDataset(Dataset):
    """Raw ICASSP maps of one task and split (split by building with ``split_ids``).

    Items: ``input`` float32 3×H×W (channels / 255), ``target`` float32 1×H×W
    (``pl_db_to_unit`` of the path loss), ``tx`` long (row, col), ``name``. Sizes vary by
    building, so batch with size 1 or a collate that pads.
    """

    def __init__(self, root, task: str, split: str = "train", split_cfg: dict | None = None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root, self.task = Path(root), task
        ids = discover(self.root, task)
        of = building_splits([s.building for s in ids], split_cfg)
        self.ids = [s for s in ids if of[s.building] == split]
        self._positions: dict[Path, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def tx_rc(self, sid: SampleId) -> tuple[int, int]:
        """Tx (row, col) of a sample from its positions CSV (cached per file)."""
        x, y, _ = tx_position(self._positions, self.root, sid)
        return int(round(y)), int(round(x))

    def __getitem__(self, i: int) -> dict:
        sid = self.ids[i]
        inp = read_png(input_path(self.root, self.task, sid), mode="RGB")
        out_path = output_path(self.root, self.task, sid)
        pl = read_png(out_path, mode="L")
        if pl.shape != inp.shape[:2]:
            raise DataError(f"{out_path}: size {pl.shape} differs from its input {inp.shape[:2]}")
        return {
            "input": torch.from_numpy(inp.transpose(2, 0, 1).astype(np.float32) / 255.0),
            "target": torch.from_numpy(pl_db_to_unit(pl)[None].astype(np.float32)),
            "tx": torch.tensor(self.tx_rc(sid), dtype=torch.long),
            "name": sid.name,
        }


class ICASSPCropDataset(Dataset):
    """Tx-aware crops (output of ``tx_crop.crop``) of one split, scaled to [−1, 1].

    Items: ``input`` 3×S×S (channel/255·2−1), ``target`` 1×S×S (pl_db_to_unit·2−1), ``valid``
    1×S×S bool (False on padded pixels, where input and target read −1), ``tx`` long (row, col)
    in the crop, ``name``.
    """

    def __init__(self, crops_dir, split: str = "train"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.dir = Path(crops_dir)
        self.rows = [r for r in read_metadata(self.dir / "metadata.csv") if r["split"] == split]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        name = row["name"]
        inp = read_png(self.dir / "inputs" / f"{name}.png", mode="RGB")
        pl = read_png(self.dir / "targets" / f"{name}.png", mode="L")
        valid = valid_mask(row)
        if pl.shape != valid.shape or inp.shape[:2] != valid.shape:
            raise DataError(f"{self.dir / 'targets' / name}.png: crop size differs from metadata crop_size")
        target = pl_db_to_unit(pl) * 2.0 - 1.0
        target[~valid] = -1.0
        x = torch.from_numpy(channel_to_model(inp.transpose(2, 0, 1)))
        y = torch.from_numpy(target[None].astype(np.float32))
        m = torch.from_numpy(valid[None].copy())
        tx = (int(row["crop_tx_row"]), int(row["crop_tx_col"]))
        return {"input": x, "target": y, "valid": m, "tx": torch.tensor(tx, dtype=torch.long), "name": name}
