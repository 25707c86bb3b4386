"""The sample stages: predictions for the whole test split, for RadioDiff and each baseline.

``results/samples/{dataset}/{method}/{name}.png`` in the dataset's own encoding, at the model's
resolution: RadioMapSeer gray gain (round(255·gain), buildings 0, named ``{map}_{tx}``);
ICASSP path loss in dB (round(PL), padded pixels 0, named ``B{b}_Ant{a}_f{f}_S{s}``).
``sampling.json`` beside them records, per method, the wall time per map on the device used,
the sampler steps and seed. The physics baselines are computed here (they need no training).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from radiodiff.core.errors import DataError, RadiodiffError
from radiodiff.core.io import atomic_dir, read_png, write_json, write_png
from radiodiff.data.icassp import PL_MAX_DB, PL_MIN_DB
from radiodiff.evaluate.baselines import icassp_physics_unit, radiomapseer_physics
from radiodiff.evaluate.metrics import zero_buildings
from radiodiff.models.pipelines import load_pipeline
from radiodiff.train.inputs import StackedItems, icassp_items, physics_exponent, radiomapseer_items

METHODS = ("radiodiff", "radiounet", "physics")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def predict_items(
    pipe, items: StackedItems, steps: int | None, seed: int, batch_size: int, device
) -> tuple[torch.Tensor, float]:
    """Maps on [0, 1] for every item (building pixels 0 for RadioMapSeer) and seconds spent.

    One generator seeded with ``seed`` drives the whole run in a fixed batch order, so the
    samples are deterministic for a seed on a given device.
    """
    pipe = pipe.to(device).eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    cond_all = items.tensors["condition"]
    out = []
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for start in range(0, len(cond_all), batch_size):
        cond = cond_all[start : start + batch_size].to(device)
        out.append(pipe(cond, steps=steps, generator=generator).float().cpu())
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    pred = torch.cat(out)
    if "buildings" in items.tensors:
        pred = zero_buildings(pred, items.tensors["buildings"])
    return pred, seconds


def _check_model(pipe, dataset: str, image_size: int, where) -> None:
    if pipe.meta.get("dataset") != dataset:
        raise RadiodiffError(f"{where}: a {pipe.meta.get('dataset')} model, not a {dataset} one")
    if int(pipe.meta.get("image_size", image_size)) != int(image_size):
        raise RadiodiffError(
            f"{where}: trained at {pipe.meta['image_size']} px, the data is at {image_size} px "
            "(data.radiomapseer.image_size / crop_icassp.size_px)"
        )


def radiomapseer_model_items(pipe, root, split: str, data: dict, maps=None) -> StackedItems:
    """The items a RadioMapSeer model expects: its own condition and physics exponent."""
    exponent = pipe.meta.get("physics_exponent") or 2.0
    return radiomapseer_items(root, split, data, pipe.meta["condition"], exponent, maps=maps)


# --------------------------------------------------------------------------------------------- encodings


def gray_from_unit(p: torch.Tensor) -> np.ndarray:
    """RadioMapSeer: [0, 1] gain → uint8 gray."""
    return np.round(p.clamp(0, 1).numpy() * 255.0).astype(np.uint8)


def unit_from_gray(g: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(g.astype(np.float32) / 255.0)


def pl_png_from_unit(p: torch.Tensor, valid: torch.Tensor | None) -> np.ndarray:
    """ICASSP: [0, 1] → path loss dB as uint8 gray (13–160), padded pixels 0."""
    pl = np.round(PL_MAX_DB - p.clamp(0, 1).numpy() * (PL_MAX_DB - PL_MIN_DB))
    if valid is not None:
        pl = np.where(valid.numpy(), pl, 0)
    return pl.astype(np.uint8)


def unit_from_pl_png(pl: np.ndarray) -> torch.Tensor:
    pl = np.clip(pl.astype(np.float32), PL_MIN_DB, PL_MAX_DB)
    return torch.from_numpy((PL_MAX_DB - pl) / (PL_MAX_DB - PL_MIN_DB))


def write_maps(folder: Path, names: list[str], pred: torch.Tensor, dataset: str, valid=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        p = pred[i, 0]
        img = (
            gray_from_unit(p)
            if dataset == "radiomapseer"
            else pl_png_from_unit(p, None if valid is None else valid[i, 0])
        )
        write_png(folder / f"{name}.png", img)


def read_maps(folder: Path, names: list[str], dataset: str) -> torch.Tensor:
    """Predictions written by :func:`write_maps`, back on [0, 1] (N, 1, S, S)."""
    out = []
    for name in names:
        path = folder / f"{name}.png"
        if not path.is_file():
            raise DataError(f"{path}: prediction missing (re-run the sample stage)")
        img = read_png(path, "L")
        out.append(unit_from_gray(img) if dataset == "radiomapseer" else unit_from_pl_png(img))
    return torch.stack(out)[:, None]


# --------------------------------------------------------------------------------------------- stages


def sample_radiomapseer(root, data: dict, ldm_dir, radiounet_dir, out, sample: dict, device=None) -> dict:
    """Write every method's test-split predictions and ``sampling.json`` into ``out`` (atomically)."""
    device = torch.device(device) if device else default_device()
    timing: dict = {}
    with atomic_dir(out) as tmp:
        for method, model_dir in (("radiodiff", ldm_dir), ("radiounet", radiounet_dir)):
            pipe = load_pipeline(model_dir)
            _check_model(pipe, "radiomapseer", data["image_size"], model_dir)
            items = radiomapseer_model_items(pipe, root, "test", data)
            steps = sample["steps"] if method == "radiodiff" else None
            pred, seconds = predict_items(pipe, items, steps, sample["seed"], sample["batch_size"], device)
            write_maps(tmp / method, items.names, pred, "radiomapseer")
            timing[method] = _timing(seconds, len(items), device, steps, sample["seed"], str(model_dir))
        exponent = physics_exponent(root, data)
        items = radiomapseer_items(root, "test", data, "static", 2.0)
        t0 = time.perf_counter()
        pred = physics_radiomapseer(items, exponent, _full_size(root, items))
        seconds = time.perf_counter() - t0
        write_maps(tmp / "physics", items.names, pred, "radiomapseer")
        timing["physics"] = _timing(seconds, len(items), torch.device("cpu"), None, None, None)
        timing["physics"]["exponent"] = exponent
        write_json(tmp / "sampling.json", {"dataset": "radiomapseer", "split": "test", "methods": timing})
    return {"maps": len(items), "methods": timing}


