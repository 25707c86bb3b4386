"""The rows of the results' sample grids: for each chosen test sample its condition, the Tx, the
ground truth and each method's map, in dB, read back through the datasets' own readers (so the
grid shows exactly what the evaluation scored), and, where the sample stage wrote it
(``sample.ensemble``), the per-pixel std of RadioDiff's samples in dB."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radiodiff.core.encodings import ICASSP_DB_PER_UNIT, gain_db_per_unit, unit_to_gain_db, unit_to_pl_db
from radiodiff.core.errors import DataError
from radiodiff.core.io import read_png
from radiodiff.data.icassp import ICASSPCropDataset
from radiodiff.data.items import radiomapseer_dataset
from radiodiff.evaluate.maps import UNCERTAINTY_FOLDER, read_maps, read_std
from radiodiff.metrics import zero_buildings


def radiomapseer_grid_rows(root: Path, data: dict, samples: Path, names: list[str]) -> list[dict]:
    """RadioMapSeer test samples ``names`` (``{map}_{tx}``) in path gain dB, every method's map with
    the known buildings zeroed as the evaluation scores it."""
    maps = sorted({int(n.split("_")[0]) for n in names})
    ds = radiomapseer_dataset(root, "test", data, maps=maps)
    index = {f"{s.map_id}_{s.tx}": i for i, s in enumerate(ds.samples)}

    def db(u):
        return unit_to_gain_db(u, data["gain_threshold"])

    rows = []
    for name in names:
        if name not in index:
            raise DataError(f"{root}: test sample {name} from the evaluation is not in this dataset")
        item = ds[index[name]]
        row = {"name": name, "condition": item["buildings"][0].numpy(), "tx": tuple(int(v) for v in item["tx"])}
        row["truth"] = db(((item["target"][0] + 1) / 2).clamp(0, 1).numpy())
        for method in ("radiodiff", "radiounet"):
            pred = zero_buildings(read_maps(samples / method, [name], "radiomapseer"), item["buildings"][None])
            row[method] = db(pred[0, 0].numpy())
        if (samples / UNCERTAINTY_FOLDER).is_dir():
            std = read_std(samples / UNCERTAINTY_FOLDER, [name])[0, 0].numpy()
            row["uncertainty"] = std * gain_db_per_unit(data["gain_threshold"])
        rows.append(row)
    return rows


def icassp_grid_rows(crops: Path, samples: Path, names: list[str]) -> list[dict]:
    """ICASSP test crops ``names`` in path loss dB, blank (NaN) outside the crop's valid pixels."""
    ds = ICASSPCropDataset(crops, "test")
    index = {r["name"]: i for i, r in enumerate(ds.rows)}
    rows = []
    for name in names:
        if name not in index:
            raise DataError(f"{crops}: test crop {name} from the evaluation is not in this folder")
        item = ds[index[name]]
        valid = item["valid"][0].numpy()
        unit = ((item["target"][0] + 1) / 2).numpy()
        row = {
            "name": name,
            "condition": ((item["input"].numpy().transpose(1, 2, 0) + 1) / 2).clip(0, 1),
            "tx": tuple(int(v) for v in item["tx"]),
            "truth": np.where(valid, unit_to_pl_db(unit), np.nan),
        }
        for method in ("radiodiff", "radiounet"):
            pl = read_png(samples / method / f"{name}.png", "L").astype(np.float64)
            row[method] = np.where(valid, pl, np.nan)
        if (samples / UNCERTAINTY_FOLDER).is_dir():
            std = read_std(samples / UNCERTAINTY_FOLDER, [name])[0, 0].numpy()
            row["uncertainty"] = np.where(valid, std * ICASSP_DB_PER_UNIT, np.nan)
        rows.append(row)
    return rows
