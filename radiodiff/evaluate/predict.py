"""A trained model folder on new inputs: ``radiodiff predict`` and ``radiodiff evaluate --model``.

A single input is predicted whole, at its own size (:mod:`radiodiff.evaluate.whole_maps`:
resampled to the model's metres per pixel, sliding windows, resampled back). RadioMapSeer: a
buildings PNG of any size (255 = building; ``pixel_size_m`` metres per pixel, RadioMapSeer's
1 m by default) and a Tx (row, col) in its pixels give the gain map at the PNG's size. ICASSP:
a raw input RGB PNG (reflectance, transmittance, distance to the Tx) with its antenna pattern CSV
and band; the B channel is replaced by FSPL with the pattern, as the arrange stage does, and the
whole building's path loss is predicted (the challenge's PNG: dB, the input's size). A folder
(a RadioMapSeer root, or a crop_icassp folder) is predicted item by item at the model's
resolution; a raw ICASSP folder (``Inputs/Task_*``) is predicted whole, input by input, into the
challenge's layout. Outputs are PNGs in the dataset's encoding (gray gain; path loss dB). RadioDiff
samples with ``steps`` sampler steps, by default the model's own (``radiodiff.json``
``sampling_steps``).

:func:`score_model` scores a model on every sample of another root (e.g. the real dataset),
with the physics baseline beside it, without retraining.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from radiodiff.core.encodings import unit_to_gray, unit_to_pl_png
from radiodiff.core.errors import DataError, RadiodiffError
from radiodiff.core.io import atomic_dir, read_png, write_png
from radiodiff.core.params import schema_defaults
from radiodiff.core.progress import progress_bar
from radiodiff.data.arrange_icassp import RawSamples, arranged_input, tx_in_wall
from radiodiff.data.icassp import (
    FREQUENCIES_HZ,
    details_path,
    discover,
    input_path,
    read_details,
)
from radiodiff.data.items import dataset_source
from radiodiff.evaluate.maps import write_maps
from radiodiff.evaluate.sample_test import default_device, predict_items
from radiodiff.evaluate.score_test import protocol, score, write_outputs
from radiodiff.evaluate.whole_maps import icassp_whole, radiomapseer_whole
from radiodiff.models.pipelines import load_pipeline
from radiodiff.physics.antenna import read_pattern


def _sampling_defaults(seed, batch_size, ema) -> tuple[int, int, bool]:
    """``seed``, ``batch_size`` and ``ema``, each None taking the schema's ``sample`` default."""
    d = schema_defaults("properties/sample")
    return (
        d["seed"] if seed is None else seed,
        d["batch_size"] if batch_size is None else batch_size,
        d["use_ema"] if ema is None else ema,
    )


def radiomapseer_input(pipe, buildings_png, tx_rc, cars_png=None, pixel_size_m: float = 1.0, **sampling):
    """A whole RadioMapSeer-style map: the gain (H, W) on [0, 1], buildings 0, at the buildings
    PNG's size (``pixel_size_m`` metres per pixel), and its name."""
    b = read_png(buildings_png, "L") > 127
    cars = read_png(cars_png, "L") > 127 if cars_png else None
    gain, _ = radiomapseer_whole(pipe, b, tx_rc, pixel_size_m, cars, where=buildings_png, **sampling)
    return gain, f"{Path(buildings_png).stem}_tx{int(tx_rc[0])}_{int(tx_rc[1])}"


def raw_icassp_input(input_png, pattern_csv, band: int, azimuth_deg: float = 0.0) -> np.ndarray:
    """A raw ICASSP input arranged as the arrange stage does (channel B = FSPL − G(θ)); the Tx is
    the pixel nearest it (the minimum of the distance channel)."""
    if band not in FREQUENCIES_HZ:
        raise RadiodiffError(f"--band: expected one of {sorted(FREQUENCIES_HZ)}, got {band}")
    rgb = read_png(input_png, "RGB")[..., :3]
    dist = rgb[..., 2]
    tx = np.unravel_index(int(np.argmin(dist)), dist.shape)  # channel B = distance to the Tx
    if tx_in_wall(rgb, tx):
        raise DataError(f"{input_png}: the Tx (the distance minimum, row {tx[0]}, col {tx[1]}) lies in a wall")
    return arranged_input(rgb, tx, FREQUENCIES_HZ[band], read_pattern(pattern_csv), azimuth_deg)


def raw_icassp_folder(pipe, root, out, **sampling) -> list[Path]:
    """Every input of a raw ICASSP folder (``Inputs/Task_*``), predicted whole, written as the
    challenge expects: ``out/{task}/B{b}_Ant{a}_f{f}_S{s}.png`` at the input's size, path loss in
    dB. The Tx and azimuth come from ``Positions/``, the pattern from ``Radiation_Patterns/``; an
    input whose size differs from its building's details, a Tx outside the map, a bad pattern or
    band is one error naming the file, and nothing is written (the folder appears whole or not)."""
    root = Path(root)
    tasks = sorted(p.name for p in (root / "Inputs").iterdir() if p.is_dir())
    jobs = [(task, sid) for task in tasks for sid in discover(root, task)]
    details, raw = {}, RawSamples(root)
    bar = progress_bar("predict")
    with atomic_dir(out) as tmp:
        for n, (task, sid) in enumerate(jobs):
            in_path = input_path(root, task, sid)
            rgb = read_png(in_path, "RGB")[..., :3]
            if sid.building not in details:
                details[sid.building] = read_details(details_path(root, sid.building))
            width, height = details[sid.building]
            if rgb.shape[:2] != (height, width):
                raise DataError(
                    f"{in_path}: {rgb.shape[1]}×{rgb.shape[0]} px, but {details_path(root, sid.building)} "
                    f"says {width}×{height}"
                )
            arranged, _, _ = raw.arrange(sid, rgb, in_path)
            unit, _ = icassp_whole(pipe, arranged, **sampling)
            (tmp / task).mkdir(exist_ok=True)
            write_png(tmp / task / f"{sid.name}.png", unit_to_pl_png(unit))
            bar(n + 1, len(jobs))
    return [Path(out) / task / f"{sid.name}.png" for task, sid in jobs]