def _full_size(root, items: StackedItems) -> int:
    map_id = items.names[0].split("_")[0]
    return int(read_png(Path(root) / "png/buildings_complete" / f"{map_id}.png", "L").shape[0])


def physics_radiomapseer(items: StackedItems, exponent: float, full_size: int) -> torch.Tensor:
    b = items.tensors["buildings"].numpy()
    tx = items.tensors["tx"].numpy()
    maps = [radiomapseer_physics(b[i, 0], tuple(tx[i]), exponent, full_size) for i in range(len(items.names))]
    return torch.from_numpy(np.stack(maps))[:, None]


def sample_icassp(crops, ldm_dir, radiounet_dir, out, sample: dict, device=None) -> dict:
    device = torch.device(device) if device else default_device()
    items = icassp_items(crops, "test")
    valid = items.tensors["valid"]
    timing: dict = {}
    with atomic_dir(out) as tmp:
        for method, model_dir in (("radiodiff", ldm_dir), ("radiounet", radiounet_dir)):
            pipe = load_pipeline(model_dir)
            _check_model(pipe, "icassp", items.tensors["condition"].shape[-1], model_dir)
            steps = sample["steps"] if method == "radiodiff" else None
            pred, seconds = predict_items(pipe, items, steps, sample["seed"], sample["batch_size"], device)
            write_maps(tmp / method, items.names, pred, "icassp", valid)
            timing[method] = _timing(seconds, len(items), device, steps, sample["seed"], str(model_dir))
        t0 = time.perf_counter()
        pred = icassp_physics_unit(items.tensors["condition"])
        seconds = time.perf_counter() - t0
        write_maps(tmp / "physics", items.names, pred, "icassp", valid)
        timing["physics"] = _timing(seconds, len(items), torch.device("cpu"), None, None, None)
        write_json(tmp / "sampling.json", {"dataset": "icassp", "split": "test", "methods": timing})
    return {"maps": len(items), "methods": timing}


def _timing(seconds: float, n: int, device, steps, seed, model) -> dict:
    return {
        "ms_per_map": 1000.0 * seconds / max(n, 1),
        "maps": n,
        "device": str(device),
        "steps": steps,
        "seed": seed,
        "model": model,
    }
