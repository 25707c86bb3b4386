"""Per-image and whole-set scores for predicted radio maps (REFERENCE §4).

Maps are float tensors on the [0, 1] gray scale (bright = strong signal), batched as
(B, C, H, W) with C = 1 for radio maps. An optional boolean ``mask`` of the same shape, or
(B, 1, H, W) broadcast over channels, selects the pixels to score: outdoor (not building)
pixels for RadioMapSeer, valid (not padded) pixels for ICASSP crops. Pixels outside the mask
are ignored entirely by the error metrics, even if they hold nan.

Per image, over the n scored pixels, with p the prediction and g the ground truth:

- ``nmse`` = Σ (p − g)² / Σ g²
- ``rmse`` = √(Σ (p − g)² / n), ``mae`` = Σ |p − g| / n
- ``psnr`` = 10 · log10(1 / mse), data range 1 (RadioDiff left the range to torchmetrics to
  infer; radiodiff fixes it at 1, so its PSNR is not strictly the published protocol's)
- ``ssim``: Gaussian window 11, σ 1.5, k1 0.01, k2 0.03, data range 1 (torchmetrics). With a
  mask it is the mean of torchmetrics' full SSIM map (``return_full_image=True``: one value per
  pixel, borders reflect-padded) over the masked pixels. The windows still see the unmasked
  neighbours (zeroed buildings, padding): the mask restricts where SSIM is averaged, not what
  it is computed from.
- ``rmse_db`` = rmse × ``db_per_unit``, only when ``db_per_unit`` is given: 99.16 dB per unit
  for RadioMapSeer gray, 147 dB per unit for ICASSP's (160 − PL) / 147
  (:mod:`radiodiff.core.encodings`).

Edge cases give a value, never an error: Σ g² = 0 → nmse nan (NMSE is undefined against an
all-zero target, even for a perfect prediction); an empty mask → every metric nan;
mse = 0 → psnr +inf; images smaller than 6×6 → ssim nan (the window's reflect padding of 5
pixels needs at least 6).

Whole-set RMSE (RadioUNet's protocol) pools all squared errors, √(Σ SSE / Σ n) over every
scored pixel of every image; it weights images by their scored pixel count, so it differs from
the mean of per-image RMSEs (RadioDiff's averaging). :class:`MetricAccumulator` reports both.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radiodiff.core.io import atomic_file

# SSIM as RadioDiff evaluates it (REFERENCE §4). torchmetrics derives the Gaussian window from
# sigma: int(3.5·1.5 + 0.5)·2 + 1 = 11 taps, padded by 5 on each side.
SSIM_SIGMA = 1.5
SSIM_KERNEL_SIZE = 11
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_SSIM_PAD = (SSIM_KERNEL_SIZE - 1) // 2

METRIC_NAMES = ("nmse", "rmse", "mae", "psnr", "ssim")
_DIMS = (1, 2, 3)


# --------------------------------------------------------------------------------------------
# Per-image metrics
# --------------------------------------------------------------------------------------------


def _check(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    """Validate shapes; return the mask expanded to pred's shape (or None)."""
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"metrics: pred and target must be tensors, got {type(pred).__name__}, {type(target).__name__}")
    if pred.shape != target.shape:
        raise ValueError(f"metrics: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.dim() != 4:
        raise ValueError(f"metrics: expected (B, C, H, W) maps, got pred shape {tuple(pred.shape)}")
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(
            f"metrics: mask must be a bool tensor (True = scored), got "
            f"{mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__}; "
            "building_pixels() turns a fractional building map into one"
        )
    b, c, h, w = pred.shape
    if mask.dim() != 4 or mask.shape[0] != b or mask.shape[1] not in (1, c) or tuple(mask.shape[2:]) != (h, w):
        raise ValueError(
            f"metrics: mask shape {tuple(mask.shape)} does not fit pred shape {tuple(pred.shape)} "
            f"(expected {(b, c, h, w)} or {(b, 1, h, w)})"
        )
    return mask.to(pred.device).expand(b, c, h, w)


def _nan_like(x: torch.Tensor) -> torch.Tensor:
    return torch.full_like(x, float("nan"))


def error_sums(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-image sums over the scored pixels, each (B,) float64: ``sse`` = Σ (p − g)²,
    ``sae`` = Σ |p − g|, ``sum_g2`` = Σ g², ``n`` = number of scored pixels (all channels)."""
    m = _check(pred, target, mask)
    p, g = pred.double(), target.double()
    d = p - g
    sq, ab, g2 = d * d, d.abs(), g * g
    if m is None:
        n = torch.full((p.shape[0],), float(math.prod(p.shape[1:])), dtype=torch.float64, device=p.device)
    else:
        zero = torch.zeros((), dtype=torch.float64, device=p.device)
        # where(), not a multiply: nan or inf outside the mask must not leak into the sums.
        sq, ab, g2 = torch.where(m, sq, zero), torch.where(m, ab, zero), torch.where(m, g2, zero)
        n = m.sum(dim=_DIMS).double()
    return {"sse": sq.sum(dim=_DIMS), "sae": ab.sum(dim=_DIMS), "sum_g2": g2.sum(dim=_DIMS), "n": n}


def masked_ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image SSIM (B,) float64 on [0, 1] maps (data range 1; Gaussian 11, σ 1.5, k1 .01, k2 .03).

    Without a mask this is torchmetrics' own per-image value; with one, the mean of the full
    SSIM map over the masked pixels (nan where the mask is empty). nan for images under 6×6.
    """
    m = _check(pred, target, mask)
    b, _, h, w = pred.shape
    if min(h, w) <= _SSIM_PAD:
        return torch.full((b,), float("nan"), dtype=torch.float64, device=pred.device)
    # At least float32 (half precision loses SSIM's small variances); float64 stays float64.
    dtype = torch.promote_types(pred.dtype, torch.float32) if pred.dtype.is_floating_point else torch.float32
    from torchmetrics.functional.image import structural_similarity_index_measure  # 3 s to import: on use

    per_image, full = structural_similarity_index_measure(
        pred.to(dtype),
        target.to(dtype),
        gaussian_kernel=True,
        sigma=SSIM_SIGMA,
        kernel_size=SSIM_KERNEL_SIZE,
        reduction="none",
        data_range=1.0,
        k1=SSIM_K1,
        k2=SSIM_K2,
        return_full_image=True,
    )
    if m is None:
        return per_image.double()
    full = full.double()
    n = m.sum(dim=_DIMS)
    total = torch.where(m, full, torch.zeros((), dtype=full.dtype, device=full.device)).sum(dim=_DIMS)
    return torch.where(n > 0, total / n.clamp_min(1), _nan_like(total))


def _metrics_from_sums(sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sse, n, sum_g2 = sums["sse"], sums["n"], sums["sum_g2"]
    scored = n > 0
    mse = torch.where(scored, sse / n.clamp_min(1), _nan_like(sse))
    psnr = 10.0 * torch.log10(1.0 / mse)  # mse 0 -> 1/0 = inf -> +inf; nan stays nan
    return {
        "nmse": torch.where(sum_g2 > 0, sse / torch.where(sum_g2 > 0, sum_g2, torch.ones_like(sum_g2)), _nan_like(sse)),
        "rmse": mse.sqrt(),
        "mae": torch.where(scored, sums["sae"] / n.clamp_min(1), _nan_like(sse)),
        "psnr": psnr,
    }


def _check_db(db_per_unit: float | None) -> float | None:
    if db_per_unit is None:
        return None
    if isinstance(db_per_unit, bool) or not isinstance(db_per_unit, int | float) or not 0 < db_per_unit < math.inf:
        raise ValueError(f"metrics: db_per_unit must be a positive number, got {db_per_unit!r}")
    return float(db_per_unit)


def _compute(pred, target, mask, db_per_unit) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    db = _check_db(db_per_unit)
    sums = error_sums(pred, target, mask)
    out = _metrics_from_sums(sums)
    out["ssim"] = masked_ssim(pred, target, mask)
    if db is not None:
        out["rmse_db"] = out["rmse"] * db
    return out, sums


@torch.no_grad()
def per_image_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    db_per_unit: float | None = None,
) -> dict[str, torch.Tensor]:
    """``nmse``, ``rmse``, ``mae``, ``psnr``, ``ssim`` (and ``rmse_db`` when ``db_per_unit`` is
    given), each a (B,) float64 tensor; see the module docstring for definitions and edge cases.

    ``pred`` and ``target``: (B, C, H, W) on the [0, 1] scale; ``mask``: bool, True = scored.
    A shape mismatch raises ValueError naming both shapes.
    """
    return _compute(pred, target, mask, db_per_unit)[0]


def whole_set_rmse(
    sum_sq_err: float | Iterable[float] | torch.Tensor, n_pixels: float | Iterable[float] | torch.Tensor
) -> float:
    """√(Σ squared errors / Σ scored pixels) pooled over a whole set (RadioUNet); nan if no pixel."""

    def total(x) -> float:
        if isinstance(x, torch.Tensor):
            return float(x.double().sum())
        if isinstance(x, int | float):
            return float(x)
        return float(math.fsum(float(v) for v in x))

    sse, n = total(sum_sq_err), total(n_pixels)
    return math.sqrt(sse / n) if n > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# Building pixels
# --------------------------------------------------------------------------------------------


def building_pixels(buildings: torch.Tensor, min_fraction: float = 1.0) -> torch.Tensor:
    """Bool map of the known building pixels.

    A bool input is returned as is. A float map holds the building fraction of each pixel
    (the quick scale area-averages the mask): a pixel counts as building when its fraction is
    at least ``min_fraction`` (default 1: fully covered, where the area-averaged ground truth is
    exactly 0), with a 1e-6 tolerance for the averaging's rounding.
    """
    if buildings.dtype == torch.bool:
        return buildings
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"building_pixels: min_fraction must be in (0, 1], got {min_fraction}")
    return buildings >= (min_fraction - 1e-6)


def scope_masks(dataset: str, batch: dict) -> dict[str, torch.Tensor | None]:
    """The evaluation scopes of a batch of test items, first the headline one (True = scored):
    RadioMapSeer ``all`` (None: every pixel) and ``outdoor`` (not fully covered by a building);
    ICASSP ``valid`` (not padded) and ``open`` (valid and off the walls, from the arranged R and G
    channels of ``condition``)."""
    if dataset == "radiomapseer":
        return {"all": None, "outdoor": ~building_pixels(batch["buildings"])}
    valid = batch["valid"]
    walls = (batch["condition"][:, :2] > -1.0).any(dim=1, keepdim=True)
    return {"valid": valid, "open": valid & ~walls}


def zero_buildings(pred: torch.Tensor, buildings_mask: torch.Tensor, min_fraction: float = 1.0) -> torch.Tensor:
    """A copy of ``pred`` with the known building pixels set to 0 (SPEC: done to every method's
    output before scoring). ``buildings_mask``: bool, or building fractions (see
    :func:`building_pixels`), broadcastable to ``pred`` (e.g. (B, 1, H, W) for (B, C, H, W))."""
    mask = building_pixels(buildings_mask, min_fraction).to(pred.device)
    try:
        fits = torch.broadcast_shapes(mask.shape, pred.shape) == pred.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"zero_buildings: buildings mask shape {tuple(buildings_mask.shape)} does not broadcast to "
            f"pred shape {tuple(pred.shape)}"
        )
    return pred.masked_fill(mask, 0.0)