def _folder_source(pipe, root, data: dict | None):
    """The adapter of a whole folder for a model: its dataset, its resolution, the data settings."""
    dataset = pipe.dataset
    if dataset == "radiomapseer":
        defaults = schema_defaults("properties/data/properties/radiomapseer")
        data = {
            **{k: defaults[k] for k in ("simulation", "gain_threshold")},
            **(data or {}),
            "image_size": pipe.grid_px,
        }
    return dataset_source(dataset, root, data)


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
    seed: int | None = None,
    batch_size: int | None = None,
    ema: bool | None = None,
    pixel_size_m: float = 1.0,
    window: dict | None = None,
) -> list[Path]:
    """Predict and write PNGs into ``out`` with the model's EMA (``ema``) or raw weights; returns
    their paths. A single input is predicted whole, at its own size, by sliding windows at the
    model's resolution (``window``: ``sample.window``'s keys); ``input_dir`` predicts every test
    item of a RadioMapSeer or crop_icassp folder at the model's resolution. ``seed``,
    ``batch_size`` and ``ema`` left None take the schema's ``sample`` defaults."""
    seed, batch_size, ema = _sampling_defaults(seed, batch_size, ema)
    pipe = load_pipeline(model_dir, ema=ema)
    dataset = pipe.dataset
    out = Path(out)
    sampling = {"window": window, "steps": steps, "generator": torch.Generator().manual_seed(seed)}
    if input_dir is not None and dataset == "icassp" and (Path(input_dir) / "Inputs").is_dir():
        return raw_icassp_folder(pipe, input_dir, out, **sampling)
    if input_dir is not None:
        items = _folder_source(pipe, input_dir, data).all_items(pipe.condition, pipe.physics_exponent)
        pred, _ = predict_items(pipe, items, steps, seed, batch_size, default_device())
        write_maps(out, items.names, pred, dataset, items.tensors.get("valid"))
        return [out / f"{n}.png" for n in items.names]
    if dataset == "radiomapseer":
        if buildings is None or tx is None:
            raise RadiodiffError("predict (RadioMapSeer model): give --buildings PNG and --tx ROW,COL, or --input-dir")
        gain, name = radiomapseer_input(pipe, buildings, tx, cars, pixel_size_m, **sampling)
        image = unit_to_gray(gain)
    else:
        if input_png is None or pattern is None or band is None:
            raise RadiodiffError("predict (ICASSP model): give --input PNG, --pattern CSV and --band, or --input-dir")
        unit, _ = icassp_whole(pipe, raw_icassp_input(input_png, pattern, int(band), azimuth), **sampling)
        image, name = unit_to_pl_png(unit), Path(input_png).stem
    out.mkdir(parents=True, exist_ok=True)
    write_png(out / f"{name}.png", image)
    return [out / f"{name}.png"]


def score_model(
    model_dir,
    root,
    out_dir,
    data: dict | None = None,
    steps=None,
    seed: int | None = None,
    batch_size: int | None = None,
    ema: bool | None = None,
):
    """Score a trained model on every sample of another dataset root, without retraining.

    RadioMapSeer: ``root`` is a RadioMapSeer folder (e.g. the real dataset); all its maps and
    Tx are scored, with the physics baseline beside the model (the model's own fitted exponent
    when it has one, else one fitted on ``root`` itself, which favours the baseline). ICASSP:
    ``root`` is a crop_icassp output folder (run arrange and crop on the real data first); all
    its crops are scored. Writes ``summary.json`` and ``per_sample.csv`` into ``out_dir``. ``ema``:
    the model's EMA weights, else its raw training weights (``seed``, ``batch_size`` and ``ema``
    left None: the schema's ``sample`` defaults).
    """
    seed, batch_size, ema = _sampling_defaults(seed, batch_size, ema)
    pipe = load_pipeline(model_dir, ema=ema)
    method, dataset = pipe.kind, pipe.dataset
    device = default_device()
    source = _folder_source(pipe, root, data)
    items = source.all_items(pipe.condition, pipe.physics_exponent)
    pred, seconds = predict_items(pipe, items, steps, seed, batch_size, device)
    exponent = None
    if dataset == "radiomapseer":
        exponent = pipe.physics_exponent or source.fit_exponent(items)
    t0 = time.perf_counter()
    phys = source.physics(items.tensors, exponent)
    phys_s = time.perf_counter() - t0
    n = len(items.names)
    timing = {method: {"ms_per_map": 1000 * seconds / n}, "physics": {"ms_per_map": 1000 * phys_s / n}}
    summary, rows = score(dataset, items, {method: pred, "physics": phys}, source.db_per_unit, timing)
    summary["protocol"] = protocol(
        dataset,
        items,
        source.db_per_unit,
        "all samples of the root",
        root=str(root),
        model=str(model_dir),
        device=str(device),
        physics_exponent=exponent,
    )
    write_outputs(out_dir, summary, rows)
    return summary
