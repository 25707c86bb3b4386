"""A trained model folder on new inputs: ``radiodiff predict`` and ``radiodiff evaluate --model``.

RadioMapSeer: a buildings PNG (255 = building, 1 m/pixel) and a Tx (row, col) in its pixels,
or a whole RadioMapSeer folder (every map and Tx). ICASSP: a raw input RGB PNG
(reflectance, transmittance, distance to the Tx) with its antenna pattern CSV and band; the
B channel is replaced by FSPL with the pattern, as the arrange stage does, and the Tx-aware
crop the model was trained at is predicted; or a whole crop_icassp folder. Outputs are PNGs in
the dataset's encoding (gray gain; path loss dB), one per input, at the model's resolution.
RadioDiff samples with ``steps`` sampler steps, by default the model's own
(``radiodiff.json`` ``sampling_steps``).

:func:`score_model` scores a model on every sample of another root (e.g. the real dataset),
with the physics baseline beside it, without retraining.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from radiodiff.core.encodings import channel_to_model
from radiodiff.core.errors import DataError, RadiodiffError
from radiodiff.core.io import read_png
from radiodiff.data.icassp import FREQUENCIES_HZ
from radiodiff.data.items import StackedItems, map_splits
from radiodiff.data.radiomapseer import make_condition
from radiodiff.data.tx_crop import cut, origin_range
from radiodiff.evaluate.maps import write_maps
from radiodiff.evaluate.sampling import default_device, predict_items
from radiodiff.evaluate.scoring import protocol, score, write_outputs
from radiodiff.models.pipelines import load_pipeline
from radiodiff.physics.antenna import fspl_pattern_db, read_pattern

RADIOMAPSEER_DEFAULTS = {"simulation": "DPM", "gain_threshold": 0.0}


def _check_tx(tx_rc, shape, where) -> tuple[int, int]:
    r, c = int(tx_rc[0]), int(tx_rc[1])
    if not (0 <= r < shape[0] and 0 <= c < shape[1]):
        raise DataError(f"{where}: Tx (row {r}, col {c}) lies outside the {shape[1]}×{shape[0]} map")
    return r, c


def radiomapseer_single(pipe, buildings_png, tx_rc, cars_png=None) -> StackedItems:
    b = read_png(buildings_png, "L") > 127
    tx = _check_tx(tx_rc, b.shape, buildings_png)
    if b[tx]:
        raise DataError(f"{buildings_png}: Tx (row {tx[0]}, col {tx[1]}) lies inside a building")
    cars = read_png(cars_png, "L") > 127 if cars_png else None
    if pipe.meta["condition"] == "dynamic" and cars is None:
        raise RadiodiffError("this model was trained on the dynamic condition: give --cars PNG")
    cond, b_small, tx_small = make_condition(
        b, tx, int(pipe.meta["image_size"]), pipe.meta["condition"], pipe.meta.get("physics_exponent") or 2.0, cars
    )
    name = f"{Path(buildings_png).stem}_tx{tx[0]}_{tx[1]}"
    return StackedItems(
        {"condition": torch.from_numpy(cond)[None], "buildings": torch.from_numpy(b_small)[None, None]}, [name]
    )


def icassp_single(pipe, input_png, pattern_csv, band: int, azimuth_deg: float = 0.0) -> tuple[StackedItems, dict]:
    """The Tx-aware crop (model size) of a raw ICASSP input, with FSPL + pattern in channel B."""
    rgb = read_png(input_png, "RGB")[..., :3]
    if band not in FREQUENCIES_HZ:
        raise RadiodiffError(f"--band: expected one of {sorted(FREQUENCIES_HZ)}, got {band}")
    dist = rgb[..., 2].astype(np.float64)
    tx = np.unravel_index(int(np.argmin(dist)), dist.shape)  # channel B = distance to the Tx
    pattern = read_pattern(pattern_csv)
    fspl = np.clip(np.round(fspl_pattern_db(dist.shape, tx, FREQUENCIES_HZ[band], pattern, azimuth_deg)), 0, 255)
    arranged = np.dstack([rgb[..., 0], rgb[..., 1], fspl.astype(np.uint8)])
    size = int(pipe.meta["image_size"])
    margin = min(10, (size - 1) // 2)
    (r_lo, r_hi), (c_lo, c_hi) = (origin_range(t, n, size, margin) for t, n in zip(tx, dist.shape, strict=True))
    row0, col0 = (r_lo + r_hi) // 2, (c_lo + c_hi) // 2
    crop = cut(arranged, row0, col0, size)
    valid = cut(np.ones(dist.shape, bool), row0, col0, size)
    cond = torch.from_numpy(channel_to_model(crop.transpose(2, 0, 1)))[None]
    name = Path(input_png).stem
    items = StackedItems({"condition": cond, "valid": torch.from_numpy(valid)[None, None]}, [name])
    return items, {"row0": row0, "col0": col0, "tx_row": int(tx[0]), "tx_col": int(tx[1]), "size": size}


def _folder_splits(pipe, root, data: dict | None):
    """The adapter of a whole folder for a model: its dataset, its resolution, the data settings."""
    dataset = pipe.meta["dataset"]
    if dataset == "radiomapseer":
        data = {**RADIOMAPSEER_DEFAULTS, **(data or {}), "image_size": int(pipe.meta["image_size"])}
    return map_splits(dataset, root, data)


def predict(
    model_dir,
    out,
    *,
    buildings=None,
    tx=None,
    cars=None,
    input_png=None,
    pattern=None,
    band=None,
    azimuth=0.0,
    input_dir=None,
    data: dict | None = None,
    steps=None,
    seed: int = 0,
    batch_size: int = 16,
    ema: bool = True,
) -> list[Path]:
    """Predict and write PNGs into ``out`` with the model's EMA (``ema``) or raw weights; returns
    their paths."""
    pipe = load_pipeline(model_dir, ema=ema)
    dataset = pipe.meta["dataset"]
    if input_dir is not None:
        items = _folder_splits(pipe, input_dir, data).all_items(pipe.meta)
    elif dataset == "radiomapseer":
        if buildings is None or tx is None:
            raise RadiodiffError("predict (RadioMapSeer model): give --buildings PNG and --tx ROW,COL, or --input-dir")
        items = radiomapseer_single(pipe, buildings, tx, cars)
    else:
        if input_png is None or pattern is None or band is None:
            raise RadiodiffError("predict (ICASSP model): give --input PNG, --pattern CSV and --band, or --input-dir")
        items, _ = icassp_single(pipe, input_png, pattern, int(band), azimuth)
    pred, _ = predict_items(pipe, items, steps, seed, batch_size, default_device())
    out = Path(out)
    write_maps(out, items.names, pred, dataset, items.tensors.get("valid"))
    return [out / f"{n}.png" for n in items.names]


def score_model(
    model_dir, root, out_dir, data: dict | None = None, steps=None, seed: int = 0, batch_size: int = 16, ema=True
):
    """Score a trained model on every sample of another dataset root, without retraining.

    RadioMapSeer: ``root`` is a RadioMapSeer folder (e.g. the real dataset); all its maps and
    Tx are scored, with the physics baseline beside the model (the model's own fitted exponent
    when it has one, else one fitted on ``root`` itself, which favours the baseline). ICASSP:
    ``root`` is a crop_icassp output folder (run arrange and crop on the real data first); all
    its crops are scored. Writes ``summary.json`` and ``per_sample.csv`` into ``out_dir``. ``ema``:
    the model's EMA weights, else its raw training weights.
    """
    pipe = load_pipeline(model_dir, ema=ema)
    method = "radiodiff" if (Path(model_dir) / "radiodiff.json").is_file() else "radiounet"
    dataset = pipe.meta["dataset"]
    device = default_device()
    splits = _folder_splits(pipe, root, data)
    items = splits.all_items(pipe.meta)
    pred, seconds = predict_items(pipe, items, steps, seed, batch_size, device)
    exponent = None
    if dataset == "radiomapseer":
        exponent = pipe.meta.get("physics_exponent") or splits.fit_exponent(items)
    t0 = time.perf_counter()
    phys = splits.physics(items.tensors, exponent)
    phys_s = time.perf_counter() - t0
    n = len(items.names)
    timing = {method: {"ms_per_map": 1000 * seconds / n}, "physics": {"ms_per_map": 1000 * phys_s / n}}
    summary, rows = score(dataset, items, {method: pred, "physics": phys}, splits.db_per_unit, timing)
    summary["protocol"] = protocol(
        dataset,
        items,
        splits.db_per_unit,
        "all samples of the root",
        root=str(root),
        model=str(model_dir),
        device=str(device),
        physics_exponent=exponent,
    )
    write_outputs(out_dir, summary, rows)
    return summary