# --------------------------------------------------------------------------------------------
# Accumulating a test set
# --------------------------------------------------------------------------------------------


def _nanmean(values: Sequence[float]) -> float:
    """Mean ignoring nan (inf counts); nan when every value is nan or there are none."""
    kept = [v for v in values if not math.isnan(v)]
    return math.fsum(kept) / len(kept) if kept else float("nan")


class MetricAccumulator:
    """Per-image rows for a test set, their means and the whole-set RMSE.

    Each :meth:`add` scores one batch and stores one row per image: ``name``, the extra columns
    given (e.g. ``building="B3"``, ``band=2``, ``scope="outdoor"``), the metrics, and ``sse`` /
    ``n_pixels`` (the image's squared-error sum and scored pixel count, so the whole-set RMSE of
    any subset can be recomputed from the CSV)::

        acc = MetricAccumulator(db_per_unit=RADIOMAPSEER_DB_PER_UNIT)
        for batch in loader:
            acc.add(zero_buildings(pred, b), target, mask=~building_pixels(b), names=batch["name"])
        acc.summary()      # {"n_images", "n_scored_pixels", nmse, rmse, ..., "whole_set_rmse", ...}
        acc.write_csv(path)

    Means ignore nan (an image with an undefined metric, e.g. NMSE on an all-zero target, is
    left out of that metric's mean, and ``n_undefined`` counts them); an infinite PSNR (a
    perfect image) is kept and makes the PSNR mean inf.
    """

    def __init__(self, db_per_unit: float | None = None):
        self.db_per_unit = _check_db(db_per_unit)
        self._rows: list[dict[str, Any]] = []

    @property
    def metric_names(self) -> tuple[str, ...]:
        return METRIC_NAMES + (("rmse_db",) if self.db_per_unit is not None else ())

    def __len__(self) -> int:
        return len(self._rows)

    @torch.no_grad()
    def add(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        names: Sequence[str] | None = None,
        **columns: Any,
    ) -> dict[str, torch.Tensor]:
        """Score a batch, store its rows and return its per-image metrics.

        ``names``: one per image (default: the running index). Each extra column is one scalar
        for the whole batch or a sequence / tensor with one value per image.
        """
        b = pred.shape[0] if isinstance(pred, torch.Tensor) and pred.dim() > 0 else 0
        reserved = {"name", "sse", "n_pixels", *self.metric_names}
        clash = sorted(set(columns) & reserved)
        if clash:
            raise ValueError(f"MetricAccumulator.add: column name(s) {clash} are reserved")
        if names is not None and len(names) != b:
            raise ValueError(f"MetricAccumulator.add: {len(names)} names for a batch of {b} images")
        per_col: dict[str, list] = {}
        for key, value in columns.items():
            if isinstance(value, torch.Tensor):
                value = value.tolist() if value.dim() > 0 else value.item()
            if isinstance(value, str | bytes) or not isinstance(value, Sequence):
                per_col[key] = [value] * b
            elif len(value) == b:
                per_col[key] = list(value)
            else:
                raise ValueError(f"MetricAccumulator.add: column {key!r} has {len(value)} values for {b} images")
        metrics, sums = _compute(pred, target, mask, self.db_per_unit)
        start = len(self._rows)
        as_lists = {k: v.tolist() for k, v in metrics.items()}
        sse, n = sums["sse"].tolist(), sums["n"].tolist()
        for i in range(b):
            row: dict[str, Any] = {"name": str(names[i]) if names is not None else str(start + i)}
            row.update({k: v[i] for k, v in per_col.items()})
            row.update({k: as_lists[k][i] for k in self.metric_names})
            row.update({"sse": sse[i], "n_pixels": int(n[i])})
            self._rows.append(row)
        return metrics

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per image, in the order added (copies)."""
        return [dict(r) for r in self._rows]

    def _summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"n_images": len(rows), "n_scored_pixels": sum(r["n_pixels"] for r in rows)}
        undefined = {}
        for k in self.metric_names:
            col = [r[k] for r in rows]
            out[k] = _nanmean(col)
            if any(math.isnan(v) for v in col):
                undefined[k] = sum(math.isnan(v) for v in col)
        out["whole_set_rmse"] = whole_set_rmse([r["sse"] for r in rows], [r["n_pixels"] for r in rows])
        if self.db_per_unit is not None:
            out["whole_set_rmse_db"] = out["whole_set_rmse"] * self.db_per_unit
        out["n_undefined"] = undefined
        return out

    def summary(self, group_by: str | None = None) -> dict[str, Any]:
        """Means over images (nan ignored) plus the whole-set RMSE (and dB versions).

        With ``group_by`` (an extra column such as ``"band"``), a dict from each of the column's
        values (as a string, for JSON) to that group's summary.
        """
        if group_by is None:
            return self._summarize(self._rows)
        if self._rows and group_by not in self._rows[0]:
            raise KeyError(f"MetricAccumulator.summary: no column {group_by!r}; columns: {list(self._rows[0])}")
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in self._rows:
            groups.setdefault(str(r[group_by]), []).append(r)
        return {k: self._summarize(v) for k, v in groups.items()}

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_rows` as a CSV (see :func:`write_rows`), atomically."""
        return write_rows(path, self._rows)


