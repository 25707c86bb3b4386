"""Predicted maps on disk: ``results/samples/{dataset}/{method}/{name}.png`` in the dataset's own
encoding (RadioMapSeer gray gain, buildings 0; ICASSP path loss in dB, padded pixels 0), written
by the sample stages and :mod:`~radiodiff.evaluate.predict`, read back by the evaluate stages and
the report. Beside them the test split's ground truth in the same encoding (``truth/``, for
``radiodiff compare``) and, with ``sample.ensemble``, the per-pixel standard deviation of
RadioDiff's samples (``uncertainty/{name}.npy``, float32 S×S on the [0, 1] scale). No model code:
scoring and the report depend on the files, not on the networks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from radiodiff.core.encodings import gray_to_unit, pl_png_to_unit, unit_to_gray, unit_to_pl_png
from radiodiff.core.errors import DataError
from radiodiff.core.io import read_png, write_png

METHODS = ("radiodiff", "radiounet", "physics")
SEEDS_FOLDER = "radiodiff_seeds"  # radiodiff_seeds/seed-S/: RadioDiff's test samples under sample.seeds' other seeds
ENSEMBLE_METHOD = "radiodiff_mean"  # sample.ensemble: the per-item mean of RadioDiff's sample.seeds samples
VAE_METHOD = "radiounet_vae"  # RadioUNet's maps through the LDM's first stage (the error the VAE adds)
OPTIONAL_METHODS = (ENSEMBLE_METHOD, VAE_METHOD)  # scored when the sample folder holds them
TRUTH_FOLDER = "truth"  # the test split's ground truth at the model's size, in the dataset's encoding
UNCERTAINTY_FOLDER = "uncertainty"  # sample.ensemble: per-pixel std of RadioDiff's samples, {name}.npy


def write_maps(folder: Path, names: list[str], pred: torch.Tensor, dataset: str, valid=None) -> None:
    """Predictions on [0, 1] (N, 1, S, S) as PNGs in the dataset's encoding."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        p = pred[i, 0]
        if dataset == "radiomapseer":
            img = unit_to_gray(p)
        else:
            img = unit_to_pl_png(p, None if valid is None else valid[i, 0].numpy())
        write_png(folder / f"{name}.png", img)


def read_maps(folder: Path, names: list[str], dataset: str) -> torch.Tensor:
    """Predictions written by :func:`write_maps`, back on [0, 1] (N, 1, S, S)."""
    out = []
    for name in names:
        path = folder / f"{name}.png"
        if not path.is_file():
            raise DataError(f"{path}: prediction missing (re-run the sample stage)")
        img = read_png(path, "L")
        out.append(torch.from_numpy(gray_to_unit(img) if dataset == "radiomapseer" else pl_png_to_unit(img)))
    return torch.stack(out)[:, None]


def write_std(folder: Path, names: list[str], std: torch.Tensor) -> None:
    """Per-pixel standard deviations on the [0, 1] scale (N, 1, S, S) as ``{name}.npy`` (float32)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        np.save(folder / f"{name}.npy", std[i, 0].numpy().astype(np.float32))


def read_std(folder: Path, names: list[str]) -> torch.Tensor:
    """Standard deviations written by :func:`write_std`, (N, 1, S, S) float32."""
    out = []
    for name in names:
        path = folder / f"{name}.npy"
        try:
            out.append(torch.from_numpy(np.load(path)))
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: uncertainty map missing or unreadable ({e}); re-run the sample stage") from e
    return torch.stack(out)[:, None]
