"""Sample previews while the LDM trains: every ``previews.sample_every`` steps (and at the last
step) the EMA model samples a few fixed validation items, drawn as one image with a row per item:
condition | ground truth | prediction (dB) | |prediction − truth| (dB).

The engine writes each grid to TensorBoard (tag ``preview``) and, as
``step-NNNNNNNN.png``, to the run's state folder (``previews/``, beside its log, so a resumed or
extended run keeps the earlier ones); the stage copies them to ``results/ldm/{dataset}/previews/``
with ``previews.json`` (step, file and the items' RMSE in dB per grid), from which the report
draws the learning progression. Sampling runs under the engine's isolated RNG with a generator
seeded by the run's seed, so previews change no trained weight and exact resume stays exact.

The grid is drawn with NumPy and Matplotlib's colormaps only (no figure code of the report, so
editing the report never re-runs training). Colour scales: the ground truth's dB range of each
row for truth and prediction (viridis); 0 to ``ERROR_DB_MAX`` dB for the error (magma), the same
at every step so grids compare across steps.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from radiodiff.core.encodings import unit_to_gain_db, unit_to_pl_db
from radiodiff.core.io import atomic_file, write_json

ERROR_DB_MAX = 20.0  # the error colour scale's top (dB), fixed so grids compare across steps
GAP = 2  # white pixels between panels
INDEX = "previews.json"


def preview_items(val_set, count: int) -> dict | None:
    """The first ``count`` validation items as one batch (None without a validation set)."""
    if val_set is None or count < 1 or len(val_set) == 0:
        return None
    return default_collate([val_set[i] for i in range(min(count, len(val_set)))])


def to_db(unit: np.ndarray, dataset: str, gain_threshold: float = 0.0) -> np.ndarray:
    """Maps on [0, 1] in the dataset's dB: RadioMapSeer gain (its gray encoding's floor
    ``gain_threshold``), ICASSP path loss."""
    if dataset == "radiomapseer":
        return np.asarray(unit_to_gain_db(unit, float(gain_threshold)), np.float32)
    return np.asarray(unit_to_pl_db(unit), np.float32)


def _colour(values: np.ndarray, lo: float, hi: float, cmap: str, valid: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    scaled = np.clip((values - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    rgb = colormaps[cmap](scaled)[..., :3]
    rgb[~valid] = 1.0  # not scored (ICASSP padding): white
    return (rgb * 255).round().astype(np.uint8)


def _condition_rgb(condition: np.ndarray) -> np.ndarray:
    """The first three condition channels on [−1, 1] as an RGB image."""
    c = np.clip((condition[:3] + 1) / 2, 0.0, 1.0)
    if c.shape[0] < 3:
        c = np.concatenate([c, np.repeat(c[-1:], 3 - c.shape[0], axis=0)])
    return (c.transpose(1, 2, 0) * 255).round().astype(np.uint8)


def preview_grid(
    batch: dict, pred: torch.Tensor, dataset: str, gain_threshold: float = 0.0
) -> tuple[np.ndarray, list[float]]:
    """The grid (H×W×3 uint8) of a batch's condition, truth, prediction (on [0, 1]) and error in
    the dataset's dB (:func:`to_db`), and each item's RMSE in dB over its scored pixels."""
    truth = ((batch["target"].float().cpu() + 1) / 2).clamp(0, 1).numpy()[:, 0]
    pred = pred.float().cpu().clamp(0, 1).numpy()[:, 0]
    valid = batch["valid"].cpu().numpy()[:, 0] > 0.5 if "valid" in batch else np.ones_like(truth, dtype=bool)
    rows, rmses = [], []
    for i in range(truth.shape[0]):
        t_db, p_db = to_db(truth[i], dataset, gain_threshold), to_db(pred[i], dataset, gain_threshold)
        ok = valid[i]
        err = np.abs(p_db - t_db)
        lo, hi = (float(t_db[ok].min()), float(t_db[ok].max())) if ok.any() else (0.0, 1.0)
        rmses.append(float(np.sqrt(np.mean(err[ok] ** 2))) if ok.any() else float("nan"))
        panels = [
            _condition_rgb(batch["condition"][i].float().cpu().numpy()),
            _colour(t_db, lo, hi, "viridis", ok),
            _colour(p_db, lo, hi, "viridis", ok),
            _colour(err, 0.0, ERROR_DB_MAX, "magma", ok),
        ]
        gap = np.full((truth.shape[1], GAP, 3), 255, np.uint8)
        rows.append(np.concatenate([x for p in panels for x in (p, gap)][:-1], axis=1))
    gap = np.full((GAP, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([x for r in rows for x in (r, gap)][:-1], axis=0), rmses


def write_preview(folder: Path, step: int, image: np.ndarray, rmses: list[float]) -> Path:
    """Write ``step-NNNNNNNN.png`` into ``folder`` and add it to ``previews.json`` (atomically)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:08d}.png"
    with atomic_file(path, "wb") as f:
        Image.fromarray(image).save(f, format="PNG")
    index = read_index(folder)
    index = [e for e in index if e["step"] != step] + [
        {"step": step, "file": path.name, "rmse_db": rmses, "mean_rmse_db": float(np.nanmean(rmses))}
    ]
    write_json(folder / INDEX, sorted(index, key=lambda e: e["step"]))
    return path


def read_index(folder: Path) -> list[dict]:
    """The previews of ``folder`` (``previews.json``), oldest first; [] when there are none."""
    path = Path(folder) / INDEX
    return json.loads(path.read_text()) if path.is_file() else []


def keep_until(folder: Path, step: int) -> None:
    """Drop the previews after ``step`` (a run resumed from an earlier state redraws them)."""
    index = read_index(folder)
    kept = [e for e in index if e["step"] <= step]
    if len(kept) != len(index):
        for e in index:
            if e["step"] > step:
                (folder / e["file"]).unlink(missing_ok=True)
        write_json(folder / INDEX, kept)


def copy_previews(src: Path, dest: Path) -> None:
    """Copy a run's previews (its state folder's ``previews/``) to the stage's output folder."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for e in read_index(src):
        shutil.copyfile(src / e["file"], dest / e["file"])
    write_json(dest / INDEX, read_index(src))