def write_rows(path: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """Per-sample rows as a CSV whose header is the union of the rows' keys (first seen first),
    written atomically."""
    path = Path(path)
    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    with atomic_file(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=fields or ["name"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------------------------
# Validation during training
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def loader_means(predict, loader) -> dict[str, float]:
    """Mean NMSE, RMSE, SSIM and PSNR over a loader of maps (``target`` in [−1, 1]; ``valid``
    masks ICASSP's padding); ``predict(batch)`` returns maps on [0, 1]. Undefined values (e.g.
    the NMSE of an all-zero map) are left out of the means. The map models' validation."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for batch in loader:
        pred = predict(batch).float()
        target = ((batch["target"] + 1) / 2).clamp(0, 1).float()
        m = per_image_metrics(pred, target, batch.get("valid"))
        for k in ("nmse", "rmse", "ssim", "psnr"):
            ok = torch.isfinite(m[k])
            sums[k] = sums.get(k, 0.0) + float(m[k][ok].sum())
            counts[k] = counts.get(k, 0) + int(ok.sum())
    return {k: v / max(counts[k], 1) for k, v in sums.items()}


def reconstruction_metrics(x: torch.Tensor, recon: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image RMSE, PSNR and SSIM of a VAE's reconstruction on [0, 1]-scaled maps (data range 1,
    all channels, float32 and torchmetrics' own reductions): the VAEs' validation."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    x01 = ((x + 1) / 2).clamp(0, 1).float()
    r01 = ((recon + 1) / 2).clamp(0, 1).float()
    dims = tuple(range(1, x.ndim))
    return {
        "rmse": ((r01 - x01) ** 2).mean(dim=dims).sqrt(),
        "psnr": peak_signal_noise_ratio(r01, x01, data_range=1.0, reduction="none", dim=dims),
        "ssim": structural_similarity_index_measure(r01, x01, data_range=1.0, reduction="none"),
    }


def ratio_interval(a: Sequence[float], b: Sequence[float], n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """mean(a) / mean(b) over paired per-image values (two methods on the same test images) and
    its bootstrap 95 % interval (percentile, images resampled with replacement, seeded):
    ``{"ratio", "ci95": [low, high], "n_images"}``. Images where either value is nan are dropped;
    fewer than two left, or mean(b) = 0, gives nan."""
    from scipy.stats import bootstrap

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"ratio_interval: {x.size} values against {y.size}; they must be paired")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    nan = {"ratio": math.nan, "ci95": [math.nan, math.nan], "n_images": int(x.size)}
    if x.size < 2 or y.mean() == 0:
        return nan

    def stat(u, v, axis=-1):
        return np.mean(u, axis=axis) / np.mean(v, axis=axis)

    res = bootstrap(
        (x, y),
        stat,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = res.confidence_interval
    return {"ratio": float(stat(x, y)), "ci95": [float(low), float(high)], "n_images": int(x.size)}
