"""The evaluate stages: score every method's predictions against the ground truth.

Protocol (SPEC Contracts, REFERENCE.md §4): on the [0, 1] scale at the model's resolution,
per image, then averaged over images: NMSE, RMSE, MAE, SSIM (Gaussian 11, σ 1.5, data range
1), PSNR (data range 1); the whole-set RMSE (RadioUNet's pooled protocol); RMSE in dB.
Every method's output has the known building pixels set to 0 first. Two scopes:

- RadioMapSeer: ``all`` pixels (RadioDiff's protocol) and ``outdoor`` pixels only (not fully
  covered by a building at the model resolution); dB per unit 99.16 (×(1 − threshold) when
  RadioUNet's noise-floor threshold is on).
- ICASSP: the crops' ``valid`` (not padded) pixels, the challenge's scope, and ``open`` pixels
  (valid and not on a wall). The [0, 1] scale is (160 − PL)/147, so RMSE in dB = 147·RMSE;
  RMSE in dB is the challenge metric. Per-building and per-band breakdowns.

Writes ``summary.json`` (keyed by method, DVC metrics) and ``per_sample.csv``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

from radiodiff.core.errors import DataError
from radiodiff.core.io import atomic_file, read_json, write_json
from radiodiff.data.icassp import parse_name
from radiodiff.evaluate.metrics import (
    ICASSP_DB_PER_UNIT,
    RADIOMAPSEER_DB_PER_UNIT,
    MetricAccumulator,
    building_pixels,
    zero_buildings,
)
from radiodiff.evaluate.sampling import METHODS, read_maps
from radiodiff.train.inputs import StackedItems, icassp_items, radiomapseer_items

HEADLINE = ("nmse", "rmse", "ssim", "psnr", "mae", "rmse_db")


def _headline(s: dict) -> dict:
    out = {k: s[k] for k in HEADLINE if k in s}
    out["rmse_whole_set"] = s["whole_set_rmse"]
    if "whole_set_rmse_db" in s:
        out["rmse_db_whole_set"] = s["whole_set_rmse_db"]
    out["n_images"] = s["n_images"]
    return out


def score(dataset: str, items: StackedItems, preds: dict[str, torch.Tensor], db_per_unit: float, timing=None):
    """Summary (keyed by method) and per-sample rows for predictions on [0, 1] (N, 1, S, S)."""
    target = ((items.tensors["target"] + 1) / 2).clamp(0, 1).float()
    names = items.names
    if dataset == "radiomapseer":
        known = building_pixels(items.tensors["buildings"])
        scopes = {"all": None, "outdoor": ~known}
        extra_cols: dict = {}
    else:
        valid = items.tensors["valid"]
        walls = (items.tensors["condition"][:, :2] > -1.0).any(dim=1, keepdim=True)
        scopes = {"valid": valid, "open": valid & ~walls}
        ids = [parse_name(n) for n in names]
        extra_cols = {
            "building": [f"B{i.building}" for i in ids],
            "band": [f"f{i.band}" for i in ids],
            "antenna": [f"Ant{i.antenna}" for i in ids],
        }
    summary, rows = {}, []
    for method, pred in preds.items():
        if pred.shape != target.shape:
            raise DataError(f"{method}: predictions of shape {tuple(pred.shape)} for targets {tuple(target.shape)}")
        if dataset == "radiomapseer":
            pred = zero_buildings(pred, items.tensors["buildings"])
        entry: dict = {}
        for scope, mask in scopes.items():
            acc = MetricAccumulator(db_per_unit=db_per_unit)
            acc.add(pred, target, mask=mask, names=names, method=method, scope=scope, **extra_cols)
            s = _headline(acc.summary())
            if extra_cols:
                s["per_building"] = {k: _headline(v) for k, v in acc.summary("building").items()}
                s["per_band"] = {k: _headline(v) for k, v in acc.summary("band").items()}
            if not entry:
                entry = s
            else:
                entry[scope] = s
            rows.extend(acc.to_rows())
        if timing and method in timing:
            entry["ms_per_map"] = timing[method]["ms_per_map"]
        summary[method] = entry
    return summary, rows


def protocol(dataset: str, items: StackedItems, db_per_unit: float, split: str, **extra) -> dict:
    side = int(items.tensors["target"].shape[-1])
    if dataset == "radiomapseer":
        scope = "top-level metrics on all pixels; 'outdoor' on pixels not fully covered by a building"
        scale = "gray gain / 255 on [0, 1]"
    else:
        scope = "top-level metrics on the crops' valid (not padded) pixels; 'open' also excludes walls"
        scale = "(160 - PL dB) / 147 on [0, 1]; rmse_db = 147 x rmse (the challenge metric)"
    return {
        "dataset": dataset,
        "split": split,
        "maps": len(items.names),
        "resolution": f"{side}x{side} (the model's resolution)",
        "scale": scale,
        "data_range": 1.0,
        "db_per_unit": db_per_unit,
        "scope": scope,
        "buildings": "known building pixels set to 0 in every method's output before scoring",
        "ssim": "torchmetrics, Gaussian kernel 11, sigma 1.5, k1 0.01, k2 0.03, data range 1",
        "psnr": "data range 1 (the published RadioDiff numbers inferred the range from the data)",
        **extra,
    }


def json_safe(obj):
    """nan/inf (an undefined NMSE, a perfect image's PSNR) as null, so the summary stays standard
    JSON for DVC; the per-sample CSV keeps the raw values."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_outputs(out_dir: Path, summary: dict, rows: list[dict]) -> None:
    out_dir = Path(out_dir)
    summary = json_safe(summary)
    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    with atomic_file(out_dir / "per_sample.csv") as f:
        writer = csv.DictWriter(f, fieldnames=fields or ["name"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_json(out_dir / "summary.json", summary)


def radiomapseer_db_per_unit(data: dict) -> float:
    return RADIOMAPSEER_DB_PER_UNIT * (1.0 - float(data.get("gain_threshold", 0.0)))


def evaluate_radiomapseer(root, data: dict, samples_dir, out_dir) -> dict:
    samples_dir = Path(samples_dir)
    items = radiomapseer_items(root, "test", data, "static", 2.0)
    timing = read_json(samples_dir / "sampling.json")["methods"]
    preds = {m: read_maps(samples_dir / m, items.names, "radiomapseer") for m in METHODS}
    db = radiomapseer_db_per_unit(data)
    summary, rows = score("radiomapseer", items, preds, db, timing)
    summary["protocol"] = protocol(
        "radiomapseer",
        items,
        db,
        "test",
        simulation=data["simulation"],
        physics_exponent=timing["physics"].get("exponent"),
    )
    write_outputs(out_dir, summary, rows)
    return summary


def evaluate_icassp(crops, samples_dir, out_dir) -> dict:
    samples_dir = Path(samples_dir)
    items = icassp_items(crops, "test")
    timing = read_json(samples_dir / "sampling.json")["methods"]
    preds = {m: read_maps(samples_dir / m, items.names, "icassp") for m in METHODS}
    summary, rows = score("icassp", items, preds, ICASSP_DB_PER_UNIT, timing)
    summary["protocol"] = protocol("icassp", items, ICASSP_DB_PER_UNIT, "test")
    write_outputs(out_dir, summary, rows)
    return summary


def headline_table(summary: dict) -> str:
    """A plain-text table of the headline metrics (for logs and the CLI)."""
    lines = [f"{'method':<10} " + " ".join(f"{k:>10}" for k in (*HEADLINE, "ms_per_map"))]
    for m, s in summary.items():
        if m == "protocol":
            continue
        vals = [s.get(k, float("nan")) for k in (*HEADLINE, "ms_per_map")]
        lines.append(f"{m:<10} " + " ".join(f"{v:>10.4g}" for v in vals))
    return "\n".join(lines)


__all__ = ["evaluate_icassp", "evaluate_radiomapseer", "headline_table", "score"]


def evaluate_model(model_dir, root, out_dir, data: dict | None = None, steps=None, seed: int = 0, batch_size: int = 16):
    """Score a trained model on every sample of another dataset root, without retraining.

    RadioMapSeer: ``root`` is a RadioMapSeer folder (e.g. the real dataset); all its maps and
    Tx are scored, with the physics baseline beside the model (the model's own fitted exponent
    when it has one, else one fitted on ``root`` itself, which favours the baseline). ICASSP:
    ``root`` is a crop_icassp output folder (run arrange and crop on the real data first); all
    its crops are scored. Writes ``summary.json`` and ``per_sample.csv`` into ``out_dir``.
    """
    import time

    from radiodiff.data.radiomapseer import discover_maps
    from radiodiff.evaluate.baselines import fit_log_distance_exponent, icassp_physics_unit
    from radiodiff.evaluate.predict import _concat, _has_split
    from radiodiff.evaluate.sampling import _full_size, default_device, physics_radiomapseer, predict_items
    from radiodiff.models.pipelines import load_pipeline

    pipe = load_pipeline(model_dir)
    method = "radiodiff" if (Path(model_dir) / "radiodiff.json").is_file() else "radiounet"
    dataset = pipe.meta["dataset"]
    device = default_device()
    if dataset == "radiomapseer":
        d = {"simulation": "DPM", "gain_threshold": 0.0, **(data or {}), "image_size": int(pipe.meta["image_size"])}
        maps = list(discover_maps(root))
        exponent = pipe.meta.get("physics_exponent")
        items = radiomapseer_items(root, "all", d, pipe.meta["condition"], exponent or 2.0, maps=maps)
        pred, seconds = predict_items(pipe, items, steps, seed, batch_size, device)
        if exponent is None:
            target = ((items.tensors["target"] + 1) / 2).numpy()
            b, tx = items.tensors["buildings"].numpy(), items.tensors["tx"].numpy()
            exponent = fit_log_distance_exponent(
                ((target[i, 0], b[i, 0], tuple(tx[i])) for i in range(len(items.names))), _full_size(root, items)
            )
        t0 = time.perf_counter()
        phys = physics_radiomapseer(items, exponent, _full_size(root, items))
        phys_s = time.perf_counter() - t0
        db = radiomapseer_db_per_unit(d)
    else:
        parts = [icassp_items(root, s) for s in ("train", "val", "test") if _has_split(root, s)]
        items = _concat(parts)
        pred, seconds = predict_items(pipe, items, steps, seed, batch_size, device)
        t0 = time.perf_counter()
        phys = icassp_physics_unit(items.tensors["condition"])
        phys_s = time.perf_counter() - t0
        db, exponent = ICASSP_DB_PER_UNIT, None
    n = len(items.names)
    timing = {method: {"ms_per_map": 1000 * seconds / n}, "physics": {"ms_per_map": 1000 * phys_s / n}}
    summary, rows = score(dataset, items, {method: pred, "physics": phys}, db, timing)
    summary["protocol"] = protocol(
        dataset,
        items,
        db,
        "all samples of the root",
        root=str(root),
        model=str(model_dir),
        device=str(device),
        physics_exponent=exponent,
    )
    write_outputs(out_dir, summary, rows)
    return summary
